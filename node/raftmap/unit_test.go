package raftmap

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
)

func applyJSON(t *testing.T, f *fsm, index uint64, v any) any {
	t.Helper()
	return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: mustJSON(t, v)})
}

// The FSM applies, rejects without change, and round-trips a snapshot.
func TestFSM(t *testing.T) {
	init := initCommand(t, nil)

	f := newFSM()
	if resp := applyJSON(t, f, 1, membership.Command{Op: membership.OpRebalance}); !errors.Is(resp.(error), membership.ErrRejected) {
		t.Fatalf("rebalance before init = %v, want ErrRejected", resp)
	}
	if f.cluster.Load() != nil {
		t.Fatal("a rejected command set a cluster")
	}
	if resp := f.Apply(&raft.Log{Index: 2, Data: []byte("{not json")}); resp == nil || !errors.Is(resp.(error), membership.ErrRejected) {
		t.Fatalf("undecodable entry = %v, want ErrRejected", resp)
	}
	if resp := applyJSON(t, f, 3, init); resp != nil {
		t.Fatalf("init = %v", resp)
	}
	c := f.cluster.Load()
	if c == nil || c.ID != init.Cluster.ID {
		t.Fatalf("cluster after init = %+v", c)
	}
	select {
	case <-f.changed:
	default:
		t.Fatal("no change signal after init")
	}
	if resp := applyJSON(t, f, 4, init); !errors.Is(resp.(error), membership.ErrRejected) || f.cluster.Load() != c {
		t.Fatalf("second init = %v, cluster changed: %v", resp, f.cluster.Load() != c)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Apply after the snapshot was taken does not change it.
	applyJSON(t, f, 5, membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: fakeNode(t)}})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed {
		t.Fatal("Persist did not close the sink")
	}

	g2 := newFSM()
	if err := g2.Restore(io.NopCloser(bytes.NewReader(sink.buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(t, g2.cluster.Load()), mustJSON(t, c); !bytes.Equal(got, want) {
		t.Fatalf("restored\n%s\nwant\n%s", got, want)
	}
	if err := g2.Restore(io.NopCloser(bytes.NewReader([]byte("{")))); err == nil {
		t.Fatal("a truncated snapshot restored")
	}

	// A snapshot before init restores to nil.
	empty := &memSink{}
	s0, _ := newFSM().Snapshot()
	if err := s0.Persist(empty); err != nil {
		t.Fatal(err)
	}
	if err := g2.Restore(io.NopCloser(&empty.buf)); err != nil || g2.cluster.Load() != nil {
		t.Fatalf("restore of an empty snapshot: err %v, cluster %v", err, g2.cluster.Load())
	}
}

type memSink struct {
	buf    bytes.Buffer
	closed bool
}

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { s.closed = true; return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { return nil }

// The stream layer carries bytes both ways, names peers by ID, and Close
// unblocks Accept and resets open streams.
func TestStreamLayer(t *testing.T) {
	g := newGroup(t, 0, Config{})
	a, b := g.members[g.add()], g.members[g.add()]
	la := NewStreamLayer(a.host, g.addrsOf, nil)
	lb := NewStreamLayer(b.host, g.addrsOf, nil)
	defer la.Close()
	defer lb.Close()

	if la.Addr().String() != a.id.String() {
		t.Fatalf("Addr = %s, want the peer id %s", la.Addr(), a.id)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := lb.Accept()
		if err != nil {
			t.Errorf("accept: %v", err)
		}
		accepted <- c
	}()
	c, err := la.Dial(raft.ServerAddress(b.id.String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != b.id.String() || c.LocalAddr().String() != a.id.String() {
		t.Fatalf("dialed conn addrs %s -> %s, want %s -> %s", c.LocalAddr(), c.RemoteAddr(), a.id, b.id)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var s net.Conn
	select {
	case s = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no stream accepted")
	}
	if s == nil {
		t.FailNow()
	}
	if s.RemoteAddr().String() != a.id.String() {
		t.Fatalf("accepted conn from %s, want %s", s.RemoteAddr(), a.id)
	}
	buf := make([]byte, 4)
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v; want ping", buf, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v; want pong", buf, err)
	}

	// Closing b closes its side: a's reads end, and b's Accept returns.
	done := make(chan error, 1)
	go func() { _, err := lb.Accept(); done <- err }()
	lb.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	if _, err := io.ReadFull(c, buf); err == nil {
		t.Fatal("read from a closed stream succeeded")
	}
	// Dial may succeed (lazy protocol negotiation); the exchange must not.
	if c2, err := la.Dial(raft.ServerAddress(b.id.String()), 2*time.Second); err == nil {
		_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
		_, werr := c2.Write([]byte("ping"))
		_, rerr := io.ReadFull(c2, buf)
		if werr == nil && rerr == nil {
			t.Fatal("a stream to a closed layer's protocol carried data")
		}
		c2.Close()
	}
	if _, err := la.Dial("not-a-peer", time.Second); err == nil {
		t.Fatal("dial to a bad address succeeded")
	}
	la.Close()
	if _, err := la.Dial(raft.ServerAddress(b.id.String()), time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("dial on a closed layer = %v, want net.ErrClosed", err)
	}
}

// A layer with an allow function resets the streams of other peers: they
// never reach Accept, and the dialer's exchange fails.
func TestStreamLayerRefusesPeers(t *testing.T) {
	g := newGroup(t, 0, Config{})
	a, b, c := g.members[g.add()], g.members[g.add()], g.members[g.add()]
	lb := NewStreamLayer(b.host, g.addrsOf, func(p peer.ID) bool { return p == c.id })
	defer lb.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			s, err := lb.Accept()
			if err != nil {
				return
			}
			accepted <- s
		}
	}()
	buf := make([]byte, 4)
	for _, from := range []*member{a, c} {
		l := NewStreamLayer(from.host, g.addrsOf, nil)
		defer l.Close()
		conn, err := l.Dial(raft.ServerAddress(b.id.String()), 5*time.Second)
		if err != nil && from == a && errors.Is(err, network.ErrReset) {
			// b reset the stream before a's protocol negotiation read
			// its answer: the refusal, seen at the dial.
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		_, werr := conn.Write([]byte("ping"))
		if from == a {
			// b never writes: only a reset ends this read before the
			// deadline.
			if _, rerr := io.ReadFull(conn, buf); werr == nil && (rerr == nil || time.Since(start) > 3*time.Second) {
				t.Fatalf("a refused peer's raft stream was not reset (read: %v after %s)", rerr, time.Since(start))
			}
			continue
		}
		if werr != nil {
			t.Fatal(werr)
		}
		select {
		case s := <-accepted:
			if s.RemoteAddr().String() != c.id.String() || len(accepted) != 0 {
				t.Fatalf("accepted a stream from %s (and %d more), want one from %s", s.RemoteAddr(), len(accepted), c.id)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the allowed peer's stream was not accepted")
		}
	}
}

// dialable maps unspecified listen addresses to loopback.
func TestDialable(t *testing.T) {
	in := mustAddrs(t, "/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001", "/ip4/10.0.0.1/tcp/4001")
	got := dialable(in)
	want := []string{"/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001", "/ip4/10.0.0.1/tcp/4001"}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("dialable = %v, want %v", got, want)
		}
	}
	if dialable(nil) != nil {
		t.Fatal("dialable(nil) != nil")
	}
}

// The hclog adapter keeps pairs, names the sub-logger, and filters below
// warn by default.
func TestHCLogger(t *testing.T) {
	l := newHCLogger("raft")
	if l.IsInfo() && !l.z.LevelEnabled(logging.LevelDebug) {
		t.Fatal("info enabled by default")
	}
	if !l.IsWarn() || !l.IsError() {
		t.Fatal("warn or error disabled")
	}
	n := l.Named("net").With("a", 1).(*hcLogger)
	if n.Name() != "raft.net" {
		t.Fatalf("name %q", n.Name())
	}
	kv := n.fields([]any{"b", hclog.Fmt("%d-%s", 2, "x"), "odd"})
	want := []any{"raft_logger", "raft.net", "a", 1, "b", "2-x", "EXTRA_VALUE_AT_END", "odd"}
	if string(mustJSON(t, kv)) != string(mustJSON(t, want)) {
		t.Fatalf("fields = %v, want %v", kv, want)
	}
	n.SetLevel(hclog.Off)
	if l.IsError() {
		t.Fatal("SetLevel on a derived logger did not reach its parent")
	}
	w := l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	if _, err := w.Write([]byte("[ERROR] x\npartial")); err != nil {
		t.Fatal(err)
	}
	lvl, rest := inferLevel("[WARN] careful", hclog.Info)
	if lvl != hclog.Warn || rest != "careful" {
		t.Fatalf("inferLevel = %v %q", lvl, rest)
	}
}

func mustAddrs(t *testing.T, ss ...string) []ma.Multiaddr {
	t.Helper()
	var out []ma.Multiaddr
	for _, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}
