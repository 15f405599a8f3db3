package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/wire"
)

// DefaultTimeout bounds one request when no timeout is given.
const DefaultTimeout = 30 * time.Second

// maxIdle bounds the idle streams kept per peer.
const maxIdle = 32

// RedialAfter is how long a request made with a SkipUnreachable context
// does not dial a peer whose last dial failed: it fails at once with
// ErrUnreachable. Other requests always dial (a node that restarts is
// usable at once), and a dial that succeeds clears the mark.
const RedialAfter = time.Second

// ErrUnreachable is the error of a request to a peer whose last dial failed
// less than RedialAfter ago; nothing was sent.
var ErrUnreachable = errors.New("unreachable: the last dial failed")

// ErrDialFailed is what the error of a request whose peer could not be
// dialled matches (errors.Is): the dial failed on its own (refused, no
// route, a failed handshake), not for the request's deadline or cancel,
// and the request was never sent.
var ErrDialFailed = errors.New("dial failed")

// dialError is a failed dial's error, as libp2p words it, that also
// matches ErrDialFailed.
type dialError struct{ err error }

func (e *dialError) Error() string   { return e.err.Error() }
func (e *dialError) Unwrap() []error { return []error{ErrDialFailed, e.err} }

type skipKey struct{}

// SkipUnreachable marks ctx's requests as ones with alternatives (a read
// can ask other positions): they skip a peer whose dial failed within
// RedialAfter instead of dialling it again, so a dead node costs a read
// nothing but the skip.
func SkipUnreachable(ctx context.Context) context.Context {
	return context.WithValue(ctx, skipKey{}, true)
}

// SlowFor is how long a peer stays marked slow after its last request
// overdue (unanswered past the client's slow threshold) ended, unless one
// of its requests is answered before.
const SlowFor = 5 * time.Second

// Client sends requests to nodes over pooled streams.
type Client struct {
	h         host.Host
	timeout   time.Duration
	slowAfter time.Duration // 0: never mark a peer slow
	slowFor   time.Duration // SlowFor (tests shorten it)

	onDialFail func(peer.ID) // SetOnDialFailure

	sent, received atomic.Uint64 // frame bytes of the requests answered (Traffic)

	mu         sync.Mutex
	idle       map[peer.ID][]network.Stream
	dialFailed map[peer.ID]time.Time // when the last dial to the peer failed
	health     map[peer.ID]*health
}

// health is what the client knows of a peer's recent answers.
type health struct {
	inflight  int       // requests sent and not answered yet
	overdue   int       // of those, the ones past the slow threshold
	slowUntil time.Time // marked slow until then, once none is overdue
}

// NewClient returns a client on h. timeout bounds each request, or ctx's
// deadline when it is earlier (0: DefaultTimeout).
func NewClient(h host.Host, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{h: h, timeout: timeout, slowFor: SlowFor, idle: make(map[peer.ID][]network.Stream),
		dialFailed: make(map[peer.ID]time.Time), health: make(map[peer.ID]*health)}
}

// SetOnDialFailure makes the client call fn each time a dial to a peer
// fails or outlasts the caller's deadline (not when the caller cancels). fn must not
// block: a front end uses it to look up the cluster description again, in
// case the node moved to new addresses. Call it before the first request.
func (c *Client) SetOnDialFailure(fn func(peer.ID)) { c.onDialFail = fn }

// SetSlowAfter makes the client mark a peer slow when one of its shard
// requests (get, put, batch put) has gone unanswered for d, as a node
// that hangs (stopped process, stuck disk) does while its connection
// stays open: callers with alternatives ask it last (Slow) and bound what
// they leave waiting on it (InFlight).
// The mark lasts while such a request is in flight and SlowFor after, or
// until a shard request to the peer is answered. Call it before the first
// request; 0 (the default) never marks.
func (c *Client) SetSlowAfter(d time.Duration) { c.slowAfter = d }

// Slow reports whether p is marked slow (see SetSlowAfter).
func (c *Client) Slow(p peer.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.health[p]
	return h != nil && (h.overdue > 0 || time.Now().Before(h.slowUntil))
}

// MarkSlow marks p slow for SlowFor (or until one of its shard requests is
// answered) now, for a caller that has just given up waiting on it: a
// hedged read. The client's own threshold may fire a moment later.
func (c *Client) MarkSlow(p peer.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.health[p]
	if h == nil {
		h = &health{}
		c.health[p] = h
	}
	h.slowUntil = time.Now().Add(c.slowFor)
}

// InFlight returns the number of requests to p sent and not answered yet.
func (c *Client) InFlight(p peer.ID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.health[p]; h != nil {
		return h.inflight
	}
	return 0
}

// begin counts a request to p in flight and, for a shard read or write
// (the ops a node answers in milliseconds; a list page or a membership
// change may take long), arms its slow mark; the returned func ends it,
// answered or not.
func (c *Client) begin(p peer.ID, op wire.Op) (end func(answered bool)) {
	c.mu.Lock()
	h := c.health[p]
	if h == nil {
		h = &health{}
		c.health[p] = h
	}
	h.inflight++
	c.mu.Unlock()
	var (
		t            *time.Timer
		fired, ended bool // guarded by c.mu
	)
	if c.slowAfter > 0 && (op == wire.OpGet || op == wire.OpPut || op == wire.OpBatchPut) {
		t = time.AfterFunc(c.slowAfter, func() {
			c.mu.Lock()
			if !ended {
				fired = true
				h.overdue++
			}
			c.mu.Unlock()
		})
	}
	return func(answered bool) {
		if t != nil {
			t.Stop()
		}
		c.mu.Lock()
		ended = true
		h.inflight--
		if fired {
			h.overdue--
			h.slowUntil = time.Now().Add(c.slowFor)
		}
		if answered && t != nil {
			h.slowUntil = time.Time{} // a shard request answered: not slow
		}
		c.mu.Unlock()
	}
}

// Host is the client's libp2p host.
func (c *Client) Host() host.Host { return c.h }

func (c *Client) getStream(ctx context.Context, p peer.ID) (network.Stream, bool, error) {
	c.mu.Lock()
	if ss := c.idle[p]; len(ss) > 0 {
		s := ss[len(ss)-1]
		c.idle[p] = ss[:len(ss)-1]
		c.mu.Unlock()
		return s, true, nil
	}
	if at, ok := c.dialFailed[p]; ok && time.Since(at) < RedialAfter && ctx.Value(skipKey{}) != nil {
		c.mu.Unlock()
		return nil, false, fmt.Errorf("%w %s ago", ErrUnreachable, time.Since(at).Round(time.Millisecond))
	}
	c.mu.Unlock()
	// Dial past libp2p's dial backoff (which grows to minutes): a node that
	// restarts must be usable at once.
	dctx := network.WithForceDirectDial(ctx, "dscluster")
	s, err := c.h.NewStream(dctx, p, wire.ShardProtocol)
	failed := err != nil && ctx.Err() == nil // the peer failed, not our deadline
	c.mu.Lock()
	switch {
	case err == nil:
		delete(c.dialFailed, p)
	case failed:
		c.dialFailed[p] = time.Now()
	}
	c.mu.Unlock()
	// A dial to an address that drops packets (a moved node's old IP)
	// outlasts short deadlines: only the caller's cancel is no failure.
	if err != nil && !errors.Is(ctx.Err(), context.Canceled) && c.onDialFail != nil {
		c.onDialFail(p)
	}
	if failed {
		err = &dialError{err}
	}
	return s, false, err
}

func (c *Client) putStream(p peer.ID, s network.Stream) {
	_ = s.SetDeadline(time.Time{})
	c.mu.Lock()
	if len(c.idle[p]) < maxIdle {
		c.idle[p] = append(c.idle[p], s)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	_ = s.Close()
}

// Do sends req to peer p and returns its response. Errors from the network
// are wrapped as *PeerError; a non-OK status is returned as a response, not
// an error, so callers can branch on it.
func (c *Client) Do(ctx context.Context, p peer.ID, req *wire.Request) (*wire.Response, error) {
	return c.DoBody(ctx, p, req.Op, wire.AppendRequest(nil, req), nil)
}

// DoBody is Do with a request body the caller encoded itself: head
// followed by payload, which goes out as it is (a shard's data is sent
// from where the encoder put it, without a copy into the frame).
func (c *Client) DoBody(ctx context.Context, p peer.ID, op wire.Op, head, payload []byte) (*wire.Response, error) {
	resp, _, err := c.doBody(ctx, p, op, head, payload, nil)
	return resp, err
}

// DoInto is Do with the response frame read into buf (grown as needed):
// the response's payload aliases the returned buffer, which the caller may
// reuse once it is done with the response. A shard read then costs no
// fresh allocation.
func (c *Client) DoInto(ctx context.Context, p peer.ID, req *wire.Request, buf []byte) (*wire.Response, []byte, error) {
	return c.doBody(ctx, p, req.Op, wire.AppendRequest(nil, req), nil, buf)
}

func (c *Client) doBody(ctx context.Context, p peer.ID, op wire.Op, head, payload, buf []byte) (*wire.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout) // or ctx's deadline, if earlier
	defer cancel()
	end := c.begin(p, op)
	resp, buf, err := c.send(ctx, p, op, head, payload, buf)
	end(err == nil)
	return resp, buf, err
}

func (c *Client) send(ctx context.Context, p peer.ID, op wire.Op, head, payload, buf []byte) (*wire.Response, []byte, error) {
	// A pooled stream may have been closed by the peer (restart, idle
	// timeout); one retry on a fresh stream is safe: see wire's retry rule.
	for attempt := 0; ; attempt++ {
		s, pooled, err := c.getStream(ctx, p)
		if err != nil {
			return nil, buf, &PeerError{Peer: p, Op: op, Err: err}
		}
		var resp *wire.Response
		var reusable bool
		resp, buf, reusable, err = roundTrip(ctx, s, head, payload, buf)
		if err == nil {
			c.sent.Add(uint64(wire.FrameLen(len(head) + len(payload))))
			c.received.Add(uint64(wire.FrameLen(len(buf))))
			buf = buf[:0]
			if reusable {
				c.putStream(p, s)
			} else {
				_ = s.Reset()
			}
			return resp, buf, nil
		}
		_ = s.Reset()
		if pooled && attempt == 0 && expired(ctx) == nil && !errors.Is(err, wire.ErrMalformed) {
			// The other idle streams to p most likely share the dead
			// connection (the node restarted): the retry opens a fresh one.
			c.dropIdle(p)
			continue
		}
		return nil, buf, &PeerError{Peer: p, Op: op, Err: err}
	}
}

// roundTrip sends a request on s and reads its answer. reusable is false
// when ctx was cancelled meanwhile: the past deadline that cancellation
// puts on s may land after the answer, so s must not serve another request.
func roundTrip(ctx context.Context, s network.Stream, head, payload, buf []byte) (resp *wire.Response, _ []byte, reusable bool, err error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	// Unblock I/O when ctx is cancelled before the deadline.
	stop := context.AfterFunc(ctx, func() { _ = s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := wire.WriteFrameParts(s, head, payload); err != nil {
		if e := expired(ctx); e != nil {
			return nil, buf, false, e
		}
		return nil, buf, false, fmt.Errorf("send: %w", err)
	}
	frame, err := wire.ReadFrame(s, buf)
	if err != nil {
		if e := expired(ctx); e != nil {
			return nil, buf, false, e
		}
		return nil, buf, false, fmt.Errorf("receive: %w", err)
	}
	resp, err = wire.DecodeResponse(frame)
	// The frame's length goes back with it: the caller counts it
	// (Traffic) and reuses its storage.
	return resp, frame, stop(), err
}

// Traffic reports the bytes of the request and response frames the client
// has exchanged, for requests that were answered: what crossed the cluster
// secret's cipher and TLS for them, less the layers' own framing. Benchmarks
// divide it by operations.
func (c *Client) Traffic() (sent, received uint64) {
	return c.sent.Load(), c.received.Load()
}

// expired is ctx's error, or DeadlineExceeded once its deadline has passed:
// the stream's deadline is the same instant and may fire before ctx's timer
// does, and a request that ran out of time is no sign of a dead stream.
func expired(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// dropIdle resets the idle streams to p.
func (c *Client) dropIdle(p peer.ID) {
	c.mu.Lock()
	ss := c.idle[p]
	delete(c.idle, p)
	c.mu.Unlock()
	for _, s := range ss {
		_ = s.Reset()
	}
}

// PeerError is a failure to get an answer from a peer. The request may or
// may not have been applied (see wire's retry rule).
type PeerError struct {
	Peer peer.ID
	Op   wire.Op
	Err  error
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("%s: %v", e.Op, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

// Close resets all idle streams.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, ss := range c.idle {
		for _, s := range ss {
			_ = s.Reset()
		}
		delete(c.idle, p)
	}
}
