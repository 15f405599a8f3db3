package raftmap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/filedrive-team/go-ds-cluster/transport"
)

// Protocol is the libp2p protocol that carries raft's RPCs.
const Protocol protocol.ID = "/dscluster/raft/1.0.0"

// Addr is a peer ID as a net.Addr: raft's ServerAddress and ServerID are
// both the peer ID string.
type Addr peer.ID

// Network returns "libp2p".
func (a Addr) Network() string { return "libp2p" }

// String returns the peer ID string.
func (a Addr) String() string { return peer.ID(a).String() }

// StreamLayer is a raft.StreamLayer over libp2p streams of Protocol. Raft
// addresses are peer ID strings; Dial finds the peer's multiaddrs through
// the resolver given to NewStreamLayer and the host's peerstore.
//
// Close unblocks Accept and closes every stream the layer handed out, in
// both directions, so that no raft connection outlives it. It does not close
// the host.
//
// Dial can succeed although the peer does not (or no longer) serve
// Protocol: libp2p negotiates the protocol lazily when identify already
// listed it, so the refusal shows on the first read, as an RPC error.
type StreamLayer struct {
	host    host.Host
	addrsOf func(peer.ID) []ma.Multiaddr
	allow   func(peer.ID) bool

	incoming  chan network.Stream
	ctx       context.Context // done when the layer closes
	cancel    context.CancelFunc
	closed    <-chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	conns map[*streamConn]struct{}
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// NewStreamLayer registers the raft protocol handler on h. addrsOf, which
// may be nil or return nil, gives the multiaddrs of a peer to dial; they are
// added to the peerstore before each dial. allow, when not nil, says which
// peers may open raft streams: the others' are reset.
func NewStreamLayer(h host.Host, addrsOf func(peer.ID) []ma.Multiaddr, allow func(peer.ID) bool) *StreamLayer {
	ctx, cancel := context.WithCancel(context.Background())
	l := &StreamLayer{
		host:     h,
		addrsOf:  addrsOf,
		allow:    allow,
		incoming: make(chan network.Stream),
		ctx:      ctx,
		cancel:   cancel,
		closed:   ctx.Done(),
		conns:    make(map[*streamConn]struct{}),
	}
	h.SetStreamHandler(Protocol, l.handle)
	return l
}

// handle passes an incoming stream to Accept, or resets it once the layer
// is closed or when its peer is not allowed.
func (l *StreamLayer) handle(s network.Stream) {
	if p := s.Conn().RemotePeer(); l.allow != nil && !l.allow(p) {
		log.Warnw("raft stream refused: the peer is not a member", "peer", p.String())
		_ = s.Reset()
		return
	}
	select {
	case l.incoming <- s:
	case <-l.closed:
		_ = s.Reset()
	}
}

// Accept waits for the next incoming raft stream. After Close it returns
// net.ErrClosed.
func (l *StreamLayer) Accept() (net.Conn, error) {
	select {
	case s := <-l.incoming:
		c, ok := l.track(s)
		if !ok {
			return nil, net.ErrClosed
		}
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Addr is the local peer ID.
func (l *StreamLayer) Addr() net.Addr { return Addr(l.host.ID()) }

// Dial opens a raft stream to the peer whose ID is address, within timeout.
func (l *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	id, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("raftmap: address %q is not a peer id: %w", address, err)
	}
	if l.addrsOf != nil {
		if addrs := dialable(l.addrsOf(id)); len(addrs) > 0 {
			l.host.Peerstore().AddAddrs(id, addrs, peerstore.TempAddrTTL)
		}
	}
	// The dial ends at the timeout or when the layer closes.
	ctx, cancel := context.WithTimeout(l.ctx, timeout)
	defer cancel()
	s, err := l.host.NewStream(ctx, id, Protocol)
	if err != nil {
		return nil, fmt.Errorf("raftmap: open a raft stream to %s: %w", id, err)
	}
	c, ok := l.track(s)
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

// Close removes the protocol handler, unblocks Accept and closes every open
// raft stream. It is idempotent.
func (l *StreamLayer) Close() error {
	l.closeOnce.Do(func() {
		l.host.RemoveStreamHandler(Protocol)
		l.mu.Lock()
		l.cancel()
		conns := l.conns
		l.conns = nil
		l.mu.Unlock()
		// Close rather than reset: the peer's raft reads a clean EOF and
		// does not log a decode error. Neither blocks.
		for c := range conns {
			_ = c.Stream.Close()
		}
	})
	return nil
}

// track wraps s and remembers it for Close; it resets s and returns false
// when the layer is already closed.
func (l *StreamLayer) track(s network.Stream) (*streamConn, bool) {
	c := &streamConn{Stream: s, layer: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		_ = s.Reset()
		return nil, false
	}
	l.conns[c] = struct{}{}
	return c, true
}

func (l *StreamLayer) forget(c *streamConn) {
	l.mu.Lock()
	if l.conns != nil {
		delete(l.conns, c)
	}
	l.mu.Unlock()
}

// dialable replaces unspecified IPs (0.0.0.0, ::), which a node may listen
// on but nobody can dial, by loopback, as transport.DialAddrs does.
func dialable(addrs []ma.Multiaddr) []ma.Multiaddr {
	if len(addrs) == 0 {
		return nil
	}
	s := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if a != nil {
			s = append(s, a.String())
		}
	}
	out, err := transport.DialAddrs(s)
	if err != nil {
		// The input were multiaddrs already; a rewrite cannot break them.
		return addrs
	}
	return out
}

// streamConn is a libp2p stream as a net.Conn.
type streamConn struct {
	network.Stream
	layer *StreamLayer
}

var _ net.Conn = (*streamConn)(nil)

func (c *streamConn) LocalAddr() net.Addr  { return Addr(c.Stream.Conn().LocalPeer()) }
func (c *streamConn) RemoteAddr() net.Addr { return Addr(c.Stream.Conn().RemotePeer()) }

// Read reads from the stream. Once the layer is closed a read error is
// io.EOF: the layer closed the stream on purpose, and raft logs anything
// but EOF as a failure.
func (c *streamConn) Read(p []byte) (int, error) {
	n, err := c.Stream.Read(p)
	if err != nil && err != io.EOF && c.layer.ctx.Err() != nil {
		err = io.EOF
	}
	return n, err
}

// Close closes the stream in both directions.
func (c *streamConn) Close() error {
	c.layer.forget(c)
	err := c.Stream.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
