package transport

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/filedrive-team/go-ds-cluster/wire"
)

// TestTimeoutIsNotADeadStream: a request that a live peer leaves
// unanswered until the request's deadline fails with the deadline. It used
// to be taken, about one time in three, for a dead pooled stream (a peer
// restart), which resets every idle stream to the peer and sends the
// request again on a new one: the stream's deadline and ctx's timer are
// set for the same instant, and when the stream's fired first, send saw
// ctx.Err() == nil.
func TestTimeoutIsNotADeadStream(t *testing.T) {
	srv, cl, _ := testHosts(t)
	var streams, requests atomic.Int64
	release := make(chan struct{})
	defer close(release)
	srv.SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		streams.Add(1)
		defer s.Close()
		for {
			f, err := wire.ReadFrame(s, nil)
			if err != nil {
				return
			}
			requests.Add(1)
			r, _ := wire.DecodeRequest(f)
			if r != nil && r.Key == "/hold" {
				<-release
				s.Reset()
				return
			}
			if _, err := wire.WriteResponse(s, nil, &wire.Response{Op: r.Op, Status: wire.StatusOK}); err != nil {
				return
			}
		}
	})
	p := srv.ID()
	c := NewClient(cl, 10*time.Second)
	defer c.Close()

	idle := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.idle[p])
	}
	// Fill the pool with 4 idle streams: 4 requests in flight at once.
	warm := func() {
		for idle() < 4 {
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := c.Do(context.Background(), p, &wire.Request{Op: wire.OpGet, Key: "/ok"}); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
		}
	}
	retried := 0
	const trials = 20
	for i := 0; i < trials; i++ {
		warm()
		before, reqBefore, streamsBefore := idle(), requests.Load(), streams.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		_, err := c.Do(ctx, p, &wire.Request{Op: wire.OpGet, Key: "/hold"})
		cancel()
		time.Sleep(20 * time.Millisecond) // let a re-sent request reach the server
		after := idle()
		if err == nil {
			t.Fatal("held request succeeded")
		}
		if after != before-1 || streams.Load() != streamsBefore || !errors.Is(err, context.DeadlineExceeded) {
			retried++
			t.Logf("trial %d: err %q (is DeadlineExceeded: %v); idle streams %d -> %d; new streams opened %d; requests received %d",
				i, err, errors.Is(err, context.DeadlineExceeded), before, after, streams.Load()-streamsBefore, requests.Load()-reqBefore)
		}
	}
	if retried > 0 {
		t.Fatalf("%d of %d timed-out requests were handled as a dead pooled stream: idle pool reset and the request retried on a new stream", retried, trials)
	}
}

// hookHost hands out streams whose reads and deadline changes the test sees.
type hookHost struct {
	host.Host
	onRead      func(n int)   // after each successful Read
	delayPastDL time.Duration // how late the "unblock" deadline lands
}

func (h *hookHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return &hookStream{Stream: s, h: h}, nil
}

type hookStream struct {
	network.Stream
	h *hookHost
}

func (s *hookStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	if n > 0 && s.h.onRead != nil {
		s.h.onRead(n)
	}
	return n, err
}

// SetDeadline delays the deadline roundTrip's AfterFunc sets on cancel
// (time.Unix(1, 0)): the goroutine context.AfterFunc starts for it may
// run at any later moment; the delay picks one.
func (s *hookStream) SetDeadline(t time.Time) error {
	if t.Equal(time.Unix(1, 0)) && s.h.delayPastDL > 0 {
		time.Sleep(s.h.delayPastDL)
	}
	return s.Stream.SetDeadline(t)
}

// TestCancelAfterAnswerSparesPooledStreams: a caller cancels just as its
// answer has been read. roundTrip's stop() then returns false (the
// AfterFunc has started) but does not wait for it. The stream used to go
// back to the pool, and the AfterFunc's past deadline landed on it while
// the next, unrelated request used it: that request failed on a healthy
// stream, the idle pool was reset, and the request reached the node a
// second time. Such a stream is now reset instead of pooled.
func TestCancelAfterAnswerSparesPooledStreams(t *testing.T) {
	srv, cl, _ := testHosts(t)
	var twos atomic.Int64
	srv.SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		defer s.Close()
		for {
			f, err := wire.ReadFrame(s, nil)
			if err != nil {
				return
			}
			r, _ := wire.DecodeRequest(f)
			if r.Key == "/two" {
				twos.Add(1)
				time.Sleep(100 * time.Millisecond) // a normal, slowish answer
			}
			if _, err := wire.WriteResponse(s, nil, &wire.Response{Op: r.Op, Status: wire.StatusOK, Message: r.Key}); err != nil {
				return
			}
		}
	})
	p := srv.ID()
	hh := &hookHost{Host: cl}
	c := NewClient(hh, 10*time.Second)
	defer c.Close()

	// Warm: one pooled stream.
	if _, err := c.Do(context.Background(), p, &wire.Request{Op: wire.OpGet, Key: "/warm"}); err != nil {
		t.Fatal(err)
	}
	// Request one: its caller cancels as the last byte of the answer is read.
	ctx, cancel := context.WithCancel(context.Background())
	var armed atomic.Bool
	armed.Store(true)
	hh.onRead = func(int) {
		if armed.Load() {
			armed.Store(false)
			cancel()
			time.Sleep(5 * time.Millisecond) // the AfterFunc goroutine has started
		}
	}
	hh.delayPastDL = 30 * time.Millisecond
	resp, err := c.Do(ctx, p, &wire.Request{Op: wire.OpGet, Key: "/one"})
	hh.onRead = nil
	if err != nil {
		t.Skipf("request one failed (%v): the cancel beat the read, try again", err)
	}
	if resp.Message != "/one" {
		t.Fatalf("request one answered %q", resp.Message)
	}
	// Request two, by another caller, with no cancel and a 10 s timeout.
	start := time.Now()
	resp, err = c.Do(context.Background(), p, &wire.Request{Op: wire.OpGet, Key: "/two"})
	if err != nil {
		t.Fatalf("request two: %v", err)
	}
	if n := twos.Load(); n != 1 {
		t.Fatalf("request two reached the node %d times (took %v): request one's cancel deadline landed on the pooled stream it then used", n, time.Since(start).Round(time.Millisecond))
	}
}
