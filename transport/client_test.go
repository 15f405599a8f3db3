package transport

import (
	"context"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/filedrive-team/go-ds-cluster/wire"
)

// pair starts a server host that answers each request with OK, or holds
// it until release is closed when hold is set, and a client host that can
// dial it, both on 127.0.0.1 with a fresh secret.
func pair(t *testing.T, hold func() bool, release <-chan struct{}) (*Client, peer.ID) {
	t.Helper()
	srv, cl, _ := testHosts(t)
	srv.SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		defer s.Close()
		for {
			if _, err := wire.ReadFrame(s, nil); err != nil {
				return
			}
			if hold() {
				<-release
				_ = s.Reset()
				return
			}
			if _, err := wire.WriteResponse(s, nil, &wire.Response{Status: wire.StatusOK}); err != nil {
				return
			}
		}
	})
	c := NewClient(cl, 10*time.Second)
	t.Cleanup(c.Close)
	return c, srv.ID()
}

// testHosts starts a server host listening on 127.0.0.1 and a client host
// that can dial it, with a fresh secret (psk); both close when the test
// ends.
func testHosts(t *testing.T) (srv, cl host.Host, psk []byte) {
	t.Helper()
	psk = make([]byte, 32)
	if _, err := rand.Read(psk); err != nil {
		t.Fatal(err)
	}
	srv, err := NewHost(HostConfig{Secret: psk, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cl, err = NewHost(HostConfig{Secret: psk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	cl.Peerstore().AddAddrs(srv.ID(), srv.Addrs(), peerstore.PermanentAddrTTL)
	return srv, cl, psk
}

// TestSlowMark: a request left unanswered past the slow threshold marks
// the peer slow while it stays in flight; an answered request clears the
// mark; a client without a threshold never marks.
func TestSlowMark(t *testing.T) {
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	var holding atomic.Bool
	holding.Store(true)
	c, p := pair(t, holding.Load, release)
	c.SetSlowAfter(50 * time.Millisecond)
	ping := &wire.Request{Op: wire.OpGet, Key: "/k"}

	if c.Slow(p) || c.InFlight(p) != 0 {
		t.Fatalf("fresh client: slow %v, in flight %d; want false, 0", c.Slow(p), c.InFlight(p))
	}
	const held = 3
	done := make(chan error, held)
	for range held {
		go func() {
			_, err := c.Do(context.Background(), p, ping)
			done <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !c.Slow(p) || c.InFlight(p) != held {
		if time.Now().After(deadline) {
			t.Fatalf("held requests: slow %v, in flight %d; want true, %d", c.Slow(p), c.InFlight(p), held)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The server answers again: the held requests fail (reset), which
	// does not clear the mark; the next answer does.
	holding.Store(false)
	close(release)
	for range held {
		if err := <-done; err == nil {
			t.Fatal("a held request that the server reset succeeded")
		}
	}
	if !c.Slow(p) || c.InFlight(p) != 0 {
		t.Fatalf("after resets: slow %v, in flight %d; want true, 0", c.Slow(p), c.InFlight(p))
	}
	if _, err := c.Do(context.Background(), p, ping); err != nil {
		t.Fatal(err)
	}
	if c.Slow(p) {
		t.Fatal("still slow after an answered request")
	}
}

func TestNoSlowMarkWithoutThreshold(t *testing.T) {
	release := make(chan struct{})
	c, p := pair(t, func() bool { return true }, release)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, p, &wire.Request{Op: wire.OpGet, Key: "/k"})
	close(release)
	if err == nil {
		t.Fatal("a request the server held past its deadline succeeded")
	}
	if c.Slow(p) || c.InFlight(p) != 0 {
		t.Fatalf("no threshold: slow %v, in flight %d; want false, 0", c.Slow(p), c.InFlight(p))
	}
}

// TestSlowMarkOnlyForShardOps: a status or list request may take long on a
// healthy node; held past the threshold, it does not mark the node slow.
func TestSlowMarkOnlyForShardOps(t *testing.T) {
	release := make(chan struct{})
	c, p := pair(t, func() bool { return true }, release)
	c.SetSlowAfter(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, p, &wire.Request{Op: wire.OpStatus})
		done <- err
	}()
	time.Sleep(150 * time.Millisecond)
	slow, inflight := c.Slow(p), c.InFlight(p)
	close(release)
	<-done
	if slow || inflight != 1 {
		t.Fatalf("a status request held past the threshold: slow %v, in flight %d; want false, 1", slow, inflight)
	}
}

// TestSlowMarkExpires: after its last overdue request ended, a peer stays
// slow for SlowFor, then is asked as any other; MarkSlow lasts as long.
func TestSlowMarkExpires(t *testing.T) {
	release := make(chan struct{})
	c, p := pair(t, func() bool { return true }, release)
	c.SetSlowAfter(20 * time.Millisecond)
	c.slowFor = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, p, &wire.Request{Op: wire.OpGet, Key: "/k"}); err == nil {
		t.Fatal("a held request succeeded")
	}
	close(release)
	if !c.Slow(p) {
		t.Fatal("not slow right after an overdue request ended")
	}
	time.Sleep(1300 * time.Millisecond)
	if c.Slow(p) {
		t.Fatal("still slow past slowFor")
	}
	c.MarkSlow(p)
	if !c.Slow(p) {
		t.Fatal("not slow after MarkSlow")
	}
	time.Sleep(1300 * time.Millisecond)
	if c.Slow(p) {
		t.Fatal("MarkSlow outlasted slowFor")
	}
}

// TestOnlyShardAnswersClearTheMark: a node with a stuck disk may still
// answer a status call; only an answered shard request clears its mark.
func TestOnlyShardAnswersClearTheMark(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c, p := pair(t, func() bool { return false }, release)
	c.SetSlowAfter(time.Second)
	c.MarkSlow(p)
	if _, err := c.Do(context.Background(), p, &wire.Request{Op: wire.OpStatus}); err != nil {
		t.Fatal(err)
	}
	if !c.Slow(p) {
		t.Fatal("an answered status call cleared the slow mark")
	}
	if _, err := c.Do(context.Background(), p, &wire.Request{Op: wire.OpGet, Key: "/k"}); err != nil {
		t.Fatal(err)
	}
	if c.Slow(p) {
		t.Fatal("still slow after an answered shard request")
	}
}

// TestTrafficCountsAnsweredFrames: Traffic adds up the request and response
// frames of answered requests, length prefixes included, and nothing for a
// request that was not answered.
func TestTrafficCountsAnsweredFrames(t *testing.T) {
	var refuse atomic.Bool
	release := make(chan struct{})
	close(release)
	c, id := pair(t, refuse.Load, release)
	payload := make([]byte, 64<<10)
	head := wire.AppendRequest(nil, &wire.Request{Op: wire.OpPut})
	ok := wire.AppendResponse(nil, &wire.Response{Status: wire.StatusOK})
	for i := 0; i < 3; i++ {
		if _, err := c.DoBody(context.Background(), id, wire.OpPut, head, payload); err != nil {
			t.Fatal(err)
		}
	}
	sent, received := c.Traffic()
	if want := 3 * uint64(wire.FrameLen(len(head)+len(payload))); sent != want {
		t.Fatalf("sent %d bytes, want %d", sent, want)
	}
	if want := 3 * uint64(wire.FrameLen(len(ok))); received != want {
		t.Fatalf("received %d bytes, want %d", received, want)
	}
	refuse.Store(true) // the server resets the stream instead of answering
	if _, err := c.DoBody(context.Background(), id, wire.OpPut, head, payload); err == nil {
		t.Fatal("a reset stream answered")
	}
	if s, r := c.Traffic(); s != sent || r != received {
		t.Fatalf("an unanswered request counted: %d/%d after %d/%d", s, r, sent, received)
	}
}
