package transport

import (
	"context"
	"net"
	"sync"

	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// gatheredTLS is libp2p's TLS transport with the records of each write
// gathered into one write to the connection below.
//
// TLS cuts what it is given into records of at most 16 KiB and writes each
// to the connection below it on its own: here the pnet cipher, then TCP. A
// 64 KiB yamux frame (one shard) so became five pnet calls and five write
// syscalls. gatheredTLS holds the records of one Write of the secured
// connection and passes them down together when it returns. The bytes on
// the wire are the same, so peers running plain libp2p TLS are unaffected;
// the protocol ID is TLS's.
type gatheredTLS struct {
	inner *libp2ptls.Transport
}

var _ sec.SecureTransport = (*gatheredTLS)(nil)

// newGatheredTLS has the signature libp2p.Security injects.
func newGatheredTLS(id protocol.ID, key ic.PrivKey, muxers []tptu.StreamMuxer) (*gatheredTLS, error) {
	inner, err := libp2ptls.New(id, key, muxers)
	if err != nil {
		return nil, err
	}
	return &gatheredTLS{inner: inner}, nil
}

func (t *gatheredTLS) ID() protocol.ID { return t.inner.ID() }

func (t *gatheredTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return gather(ctx, insecure, p, t.inner.SecureInbound)
}

func (t *gatheredTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return gather(ctx, insecure, p, t.inner.SecureOutbound)
}

// gather runs the TLS handshake secure over a recordConn on insecure.
func gather(ctx context.Context, insecure net.Conn, p peer.ID,
	secure func(context.Context, net.Conn, peer.ID) (sec.SecureConn, error)) (sec.SecureConn, error) {
	below := &recordConn{Conn: insecure}
	c, err := secure(ctx, below, p)
	if err != nil {
		return nil, err
	}
	return &gatheredConn{SecureConn: c, below: below}, nil
}

// gatheredConn is the secured connection: its Write has TLS write into
// below's buffer, then sends the buffer in one write.
type gatheredConn struct {
	sec.SecureConn
	below *recordConn
}

func (c *gatheredConn) Write(b []byte) (int, error) {
	c.below.hold()
	n, err := c.SecureConn.Write(b)
	if ferr := c.below.release(); err == nil && ferr != nil {
		return 0, ferr
	}
	return n, err
}

// keepBuf is the largest buffer a recordConn keeps between writes: a full
// yamux frame and its records' overhead.
const keepBuf = 128 << 10

// recordConn is the connection TLS writes its records to. While a write of
// the secured connection runs (held > 0), records are appended to buf;
// the last release sends them. Records TLS writes at other times (the
// handshake, a key update answered while reading, the close alert) go
// straight down, after anything buffered, so the record order never
// changes.
type recordConn struct {
	net.Conn
	mu   sync.Mutex // held while writing to Conn, so buffered and direct records keep their order
	held int
	buf  []byte
}

func (c *recordConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held > 0 {
		c.buf = append(c.buf, b...)
		return len(b), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *recordConn) hold() {
	c.mu.Lock()
	c.held++
	c.mu.Unlock()
}

// release ends one held write; the last one sends what was gathered.
func (c *recordConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held--
	if c.held > 0 {
		return nil
	}
	return c.flushLocked()
}

func (c *recordConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > keepBuf {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}
