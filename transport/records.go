package transport

import (
	"context"
	"errors"
	"fmt"
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
// to the connection below it on its own. A 64 KiB yamux frame (one shard)
// so became five write syscalls. gatheredTLS holds the records of one
// Write of the secured connection and passes them down together when it
// returns; the bytes on the wire are the same. Once the TLS handshake is
// done it runs the cluster secret's gate (gate.go).
type gatheredTLS struct {
	inner   *libp2ptls.Transport
	key     []byte // the gate's HMAC key, from the cluster secret
	sources *sources
}

var _ sec.SecureTransport = (*gatheredTLS)(nil)

// gatedTLS returns the constructor libp2p.Security injects: libp2p's TLS
// with gathered writes and the cluster secret's gate (gate.go), under
// GateID.
func gatedTLS(secret []byte) (func(id protocol.ID, key ic.PrivKey, muxers []tptu.StreamMuxer) (*gatheredTLS, error), error) {
	gk, err := gateKey(secret)
	if err != nil {
		return nil, fmt.Errorf("transport: derive the gate key: %w", err)
	}
	return func(id protocol.ID, key ic.PrivKey, muxers []tptu.StreamMuxer) (*gatheredTLS, error) {
		inner, err := libp2ptls.New(id, key, muxers)
		if err != nil {
			return nil, err
		}
		return &gatheredTLS{inner: inner, key: gk, sources: newSources()}, nil
	}, nil
}

func (t *gatheredTLS) ID() protocol.ID { return t.inner.ID() }

func (t *gatheredTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	leave, ok := t.sources.enter(insecure.RemoteAddr())
	if !ok {
		err := fmt.Errorf("%w: too many handshakes under way from %s", ErrNotInCluster, hostOf(insecure.RemoteAddr()))
		t.sources.refused(insecure.RemoteAddr(), err)
		return nil, err
	}
	defer leave()
	c, err := t.gather(ctx, insecure, p, t.inner.SecureInbound)
	if errors.Is(err, ErrNotInCluster) {
		t.sources.refused(insecure.RemoteAddr(), err)
	}
	return c, err
}

func (t *gatheredTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return t.gather(ctx, insecure, p, t.inner.SecureOutbound)
}

// gather runs the TLS handshake secure over a recordConn on insecure, then
// the gate's proof of the cluster secret.
func (t *gatheredTLS) gather(ctx context.Context, insecure net.Conn, p peer.ID,
	secure func(context.Context, net.Conn, peer.ID) (sec.SecureConn, error)) (sec.SecureConn, error) {
	below := &recordConn{Conn: insecure}
	c, err := secure(ctx, below, p)
	if err != nil {
		return nil, err
	}
	if err := prove(c, insecure, t.key, handshakeDeadline(ctx)); err != nil {
		_ = c.Close()
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
