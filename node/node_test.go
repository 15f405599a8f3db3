package node_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	bolt "go.etcd.io/bbolt"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/repair"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// newHost starts a libp2p host with secret and registers its Close.
func newHost(t *testing.T, secret string) host.Host {
	t.Helper()
	psk, err := config.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	h, err := transport.NewHost(transport.HostConfig{Secret: psk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// openStream connects h to node 0 of c and opens a shard protocol stream.
func openStream(t *testing.T, ctx context.Context, h host.Host, c *clustertest.Cluster) network.Stream {
	t.Helper()
	n := c.Node(0)
	h.Peerstore().AddAddrs(n.ID(), n.Addrs(), peerstore.PermanentAddrTTL)
	if err := h.Connect(ctx, peer.AddrInfo{ID: n.ID(), Addrs: n.Addrs()}); err != nil {
		t.Fatalf("connect to node 0: %v", err)
	}
	s, err := h.NewStream(ctx, n.ID(), wire.ShardProtocol)
	if err != nil {
		t.Fatalf("open stream to node 0: %v", err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	// A bound on each exchange, so a node that never answers fails the
	// test instead of hanging it; answers arrive in milliseconds.
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	return s
}

// exchange writes raw bytes, closes the write side if closeWrite, and reads
// one response frame. It returns the response, or the read error when the
// node reset or closed the stream instead of answering.
func exchange(t *testing.T, s network.Stream, raw []byte, closeWrite bool) (*wire.Response, error) {
	t.Helper()
	if _, err := s.Write(raw); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	if closeWrite {
		if err := s.CloseWrite(); err != nil {
			return nil, fmt.Errorf("close write: %w", err)
		}
	}
	frame, err := wire.ReadFrame(s, nil)
	if err != nil {
		return nil, err
	}
	resp, err := wire.DecodeResponse(frame)
	if err != nil {
		t.Fatalf("the node sent a response that does not decode: %v", err)
	}
	return resp, nil
}

func frame(body []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(out, body...)
}

// keyNotOwnedAt returns a key and a position whose owner is not node 0.
func keyNotOwnedAt(c *clustertest.Cluster) (string, int) {
	for i := 0; ; i++ {
		k := fmt.Sprintf("/bad/owner-%d", i)
		for pos, o := range c.Owners(k) {
			if o != 0 {
				return k, pos
			}
		}
	}
}

// keyOwnedAt returns a key whose shard at position pos is on node 0.
func keyOwnedAt(c *clustertest.Cluster, pos int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("/bad/mine-%d", i)
		if c.Owners(k)[pos] == 0 {
			return k
		}
	}
}

func encodeShard(t *testing.T, key string, size, index int) []byte {
	t.Helper()
	return encodeShardAt(t, key, size, index, 1<<20)
}

func TestBadInputKeepsServing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	h := newHost(t, c.Secret)
	r := rand.New(rand.NewPCG(21, 22))

	garbage := make([]byte, 200)
	for i := range garbage {
		garbage[i] = byte(r.Uint32())
	}
	// Garbage whose first 4 bytes read as a plausible length (a little
	// over what follows): the node waits for the rest and gets EOF.
	smallGarbage := append(binary.BigEndian.AppendUint32(nil, 300), garbage...)

	badVersion := wire.AppendRequest(nil, &wire.Request{Op: wire.OpStatus})
	badVersion[0] = wire.Version + 41
	unknownOp := wire.NewBody(nil, wire.Op(0x3f)).U64(0).Bytes()

	corruptShard := encodeShard(t, keyOwnedAt(c, 0), 64<<10, 0)
	corruptShard[len(corruptShard)-1] ^= 1
	corruptPut := wire.AppendRequest(nil, &wire.Request{Op: wire.OpPut, Shard: corruptShard})

	foreignKey, foreignPos := keyNotOwnedAt(c)
	foreignPut := wire.AppendRequest(nil, &wire.Request{Op: wire.OpPut, Shard: encodeShard(t, foreignKey, 64<<10, foreignPos)})

	oversize := binary.BigEndian.AppendUint32(nil, wire.MaxFrame+1)
	oversize = append(oversize, badVersion[:2]...)

	cases := []struct {
		name       string
		raw        []byte
		closeWrite bool
		// want is the status the node must answer with, if it answers
		// before dropping the stream.
		want wire.Status
		// mustAnswer: the frame was well formed, so the stream stays
		// usable and the node must answer (and keep answering).
		mustAnswer bool
		wantMsg    string
	}{
		{name: "truncated frame", raw: append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...), closeWrite: true, want: wire.StatusBadRequest, wantMsg: "truncated"},
		{name: "random garbage", raw: garbage, closeWrite: true, want: wire.StatusBadRequest},
		{name: "garbage with small length", raw: smallGarbage, closeWrite: true, want: wire.StatusBadRequest},
		{name: "unknown wire version", raw: frame(badVersion), want: wire.StatusBadRequest, wantMsg: "version"},
		{name: "unknown op", raw: frame(unknownOp), want: wire.StatusBadRequest, mustAnswer: true, wantMsg: "unknown op"},
		{name: "frame over MaxFrame", raw: oversize, want: wire.StatusBadRequest, wantMsg: "exceeds"},
		{name: "zero-length frame", raw: frame(nil), want: wire.StatusBadRequest},
		{name: "put with a shard failing its checksum", raw: frame(corruptPut), want: wire.StatusCorrupt, mustAnswer: true, wantMsg: "checksum"},
		{name: "put for a position this node does not hold", raw: frame(foreignPut), want: wire.StatusBadRequest, mustAnswer: true, wantMsg: "does not belong"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openStream(t, ctx, h, c)
			resp, err := exchange(t, s, tc.raw, tc.closeWrite)
			if err != nil {
				if tc.mustAnswer {
					t.Fatalf("no answer to a well-framed request: %v", err)
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, network.ErrReset) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("stream ended with %v; want an error response, EOF or a reset", err)
				}
				t.Logf("stream dropped: %v", err)
				return
			}
			if resp.Status != tc.want {
				t.Fatalf("status %s (%q); want %s", resp.Status, resp.Message, tc.want)
			}
			if !strings.Contains(resp.Message, tc.wantMsg) {
				t.Errorf("message %q does not mention %q", resp.Message, tc.wantMsg)
			}
			t.Logf("answered %s: %s", resp.Status, resp.Message)
			if tc.mustAnswer {
				// Same stream, next request: framing was intact, so it
				// must still be served.
				status := frame(wire.AppendRequest(nil, &wire.Request{Op: wire.OpStatus}))
				resp, err := exchange(t, s, status, false)
				if err != nil || resp.Status != wire.StatusOK || resp.Op != wire.OpStatus {
					t.Fatalf("status request on the same stream after bad input: %+v, %v", resp, err)
				}
			}
		})
	}

	// The refused puts stored nothing.
	for _, key := range []string{foreignKey, keyOwnedAt(c, 0)} {
		s := openStream(t, ctx, h, c)
		resp, err := exchange(t, s, frame(wire.AppendRequest(nil, &wire.Request{Op: wire.OpGet, Key: key})), false)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != wire.StatusNotFound {
			t.Errorf("get %s from node 0 after a refused put: %s (%d bytes); want not found", key, resp.Status, len(resp.Payload))
		}
	}

	// The node still serves a front end.
	d := c.Client(nil)
	k := ds.NewKey("/bad/after")
	v := bytes.Repeat([]byte("still serving "), 20000)
	if err := d.Put(ctx, k, v); err != nil {
		t.Fatalf("put after bad input: %v", err)
	}
	got, err := d.Get(ctx, k)
	if err != nil || !bytes.Equal(got, v) {
		t.Fatalf("get after bad input: %d bytes, %v", len(got), err)
	}
	if c.Node(0) == nil {
		t.Fatal("node 0 stopped")
	}
	st, err := c.Node(0).Stat(ctx)
	if err != nil || st.Keys == 0 {
		t.Fatalf("node 0 stat after bad input: %+v, %v", st, err)
	}
}

func TestWrongSecretRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Nodes: 6})
	h := newHost(t, config.NewSecret())
	n := c.Node(0)
	h.Peerstore().AddAddrs(n.ID(), n.Addrs(), peerstore.PermanentAddrTTL)

	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	start := time.Now()
	if err := h.Connect(cctx, peer.AddrInfo{ID: n.ID(), Addrs: n.Addrs()}); err == nil {
		t.Fatal("a host with another secret connected to node 0")
	} else {
		t.Logf("connect refused after %v: %v", time.Since(start), err)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if s, err := h.NewStream(sctx, n.ID(), wire.ShardProtocol); err == nil {
		_ = s.Reset()
		t.Fatal("a host with another secret opened a stream to node 0")
	}
	if conns := h.Network().ConnsToPeer(n.ID()); len(conns) != 0 {
		t.Errorf("%d connections to node 0 from a host with another secret", len(conns))
	}

	// The right secret still works.
	good := newHost(t, c.Secret)
	s := openStream(t, ctx, good, c)
	resp, err := exchange(t, s, frame(wire.AppendRequest(nil, &wire.Request{Op: wire.OpStatus})), false)
	if err != nil || resp.Status != wire.StatusOK {
		t.Fatalf("status with the right secret: %+v, %v", resp, err)
	}
}

// TestMemberOnlyOps: a peer that has the secret but is not a member (a
// client) cannot list a node's shards, drop them, or ask another node to
// join; it gets an answer that says so.
func TestMemberOnlyOps(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	h := newHost(t, c.Secret)
	s := openStream(t, ctx, h, c)
	key := keyOwnedAt(c, 5)
	reqs := []*wire.Request{
		{Op: wire.OpInventory},
		{Op: wire.OpSlotInventory, Slot: placement.Slot(key)},
		{Op: wire.OpSums},
		{Op: wire.OpDrop, Drop: []wire.ShardRef{{Key: key, Pos: 5, Stale: true}}},
		{Op: wire.OpRepair, Repair: &wire.RepairOrder{Key: key, Pos: 5, Kind: uint8(coding.KindErasure), K: 4, M: 2, From: c.Node(1).ID().String()}},
		{Op: wire.OpMember, Body: []byte(`{"op":"join","member":{"id":"` + c.Node(1).ID().String() + `","addrs":["/ip4/127.0.0.1/tcp/1"]}}`)},
	}
	for _, req := range reqs {
		resp, err := exchange(t, s, frame(wire.AppendRequest(nil, req)), false)
		if err != nil {
			t.Fatalf("%s: %v", req.Op, err)
		}
		if resp.Status != wire.StatusUnauthorized || !strings.Contains(resp.Message, h.ID().String()) {
			t.Errorf("%s from a non-member: %s %q, want unauthorized naming the peer", req.Op, resp.Status, resp.Message)
		}
	}
}

// TestGetDuringOverwrite: a node reads a shard without its key's lock, so
// a read that overlaps an overwrite (or a delete) of the key can see the
// old index entry and the new shard. The node must look again rather than
// answer "corrupt" for data that is fine: that answer made the front end
// count the position as failed, and logged a corrupt shard.
func TestGetDuringOverwrite(t *testing.T) {
	for _, store := range []string{"flatfs", "volume"} {
		t.Run(store, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c := clustertest.Start(t, clustertest.Options{Store: store})
			key := keyOwnedAt(c, 0)
			cl := transport.NewClient(newHost(t, c.Secret), 20*time.Second)
			n0 := c.Node(0)
			cl.Host().Peerstore().AddAddrs(n0.ID(), n0.Addrs(), time.Hour)
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				for hlc := uint64(1000); ; hlc++ {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					v := coding.Version{HLC: hlc << 16, Writer: 1}
					var raw []byte
					if hlc%5 == 0 {
						raw = coding.Tombstone(key, coding.Erasure(4, 2), v)[0].AppendBinary(nil)
					} else {
						sh, err := coding.Encode(key, bytes.Repeat([]byte{byte(hlc)}, 64<<10), coding.Erasure(4, 2), v)
						if err != nil {
							done <- err
							return
						}
						raw = sh[0].AppendBinary(nil)
					}
					if r, err := cl.Do(ctx, n0.ID(), &wire.Request{Op: wire.OpPut, Shard: raw}); err != nil || r.Status != wire.StatusOK {
						done <- fmt.Errorf("put version %d: %v %+v", hlc, err, r)
						return
					}
					// As a writer does once its write is acknowledged.
					drop := &wire.Request{Op: wire.OpDropOlder, Drop: []wire.ShardRef{{Key: key, HLC: v.HLC, Writer: v.Writer}}}
					if r, err := cl.Do(ctx, n0.ID(), drop); err != nil || r.Status != wire.StatusOK {
						done <- fmt.Errorf("drop versions older than %d: %v %+v", hlc, err, r)
						return
					}
				}
			}()
			ok := 0
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
				r, err := cl.Do(ctx, n0.ID(), &wire.Request{Op: wire.OpGet, Key: key})
				if err != nil {
					t.Fatal(err)
				}
				switch r.Status {
				case wire.StatusOK:
					ok++
				case wire.StatusNotFound: // before the first put
				default:
					t.Fatalf("get during overwrites, after %d good reads: %s %q", ok, r.Status, r.Message)
				}
			}
			close(stop)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if ok == 0 {
				t.Fatal("no read found the key")
			}
		})
	}
}

// TestCorruptIndexEntryIsPurged: one index entry that no longer decodes
// (one bit of index.db flipped) used to make the node fail every listing,
// inventory, slot sum and scrub, and every put of that key, for good:
// nothing removed it. The node now purges it (and its shard) when a
// listing meets it, so repair can rebuild the key, and everything else
// goes on.
func TestCorruptIndexEntryIsPurged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Store: "flatfs"})
	cl := transport.NewClient(c.Node(1).Host(), 20*time.Second)
	do := func(req *wire.Request) *wire.Response {
		t.Helper()
		resp, err := cl.Do(ctx, c.Node(0).ID(), req)
		if err != nil {
			t.Fatalf("%s: %v", req.Op, err)
		}
		return resp
	}
	var keys []string
	for i := 0; len(keys) < 20; i++ {
		if k := fmt.Sprintf("/rot/%d", i); c.Owners(k)[0] == 0 {
			keys = append(keys, k)
			if r := do(&wire.Request{Op: wire.OpPut, Shard: encodeShard(t, k, 64<<10, 0)}); r.Status != wire.StatusOK {
				t.Fatal(r.Message)
			}
		}
	}
	c.Stop(0)
	db, err := bolt.Open(filepath.Join(c.Dirs[0], "index.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		v := bytes.Clone(b.Get([]byte(keys[3])))
		v[len(v)-10] ^= 1 // one bit of the version
		return b.Put([]byte(keys[3]), v)
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	c.Restart(0)
	cl = transport.NewClient(c.Node(1).Host(), 20*time.Second)

	r := do(&wire.Request{Op: wire.OpInventory})
	if r.Status != wire.StatusOK {
		t.Fatalf("inventory with a corrupt entry: %s %q", r.Status, r.Message)
	}
	es, _, err := wire.DecodeInventoryPayload(r.Payload)
	if err != nil || len(es) != len(keys)-1 {
		t.Fatalf("inventory: %d entries, %v; want the %d that decode", len(es), err, len(keys)-1)
	}
	for _, e := range es {
		if e.Key == keys[3] {
			t.Fatalf("inventory lists the corrupt entry %s", e.Key)
		}
	}
	if r := do(&wire.Request{Op: wire.OpSums}); r.Status != wire.StatusOK {
		t.Fatalf("sums after the purge: %s %q", r.Status, r.Message)
	}
	if st, err := c.Node(0).Scrub(ctx); err != nil || st.Scanned != len(keys)-1 || st.Corrupt != 0 {
		t.Fatalf("scrub after the purge: %+v, %v; want %d scanned, none bad", st, err, len(keys)-1)
	}
	if r := do(&wire.Request{Op: wire.OpGet, Key: keys[3]}); r.Status != wire.StatusNotFound {
		t.Fatalf("get of the purged key: %s %q, want not found (repair rebuilds it)", r.Status, r.Message)
	}
	if r := do(&wire.Request{Op: wire.OpPut, Shard: encodeShard(t, keys[3], 64<<10, 0)}); r.Status != wire.StatusOK {
		t.Fatalf("put of the purged key: %s %q", r.Status, r.Message)
	}
	if r := do(&wire.Request{Op: wire.OpGet, Key: keys[3]}); r.Status != wire.StatusOK {
		t.Fatalf("get after the put: %s %q", r.Status, r.Message)
	}
}

// stallingStore holds the next Put (once stall is set) until it is
// released, as a slow disk would: by the test, or by Close, which lets the
// held Put finish on the open store before closing it.
type stallingStore struct {
	ds.Batching
	stall   atomic.Bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	done    chan struct{} // closed when the held Put has returned
}

func (s *stallingStore) Put(ctx context.Context, k ds.Key, v []byte) error {
	if !s.stall.CompareAndSwap(true, false) {
		return s.Batching.Put(ctx, k, v)
	}
	defer close(s.done)
	close(s.entered)
	<-s.release
	return s.Batching.Put(ctx, k, v)
}

func (s *stallingStore) letGo() { s.once.Do(func() { close(s.release) }) }

func (s *stallingStore) Close() error {
	select {
	case <-s.entered:
		s.letGo()
		<-s.done
	default:
	}
	return s.Batching.Close()
}

// TestCloseWaitsForPuts: a node closing while a put is between its shard
// file and its index entry (flatfs) lets the put finish before it closes
// the index. It used to close the index first: the file held the new
// version, the index the old one, and after a restart the node answered
// "corrupt" for the key (scrub would then drop it).
func TestCloseWaitsForPuts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var st0 atomic.Pointer[stallingStore]
	c := clustertest.Start(t, clustertest.Options{OpenStore: wrapNode0(func(fs ds.Batching) ds.Datastore {
		s := &stallingStore{Batching: fs, entered: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
		st0.Store(s)
		return s
	})})
	key := keyOwnedAt(c, 0)
	cl := transport.NewClient(newHost(t, c.Secret), 20*time.Second)
	n0 := c.Node(0)
	cl.Host().Peerstore().AddAddrs(n0.ID(), n0.Addrs(), time.Hour)
	put := func(hlc uint64) (*wire.Response, error) {
		sh, err := coding.Encode(key, bytes.Repeat([]byte{byte(hlc)}, 64<<10), coding.Erasure(4, 2), coding.Version{HLC: hlc << 16, Writer: 1})
		if err != nil {
			t.Fatal(err)
		}
		return cl.Do(ctx, n0.ID(), &wire.Request{Op: wire.OpPut, Shard: sh[0].AppendBinary(nil)})
	}
	if r, err := put(1); err != nil || r.Status != wire.StatusOK {
		t.Fatalf("put v1: %v %+v", err, r)
	}
	s := st0.Load()
	s.stall.Store(true)
	go func() { _, _ = put(2) }()
	<-s.entered
	stopped := make(chan struct{})
	go func() {
		c.Stop(0)
		close(stopped)
	}()
	time.Sleep(200 * time.Millisecond) // Close runs up to the handlers
	s.letGo()
	<-stopped
	c.Restart(0)
	n0 = c.Node(0)
	cl.Host().Peerstore().AddAddrs(n0.ID(), n0.Addrs(), time.Hour)
	r, err := cl.Do(ctx, n0.ID(), &wire.Request{Op: wire.OpGet, Key: key})
	if err != nil || r.Status != wire.StatusOK {
		t.Fatalf("get after a close during a put: %v %s %q; want the shard", err, r.Status, r.Message)
	}
}

// TestVouchForRaftPeer: once client roles are enforced a node takes raft
// streams only from members. A node that was down while newer members
// joined asks the members it knows; it takes a peer one of them lists as
// a member, and no other.
func TestVouchForRaftPeer(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{FastRaft: true})
	if !c.Node(0).Vouch(c.Node(5).ID()) {
		t.Fatal("no member vouched for node 5, a member of their cluster")
	}
	h := newHost(t, c.Secret)
	if c.Node(0).Vouch(h.ID()) {
		t.Fatalf("a member vouched for %s, which no cluster lists", h.ID())
	}
	// Without roles anyone with the secret speaks raft; with roles only
	// members, and the stranger stays refused after the members are asked.
	if !c.Node(0).MayRaft(h.ID()) {
		t.Fatal("raft refused a peer while roles are not enforced")
	}
	d := c.Client(nil)
	grant := membership.Command{Op: membership.OpGrant, ID: d.ID().String(), Role: config.RoleReadWrite}
	deadline := time.Now().Add(20 * time.Second)
	for len(c.Node(0).Cluster().Clients) == 0 {
		if err := d.Member(context.Background(), grant); err != nil && time.Now().After(deadline) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("node 0 never applied the grant")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !c.Node(0).MayRaft(c.Node(3).ID()) {
		t.Fatal("raft refused a member")
	}
	for range 3 {
		if c.Node(0).MayRaft(h.ID()) || c.Node(0).MayRaft(d.ID()) {
			t.Fatal("raft took a peer that is not a member once roles are enforced")
		}
		time.Sleep(time.Second)
	}
}

// wrapNode0 is a clustertest.Options.OpenStore that gives every node a
// flatfs shard store, node 0's wrapped by wrap (fault injection).
func wrapNode0(wrap func(fs ds.Batching) ds.Datastore) func(i int, dir string) (ds.Datastore, error) {
	return func(i int, dir string) (ds.Datastore, error) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		fs, err := flatfs.CreateOrOpen(filepath.Join(dir, "shards"), flatfs.NextToLast(2), false)
		if err != nil || i != 0 {
			return fs, err
		}
		return wrap(fs), nil
	}
}

// failingDeletes fails the Delete of every key it holds while fail is
// set, as a store with a bad directory or a full journal would.
type failingDeletes struct {
	ds.Batching
	fail atomic.Bool
}

func (s *failingDeletes) Delete(ctx context.Context, k ds.Key) error {
	if has, _ := s.Batching.Has(ctx, k); has && s.fail.Load() {
		return errors.New("injected delete failure")
	}
	return s.Batching.Delete(ctx, k)
}

// TestFailedShardDeleteLosesNothing: on flatfs a drop of the versions an
// acknowledged delete's tombstone kept commits the index, then deletes
// their shard files. When the file delete
// fails (a bad directory, a full journal) the tombstone stands: the key
// reads as deleted, the file stays as dead space that no entry names, and
// other keys are untouched. The next scrub deletes that file, and only it.
func TestFailedShardDeleteLosesNothing(t *testing.T) {
	ctx := context.Background()
	var st0 atomic.Pointer[failingDeletes]
	c := clustertest.Start(t, clustertest.Options{OpenStore: wrapNode0(func(fs ds.Batching) ds.Datastore {
		s := &failingDeletes{Batching: fs}
		st0.Store(s)
		return s
	})})
	gone, kept := keyOwnedAt(c, 0), keyOwnedAt(c, 0)+"-kept"
	d := c.Client(nil)
	for _, k := range []string{gone, kept} {
		if err := d.Put(ctx, ds.NewKey(k), bytes.Repeat([]byte("v"), 300<<10)); err != nil {
			t.Fatal(err)
		}
	}
	dead, err := c.ShardFile(0, ds.NewKey(gone).String())
	if err != nil {
		t.Fatal(err)
	}
	live, err := c.ShardFile(0, ds.NewKey(kept).String())
	if err != nil {
		t.Fatal(err)
	}
	st0.Load().fail.Store(true)
	if err := d.Delete(ctx, ds.NewKey(gone)); err != nil {
		t.Fatal(err)
	}
	// The tombstone keeps the value's shard until the front end, the
	// delete acknowledged, has it dropped.
	eventually(t, 10*time.Second, "node 0 drops the deleted value's shard", func() error {
		if _, err := c.Node(0).PrevShard(ds.NewKey(gone).String()); !errors.Is(err, ds.ErrNotFound) {
			return fmt.Errorf("node 0 keeps it under the tombstone: %v", err)
		}
		return nil
	})
	st0.Load().fail.Store(false)
	if _, err := os.Stat(dead); err != nil {
		t.Fatalf("the shard file the failed delete left: %v", err)
	}
	if st, err := c.Node(0).Scrub(ctx); err != nil || st.Corrupt != 0 || st.Reclaimed != 1 {
		t.Fatalf("scrub: %+v, %v; want nothing corrupt, one shard reclaimed", st, err)
	}
	for f, want := range map[string]bool{dead: false, live: true} {
		if _, err := os.Stat(f); (err == nil) != want {
			t.Fatalf("after scrub, %s: %v; want it there %v", f, err, want)
		}
	}
	if st, err := c.Node(0).Scrub(ctx); err != nil || st.Corrupt != 0 || st.Reclaimed != 0 {
		t.Fatalf("second scrub: %+v, %v; want nothing to do", st, err)
	}
	if got, err := d.Get(ctx, ds.NewKey(kept)); err != nil || len(got) != 300<<10 {
		t.Fatalf("the other key: %d bytes, %v", len(got), err)
	}
	if _, err := d.Get(ctx, ds.NewKey(gone)); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("the deleted key: %v, want ds.ErrNotFound", err)
	}
}

// batchPut puts val under key in a batch of its own, as kubo writes.
func batchPut(t *testing.T, d *dscluster.Datastore, key string, val []byte) {
	t.Helper()
	if err := batchCommit(context.Background(), d, key, val); err != nil {
		t.Fatal(err)
	}
}

// batchCommit writes val under key through a batch of one, as kubo writes.
func batchCommit(ctx context.Context, d *dscluster.Datastore, key string, val []byte) error {
	b, err := d.Batch(ctx)
	if err != nil {
		return err
	}
	if err := b.Put(ctx, ds.NewKey(key), val); err != nil {
		return err
	}
	return b.Commit(ctx)
}

// waitPrevGone waits up to 10 s for n to hold no previous shard of key
// (the writer drops it in the background).
func waitPrevGone(t *testing.T, n *node.Node, key, what string) {
	t.Helper()
	eventually(t, 10*time.Second, "previous shard "+what+", want none", func() error {
		_, err := n.PrevShard(key)
		switch {
		case errors.Is(err, ds.ErrNotFound):
			return nil
		case err == nil:
			return errors.New("still kept")
		}
		return err
	})
}

// eventually calls check every 20 ms until it returns nil, and fails the
// test with what and check's last error if that takes longer than within.
func eventually(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPrevShardKeptUntilAcknowledged: an overwrite keeps the value it
// replaces as the key's previous shard, and the writer has it dropped once
// the overwrite is acknowledged; a failed overwrite leaves it, and a delete
// leaves none, so a value older than a delete can never come back.
func TestPrevShardKeptUntilAcknowledged(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	key := keyOwnedAt(c, 0)
	o := c.Owners(key)
	prevGone := func(what string) {
		t.Helper()
		waitPrevGone(t, c.Node(0), key, what)
	}
	for _, size := range []int{300 << 10, 200 << 10} {
		if err := d.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("v"), size)); err != nil {
			t.Fatal(err)
		}
	}
	prevGone("after an acknowledged overwrite")
	// The same through a batch, as kubo writes.
	batchPut(t, d, key, bytes.Repeat([]byte("b"), 200<<10))
	prevGone("after an acknowledged overwrite in a batch")
	// Positions 3-5 down: the overwrite reaches 3 positions and fails.
	part := c.Client(&dscluster.Options{Down: []int{o[3], o[4], o[5]}})
	if err := part.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("w"), 100<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("overwrite reaching 3 positions: %v, want a quorum error", err)
	}
	raw, err := c.Node(0).PrevShard(key)
	if err != nil {
		t.Fatalf("previous shard after a failed overwrite: %v", err)
	}
	sh, err := coding.ParseShard(raw)
	if err != nil || sh.Header.Key != key || sh.Header.ValueLen != 200<<10 || sh.Header.Index != 0 {
		t.Fatalf("previous shard: %+v, %v; want shard 0 of the 200 KiB value", sh.Header, err)
	}
	if err := d.Delete(ctx, ds.NewKey(key)); err != nil {
		t.Fatal(err)
	}
	prevGone("after a delete")
}

// TestPrevShardsDoNotBringBackOlderValue: v2 was acknowledged on positions
// 0-4 but its writer died before dropping the previous shards (v1's), and
// positions 2 and 3 then lost their v2 shards to scrub (and their previous
// ones with them: put back, they would claim those positions never held
// v2). v1 has 4 shards left (1 current, 3 previous), v2 only 3: the read
// must say unavailable, never serve v1, because v2 may have reached its
// quorum (only position 5 provably never held it).
func TestPrevShardsDoNotBringBackOlderValue(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	key := keyOwnedAt(c, 0)
	o := c.Owners(key)
	if err := d.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("1"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	v1 := make([][]byte, 5)
	for pos := range v1 {
		raw, err := c.Node(o[pos]).CurrentShard(key)
		if err != nil {
			t.Fatal(err)
		}
		v1[pos] = raw
	}
	if err := c.Client(&dscluster.Options{Down: []int{o[5]}}).Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("2"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the writer's drops land first
	for pos := range v1 {
		if err := c.Node(o[pos]).SetPrevShard(key, v1[pos]); err != nil {
			t.Fatal(err)
		}
	}
	for _, pos := range []int{2, 3} {
		if err := c.CorruptShard(o[pos], key); err != nil {
			t.Fatal(err)
		}
		if st, err := c.Node(o[pos]).Scrub(ctx); err != nil || st.Corrupt != 1 {
			t.Fatalf("scrub of position %d: %+v, %v", pos, st, err)
		}
	}
	if got, err := d.Get(ctx, ds.NewKey(key)); !errors.Is(err, dscluster.ErrUnavailable) {
		t.Fatalf("get: %d bytes (%q...), %v; want unavailable, never v1", len(got), got[:min(4, len(got))], err)
	}
	if has, err := d.Has(ctx, ds.NewKey(key)); has || !errors.Is(err, dscluster.ErrUnavailable) {
		t.Fatalf("has: %v, %v; want unavailable", has, err)
	}
}

// TestRepairDropsOlderVersions: a node that missed the writer's "drop
// older" (the writer crashed after its write was acknowledged) keeps the
// value the write replaced beside it; its slot's sums say so, and
// repair's next pass has the older version dropped, the key being whole.
func TestRepairDropsOlderVersions(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{FastRaft: true, HeartbeatInterval: 100 * time.Millisecond, RepairInterval: 200 * time.Millisecond})
	d := c.Client(nil)
	key := keyOwnedAt(c, 0)
	o := c.Owners(key)
	if err := d.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("1"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	v1, err := c.Node(o[0]).CurrentShard(key)
	if err != nil {
		t.Fatal(err)
	}
	v2 := bytes.Repeat([]byte("2"), 300<<10)
	if err := d.Put(ctx, ds.NewKey(key), v2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the writer's drop of v1", func() error {
		if _, err := c.Node(o[0]).PrevShard(key); !errors.Is(err, ds.ErrNotFound) {
			return fmt.Errorf("older shard: %v", err)
		}
		return nil
	})
	if err := c.Node(o[0]).SetPrevShard(key, v1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(o[0]).PrevShard(key); err != nil {
		t.Fatalf("the planted older shard: %v", err)
	}
	eventually(t, 10*time.Second, "repair's drop of the older version", func() error {
		if _, err := c.Node(o[0]).PrevShard(key); !errors.Is(err, ds.ErrNotFound) {
			return fmt.Errorf("older shard: %v", err)
		}
		return nil
	})
	if got, err := d.Get(ctx, ds.NewKey(key)); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get after the drop: %d bytes, %v; want v2", len(got), err)
	}
}

// TestRepairCopyKeepsNoPrevShard: a member's copy (repair, a forward)
// carries a readable version, so the node keeps no previous shard for it:
// nobody would drop it.
func TestRepairCopyKeepsNoPrevShard(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{FastRaft: true, HeartbeatInterval: 100 * time.Millisecond, RepairInterval: 200 * time.Millisecond})
	d := c.Client(nil)
	key := keyOwnedAt(c, 0)
	if err := d.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("1"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	if err := c.Client(&dscluster.Options{Down: []int{0}}).Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("2"), 200<<10)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		raw, err := c.Node(0).CurrentShard(key)
		if err == nil {
			if sh, err := coding.ParseShard(raw); err == nil && sh.Header.ValueLen == 200<<10 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("repair did not copy v2 to node 0")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.Node(0).PrevShard(key); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("previous shard after a repair copy: %v, want none", err)
	}
}

// TestRepairOrder: a node told to rebuild one of its shards (OpRepair, as
// the repair leader sends it) reads the other shards itself and stores the
// right bytes, so that repair data does not go through the leader.
// (TestMemberOnlyOps: only members may send one.)
func TestRepairOrder(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	const pos = 2
	key := keyOwnedAt(c, pos)
	val := make([]byte, 300<<10)
	r := rand.New(rand.NewPCG(5, 5))
	for i := range val {
		val[i] = byte(r.Uint32())
	}
	if err := c.Client(&dscluster.Options{Down: []int{0}}).Put(ctx, ds.NewKey(key), val); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(0).CurrentShard(key); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("node 0 was down for the put, yet its shard: %v", err)
	}
	owners := c.Owners(key)
	sender := owners[0]
	raw, err := c.Node(sender).CurrentShard(key)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := coding.ParseShard(raw)
	if err != nil {
		t.Fatal(err)
	}
	a := repair.Action{Kind: repair.Rebuild, Key: key, Pos: pos, Policy: sh.Header.Policy, Version: sh.Header.Version,
		To: c.Node(0).ID().String()}
	for p, o := range owners {
		if p != pos {
			a.Sources = append(a.Sources, repair.Source{Node: c.Node(o).ID().String(), Pos: p})
		}
	}
	if err := c.Node(sender).DelegateRepair(ctx, a); err != nil {
		t.Fatalf("repair order: %v", err)
	}
	want, err := coding.Encode(key, val, sh.Header.Policy, sh.Header.Version)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Node(0).CurrentShard(key)
	if err != nil || !bytes.Equal(got, want[pos].AppendBinary(nil)) {
		t.Fatalf("node 0's shard after the order: %d bytes, %v; want the %d bytes of shard %d", len(got), err, len(want[pos].AppendBinary(nil)), pos)
	}
}

// TestRoleCommandsNeedEveryMember: a node of a version without client
// roles rejects role commands as unknown, so its replica of the cluster
// description would part from the others'. The leader proposes a grant
// only when every member reports the feature; a member that does not
// answer, whose version is unknown, holds it back too. Each refusal names
// the member.
func TestRoleCommandsNeedEveryMember(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{FastRaft: true})
	d := c.Client(nil)
	grant := func() error {
		return d.Member(ctx, membership.Command{Op: membership.OpGrant, ID: d.ID().String(), Role: config.RoleReadWrite})
	}
	// Node x answers status as a node of an older version does, and
	// everything else as itself.
	for i := 0; i < 200 && c.Leader() < 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if c.Leader() < 0 {
		t.Fatal("no raft leader")
	}
	x := (c.Leader() + 1) % c.Len()
	xn := c.Node(x)
	xn.Host().SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		defer s.Close() // one answer per stream: none stays pooled after the upgrade
		f, err := wire.ReadFrame(s, nil)
		if err != nil || wire.Op(f[1]) != wire.OpStatus {
			_ = s.Reset()
			return
		}
		old := fmt.Sprintf(`{"peer":%q,"state":"up"}`, xn.ID())
		_, _ = wire.WriteResponse(s, nil, &wire.Response{Op: wire.OpStatus, Status: wire.StatusOK, Payload: []byte(old)})
	})
	err := grant()
	for i := 0; i < 100 && err != nil && strings.Contains(err.Error(), "retry"); i++ {
		time.Sleep(100 * time.Millisecond) // the raft group is starting
		err = grant()
	}
	if err == nil || !strings.Contains(err.Error(), xn.ID().String()) || !strings.Contains(err.Error(), "without "+node.FeatureRoles) {
		t.Fatalf("grant with node %d of an older version: %v; want a refusal naming it", x, err)
	}
	for i := 0; i < c.Len(); i++ {
		if n := c.Node(i).Cluster().Clients; len(n) != 0 {
			t.Fatalf("node %d applies %d roles after the refused grant", i, len(n))
		}
	}

	// Upgraded: the grant goes through.
	xn.Host().SetStreamHandler(wire.ShardProtocol, xn.HandleStream)
	if err := grant(); err != nil {
		t.Fatalf("grant with every member upgraded: %v", err)
	}

	// A member that does not answer holds grants back too (it may be of
	// any version), but not a revoke, which may be urgent.
	reader := newHost(t, c.Secret).ID().String()
	if err := d.Member(ctx, membership.Command{Op: membership.OpGrant, ID: reader, Role: config.RoleReadOnly}); err != nil {
		t.Fatal(err)
	}
	y := (c.Leader() + 2) % c.Len()
	yid := c.Node(y).ID().String()
	c.Stop(y)
	err = d.Member(ctx, membership.Command{Op: membership.OpGrant, ID: newHost(t, c.Secret).ID().String(), Role: config.RoleReadOnly})
	if err == nil || !strings.Contains(err.Error(), yid) || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("grant with node %d stopped: %v; want a refusal naming it", y, err)
	}
	if err := d.Member(ctx, membership.Command{Op: membership.OpRevoke, ID: reader}); err != nil {
		t.Fatalf("revoke with node %d stopped: %v", y, err)
	}
	// The leader's description follows the raft log a moment later.
	eventually(t, 5*time.Second, "the revoked client", func() error {
		if _, ok := c.Node(c.Leader()).Cluster().ClientRole(reader); ok {
			return errors.New("it still has a role")
		}
		return nil
	})
}

// TestDropRestoresPrevShard: repair rolls a failed overwrite back with a
// drop that restores: the node puts back the shard of the value the write
// replaced (its previous shard) as its current one. With no previous shard
// the drop just removes the failed write's shard; a drop of another
// version keeps everything.
func TestDropRestoresPrevShard(t *testing.T) {
	for _, store := range []string{"flatfs", "volume"} {
		t.Run(store, func(t *testing.T) { testDropRestoresPrevShard(t, store) })
	}
}

func testDropRestoresPrevShard(t *testing.T, store string) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour, Store: store})
	d := c.Client(nil)
	key := keyOwnedAt(c, 0)
	o := c.Owners(key)
	if err := d.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("1"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	v1, err := c.Node(0).CurrentShard(key)
	if err != nil {
		t.Fatal(err)
	}
	part := c.Client(&dscluster.Options{Down: []int{o[1], o[2], o[3], o[4], o[5]}})
	if err := part.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("2"), 200<<10)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("overwrite reaching position 0 only: %v, want a quorum error", err)
	}
	raw, err := c.Node(0).CurrentShard(key)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := coding.ParseShard(raw)
	if err != nil {
		t.Fatal(err)
	}
	v2 := sh.Header.Version
	if prev, err := c.Node(0).PrevShard(key); err != nil || !bytes.Equal(prev, v1) {
		t.Fatalf("previous shard after the failed overwrite: %d bytes, %v; want v1's", len(prev), err)
	}
	drop := func(v coding.Version) (wire.Status, string) {
		return c.Node(0).Drop(ctx, wire.ShardRef{Key: key, Pos: 0, HLC: v.HLC, Writer: v.Writer, Stale: true, Restore: true})
	}
	if st, msg := drop(coding.Version{HLC: v2.HLC + 1, Writer: v2.Writer}); st != wire.StatusOK || !strings.HasPrefix(msg, "kept") {
		t.Fatalf("restoring drop of another version: %s %q, want kept", st, msg)
	}
	if st, msg := drop(v2); st != wire.StatusOK || msg != "" {
		t.Fatalf("restoring drop of the failed write: %s %q", st, msg)
	}
	if cur, err := c.Node(0).CurrentShard(key); err != nil || !bytes.Equal(cur, v1) {
		t.Fatalf("current shard after the restoring drop: %d bytes, %v; want v1's", len(cur), err)
	}
	if _, err := c.Node(0).PrevShard(key); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("previous shard after it was restored: %v, want none", err)
	}
	// The index follows: v1 reads from current shards alone.
	if got, err := d.Get(ctx, ds.NewKey(key)); err != nil || !bytes.Equal(got, bytes.Repeat([]byte("1"), 300<<10)) {
		t.Fatalf("get after the roll-back: %d bytes, %v", len(got), err)
	}
	sh, err = coding.ParseShard(v1)
	if err != nil {
		t.Fatal(err)
	}
	if st, msg := drop(sh.Header.Version); st != wire.StatusOK || msg != "" {
		t.Fatalf("restoring drop with no previous shard: %s %q", st, msg)
	}
	if _, err := c.Node(0).CurrentShard(key); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("current shard after a restoring drop with nothing to restore: %v, want none", err)
	}
}

// lateStream writes every answer delay late, and records when it last
// wrote the start of a batch put's answer.
type lateStream struct {
	network.Stream
	delay time.Duration
	wrote *atomic.Int64 // UnixNano
}

func (s lateStream) Write(p []byte) (int, error) {
	time.Sleep(s.delay)
	n, err := s.Stream.Write(p)
	// A frame: 4 bytes of length, the wire version, the op.
	if len(p) > 5 && wire.Op(p[5]) == wire.OpBatchPut|wire.RespFlag {
		s.wrote.Store(time.Now().UnixNano())
	}
	return n, err
}

// TestLateBatchAnswerDropsPrevShard: a batch commit returns once every
// value has its quorum (and the hedge has passed), without the node that
// answers late. That node kept the overwritten value's shard; its late
// answer says so, and the front end has it dropped then, as it does for
// the answers it waited for.
func TestLateBatchAnswerDropsPrevShard(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	key := keyOwnedAt(c, 0)
	if err := c.Client(nil).Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("1"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	var wrote atomic.Int64
	n0 := c.Node(0)
	n0.Host().SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		n0.HandleStream(lateStream{Stream: s, delay: time.Second, wrote: &wrote})
	})
	d := c.Client(&dscluster.Options{HedgeAfter: 100 * time.Millisecond})
	batchPut(t, d, key, bytes.Repeat([]byte("2"), 200<<10))
	committed := time.Now().UnixNano()
	waitPrevGone(t, n0, key, "after node 0's late answer")
	if w := wrote.Load(); w == 0 || w < committed {
		t.Fatalf("node 0 answered the batch before the commit returned (answer %d, commit %d): the test did not make it late", w, committed)
	}
}

// slowReadStream, once armed, holds the start of the next put or batch
// put request it reads for delay before the node sees it.
type slowReadStream struct {
	network.Stream
	delay time.Duration
	armed *atomic.Bool
}

func (s slowReadStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	// A frame body starts with the wire version and the op.
	if n >= 2 && p[0] == wire.Version && (wire.Op(p[1]) == wire.OpPut || wire.Op(p[1]) == wire.OpBatchPut) &&
		s.armed.CompareAndSwap(true, false) {
		time.Sleep(s.delay)
	}
	return n, err
}

// TestShardInFlightOutlivesCallerCancel: a put returns with its quorum
// while a slow node has not taken its shard yet, and the caller then
// cancels its context, as callers do once a call returns. The shard must
// still land there: the requests a write leaves in flight no longer die
// with the caller's context (they did, and only repair restored the
// shard, a pass later).
func TestShardInFlightOutlivesCallerCancel(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	key := keyOwnedAt(c, 0)
	n0 := c.Node(0)
	var armed atomic.Bool
	n0.Host().SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		n0.HandleStream(slowReadStream{Stream: s, delay: time.Second, armed: &armed})
	})
	d := c.Client(&dscluster.Options{HedgeAfter: 100 * time.Millisecond})
	for i, put := range []func(ctx context.Context, val []byte) error{
		func(ctx context.Context, val []byte) error { return d.Put(ctx, ds.NewKey(key), val) },
		func(ctx context.Context, val []byte) error { return batchCommit(ctx, d, key, val) },
	} {
		val := bytes.Repeat([]byte{byte('a' + i)}, 200<<10+i)
		ctx, cancel := context.WithCancel(context.Background())
		armed.Store(true)
		err := put(ctx, val)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if raw, err := n0.CurrentShard(key); err == nil {
			if sh, err := coding.ParseShard(raw); err == nil && sh.Header.ValueLen == uint64(len(val)) {
				t.Fatalf("write %d: node 0 took its shard before the write returned: the test did not make it late", i)
			}
		}
		eventually(t, 10*time.Second, fmt.Sprintf("write %d: node 0's shard after the caller cancelled, want the value's", i), func() error {
			raw, err := n0.CurrentShard(key)
			if err != nil {
				return err
			}
			sh, err := coding.ParseShard(raw)
			if err == nil && sh.Header.ValueLen != uint64(len(val)) {
				err = fmt.Errorf("a shard of a %d-byte value", sh.Header.ValueLen)
			}
			return err
		})
	}
}

// TestFailedOverwritesKeepOlderVersions: a failed write needs no undo. A
// node that took a write's shard keeps the versions it replaced, newest
// first, and the next acknowledged write has them all dropped. Past its
// bound (node.MaxOlder) it refuses the key's next writer's put instead of dropping the
// acknowledged value (repair's copy of the newest readable version, a
// member's put, clears it).
func TestFailedOverwritesKeepOlderVersions(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	const key = "/failed/overwrites"
	o := c.Owners(key)
	n := c.Node(o[0])
	versionOf := func(raw []byte, err error) coding.Version {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		sh, err := coding.ParseShard(raw)
		if err != nil {
			t.Fatal(err)
		}
		return sh.Header.Version
	}
	olderKept := func() int {
		t.Helper()
		entries, err := n.IndexEntries()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Key == key {
				return len(e.Older)
			}
		}
		return 0
	}
	// Writes that reach position 0 only, one after another, over acked.
	part := c.Client(&dscluster.Options{Down: o[1:]})
	failInARow := func(acked []byte, writes int) (failed []coding.Version) {
		t.Helper()
		if err := d.Put(ctx, ds.NewKey(key), acked); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "the acknowledged write's drops", func() error {
			if got := olderKept(); got != 0 {
				return fmt.Errorf("%d older versions kept", got)
			}
			return nil
		})
		v := versionOf(n.CurrentShard(key))
		for i := range writes {
			if err := part.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte{byte('a' + i)}, (200-5*i)<<10)); !errors.Is(err, dscluster.ErrQuorum) {
				t.Fatalf("put reaching position 0 only: %v, want a quorum error", err)
			}
			// The version the write replaced is the newest older one.
			if got := versionOf(n.PrevShard(key)); got != v {
				t.Fatalf("after failed write %d: the newest older version is %s, want %s", i+1, got, v)
			}
			v = versionOf(n.CurrentShard(key))
			failed = append(failed, v)
		}
		if got := olderKept(); got != writes {
			t.Fatalf("the node keeps %d older versions, want %d (the failed writes but the last, and the acknowledged value)", got, writes)
		}
		// Every position answers: the failed writes are too scarce to
		// read, and the acknowledged value is served.
		if got, err := d.Get(ctx, ds.NewKey(key)); err != nil || !bytes.Equal(got, acked) {
			t.Fatalf("get after %d failed overwrites: %d bytes, %v; want the acknowledged value", writes, len(got), err)
		}
		return failed
	}
	// Two failed writes; the next acknowledged one has them dropped (at
	// the start of the next round).
	failInARow(bytes.Repeat([]byte("1"), 300<<10), 2)
	// As many as the node keeps: it is at its bound, and refuses the key's
	// next writer's put rather than drop the one acknowledged value.
	v2 := bytes.Repeat([]byte("2"), 300<<10)
	failed := failInARow(v2, node.MaxOlder)
	err := part.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("x"), 30<<10))
	if !errors.Is(err, dscluster.ErrQuorum) || !strings.Contains(err.Error(), "older versions of the key") {
		t.Fatalf("a fifth failed overwrite: %v, want a quorum error naming the node's refusal", err)
	}
	if got := versionOf(n.CurrentShard(key)); got != failed[len(failed)-1] || olderKept() != node.MaxOlder {
		t.Fatalf("after the refused put: newest %s, %d older; want %s and %d", got, olderKept(), failed[len(failed)-1], node.MaxOlder)
	}
	if got, err := d.Get(ctx, ds.NewKey(key)); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("get after the refused put: %d bytes, %v; want v2", len(got), err)
	}
}

// TestJoinNeedsRoles: once a cluster enforces client roles, a node of a
// version without them must not join, even admitted: it would fail to
// apply the role commands in the raft log and enforce none. The leader
// asks the joining node's status and refuses it, naming what is missing.
func TestJoinNeedsRoles(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{FastRaft: true})
	d := c.Client(nil)
	member := func(cmd membership.Command) error { return memberRetrying(ctx, d, cmd) }
	if err := member(membership.Command{Op: membership.OpGrant, ID: d.ID().String(), Role: config.RoleReadWrite}); err != nil {
		t.Fatal(err)
	}
	// A node of an older version: it answers status without features.
	psk, err := config.ParseSecret(c.Secret)
	if err != nil {
		t.Fatal(err)
	}
	old, err := transport.NewHost(transport.HostConfig{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Secret: psk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Close() })
	asked := make(chan struct{}, 1)
	old.SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		defer s.Close()
		f, err := wire.ReadFrame(s, nil)
		if err != nil || wire.Op(f[1]) != wire.OpStatus {
			_ = s.Reset()
			return
		}
		select {
		case asked <- struct{}{}:
		default:
		}
		st := fmt.Sprintf(`{"peer":%q,"state":"up"}`, old.ID())
		_, _ = wire.WriteResponse(s, nil, &wire.Response{Op: wire.OpStatus, Status: wire.StatusOK, Payload: []byte(st)})
	})
	var addrs []string
	for _, a := range old.Addrs() {
		addrs = append(addrs, a.String())
	}
	body, err := json.Marshal(membership.Command{Op: membership.OpJoin, Member: &config.Member{Node: placement.Node{ID: old.ID().String(), Addrs: addrs}}})
	if err != nil {
		t.Fatal(err)
	}
	// Through a node that is not the leader, as a joiner's bootstrapper
	// often is: the leader has never seen the joiner's addresses.
	via := (c.Leader() + 1) % c.Len()
	old.Peerstore().AddAddrs(c.Node(via).ID(), c.Node(via).Addrs(), peerstore.PermanentAddrTTL)
	join := func() *wire.Response {
		t.Helper()
		resp, err := transport.NewClient(old, 20*time.Second).Do(ctx, c.Node(via).ID(), &wire.Request{Op: wire.OpMember, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	joinAnswered := func() *wire.Response {
		t.Helper()
		resp := join()
		// As node.Join does, while the node knows no leader (an election).
		for i := 0; i < 100 && resp.Status == wire.StatusUnavailable; i++ {
			time.Sleep(100 * time.Millisecond)
			resp = join()
		}
		return resp
	}
	// Not admitted: refused by the leader, which does not dial
	// what a stranger announces.
	if resp := joinAnswered(); resp.Status != wire.StatusBadRequest || !strings.Contains(resp.Message, "not admitted") {
		t.Fatalf("join of a node not admitted: %s %q", resp.Status, resp.Message)
	}
	select {
	case <-asked:
		t.Fatal("the leader asked the status of a node that is not admitted")
	default:
	}
	if err := member(membership.Command{Op: membership.OpAdmit, ID: old.ID().String()}); err != nil {
		t.Fatal(err)
	}
	resp := joinAnswered()
	if resp.Status != wire.StatusBadRequest || !strings.Contains(resp.Message, "without "+node.FeatureRoles) {
		t.Fatalf("join of an admitted node of an older version: %s %q; want a refusal naming %s", resp.Status, resp.Message, node.FeatureRoles)
	}
	select {
	case <-asked:
	default:
		t.Fatal("the leader refused the join without asking the node's status")
	}
	for i := 0; i < c.Len(); i++ {
		if _, ok := c.Node(i).Cluster().Member(old.ID().String()); ok {
			t.Fatalf("node %d lists the refused node as a member", i)
		}
	}
	// A node that refuses the leader's status for want of a role (its
	// description predates the leader) applies roles: it is let through.
	old.SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		defer s.Close()
		if _, err := wire.ReadFrame(s, nil); err != nil {
			_ = s.Reset()
			return
		}
		_, _ = wire.WriteResponse(s, nil, &wire.Response{Op: wire.OpStatus, Status: wire.StatusUnauthorized, Message: "status: peer has no role"})
	})
	leader := c.Node(c.Leader())
	leader.Host().Peerstore().AddAddrs(old.ID(), old.Addrs(), peerstore.TempAddrTTL)
	if fs, err := leader.FeaturesOf(ctx, old.ID().String()); err != nil || !slices.Contains(fs, node.FeatureRoles) {
		t.Fatalf("features of a node that refuses for want of a role: %v, %v; want %s", fs, err, node.FeatureRoles)
	}
}

// TestRetriedPutReportsPrevKept: a writer whose put's answer was lost
// sends it again, and the node answers for the version it already holds.
// That answer must still say the node kept the replaced value's shard, or
// the writer never has it dropped (after an acknowledged write) or put
// back (after a failed one).
func TestRetriedPutReportsPrevKept(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	key := keyOwnedAt(c, 0)
	cl := transport.NewClient(newHost(t, c.Secret), 20*time.Second)
	n0 := c.Node(0)
	cl.Host().Peerstore().AddAddrs(n0.ID(), n0.Addrs(), time.Hour)
	put := func(v coding.Version) wire.BatchResult {
		t.Helper()
		sh, err := coding.Encode(key, bytes.Repeat([]byte{byte(v.HLC)}, 64<<10), coding.Erasure(4, 2), v)
		if err != nil {
			t.Fatal(err)
		}
		r, err := cl.Do(ctx, n0.ID(), &wire.Request{Op: wire.OpBatchPut, Shards: [][]byte{sh[0].AppendBinary(nil)}})
		if err != nil || r.Status != wire.StatusOK {
			t.Fatalf("put version %v: %+v, %v", v, r, err)
		}
		rs, err := wire.DecodeBatchPayload(r.Payload)
		if err != nil || len(rs) != 1 || rs[0].Status != wire.StatusOK {
			t.Fatalf("put version %v: %+v, %v", v, rs, err)
		}
		return rs[0]
	}
	v1, v2 := coding.Version{HLC: 1 << 20, Writer: 1}, coding.Version{HLC: 2 << 20, Writer: 1}
	stored, kept := wire.BatchResult{}, wire.BatchResult{Kept: true}
	heldV2 := wire.BatchResult{HeldHLC: v2.HLC, HeldWriter: v2.Writer}
	if r := put(v1); r != stored {
		t.Fatalf("first put: %+v, want %+v", r, stored)
	}
	if r := put(v2); r != kept {
		t.Fatalf("overwrite: %+v, want %+v", r, kept)
	}
	if r := put(v2); r != (wire.BatchResult{Kept: true, HeldHLC: v2.HLC, HeldWriter: v2.Writer}) {
		t.Fatalf("the overwrite again: %+v, want it held and kept", r)
	}
	if r, err := cl.Do(ctx, n0.ID(), &wire.Request{Op: wire.OpDropOlder, Drop: []wire.ShardRef{{Key: key, HLC: v2.HLC, Writer: v2.Writer}}}); err != nil || r.Status != wire.StatusOK {
		t.Fatalf("drop the previous shard: %+v, %v", r, err)
	}
	if _, err := n0.PrevShard(key); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("previous shard after the drop: %v, want none", err)
	}
	if r := put(v2); r != heldV2 {
		t.Fatalf("the overwrite again once its previous shard is dropped: %+v, want %+v", r, heldV2)
	}
	if r := put(v1); r != heldV2 {
		t.Fatalf("an older version: %+v, want %+v", r, heldV2)
	}
}

// interceptPuts has node x answer the puts of key's shard (alone, or as a
// batch of that one shard) with answer(nth, version), nth counting from 1,
// and serve everything else, or a nil answer, itself. restore puts the
// node's own handler back.
func interceptPuts(c *clustertest.Cluster, x int, key string, answer func(nth int, v coding.Version) *wire.BatchResult) (restore func()) {
	ctx := context.Background()
	xn := c.Node(x)
	var mu sync.Mutex
	nth := 0
	reply := func(raw []byte) *wire.BatchResult {
		sh, err := coding.ParseShard(raw)
		if err != nil || sh.Header.Key != key {
			return nil
		}
		mu.Lock()
		nth++
		n := nth
		mu.Unlock()
		return answer(n, sh.Header.Version)
	}
	xn.Host().SetStreamHandler(wire.ShardProtocol, func(s network.Stream) {
		defer s.Close()
		f, err := wire.ReadFrame(s, nil)
		if err != nil {
			_ = s.Reset()
			return
		}
		var r *wire.Response
		req, err := wire.DecodeRequest(f)
		switch {
		case err != nil:
		case req.Op == wire.OpPut:
			if a := reply(req.Shard); a != nil {
				r = &wire.Response{Status: a.Status, Message: a.Message}
			}
		case req.Op == wire.OpBatchPut && len(req.Shards) == 1:
			if a := reply(req.Shards[0]); a != nil {
				r = &wire.Response{Status: wire.StatusOK, Payload: wire.AppendBatchPayload(nil, []wire.BatchResult{*a})}
			}
		}
		if r == nil {
			r = xn.Serve(ctx, s.Conn().RemotePeer(), f)
		} else {
			r.Op = req.Op
		}
		_, _ = wire.WriteResponse(s, nil, r)
	})
	return func() { xn.Host().SetStreamHandler(wire.ShardProtocol, xn.HandleStream) }
}

// supersededAnswer answers a put of version v as a node holding a newer
// version does.
func supersededAnswer(v coding.Version) *wire.BatchResult {
	return &wire.BatchResult{Status: wire.StatusOK, HeldHLC: v.HLC + 1, HeldWriter: v.Writer}
}

// TestOrderedWriteOwnsItsQuorum: a writer whose put met a newer version
// writes again after it, and acknowledges only an attempt whose own
// version holds the quorum. Two nodes here answer the first two attempts'
// shards as if another writer kept writing newer versions. The second
// attempt used to be acknowledged on those answers, with the value's own
// version on 4 of 6 positions, below the quorum: had the racing version
// failed and been undone, the acknowledged value could be left too scarce
// to read.
func TestOrderedWriteOwnsItsQuorum(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	key := "/ordered/racing"
	o := c.Owners(key)
	var limit atomic.Int64
	limit.Store(2)
	for _, x := range o[4:] {
		interceptPuts(c, x, key, func(nth int, v coding.Version) *wire.BatchResult {
			if int64(nth) > limit.Load() {
				return nil
			}
			return supersededAnswer(v)
		})
	}
	val := bytes.Repeat([]byte("r"), 300<<10)
	d := c.Client(nil)
	if err := d.Put(ctx, ds.NewKey(key), val); err != nil {
		t.Fatal(err)
	}
	for _, x := range o {
		raw, err := c.Node(x).CurrentShard(key)
		if err != nil {
			t.Fatalf("node %d after the acknowledged put: %v; every position holds the value", x, err)
		}
		if sh, err := coding.ParseShard(raw); err != nil || sh.Header.ValueLen != uint64(len(val)) {
			t.Fatalf("node %d's shard: %+v, %v", x, sh, err)
		}
	}
	if got, err := d.Get(ctx, ds.NewKey(key)); err != nil || !bytes.Equal(got, val) {
		t.Fatalf("get: %d bytes, %v", len(got), err)
	}
	// Writers that never stop racing: the put gives up, saying so.
	limit.Store(1 << 30)
	err := d.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("s"), 300<<10))
	if !errors.Is(err, dscluster.ErrQuorum) || !strings.Contains(err.Error(), "newer version after each of 8 attempts") {
		t.Fatalf("put against writers that keep racing: %v; want ErrQuorum after 8 attempts", err)
	}
}

// TestSupersededAttemptKeepsOlderValue: an overwrite's first attempt
// reaches positions 0-2, fails at 3, and meets a newer version at 4 and 5,
// so it is written again; that attempt fails at 3-5. The first attempt,
// held by 3 positions, was neither acknowledged nor undone, and when nodes
// kept one previous shard the second attempt replaced v1's there: v1,
// acknowledged, was left on 3 positions and lost with every node up. The
// nodes now keep both attempts' versions beside v1. Likewise for a batch,
// which writes such values again with Put.
func TestSupersededAttemptKeepsOlderValue(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	v1 := bytes.Repeat([]byte("1"), 300<<10)
	fail := &wire.BatchResult{Status: wire.StatusInternal, Message: "disk full"}
	for _, batch := range []bool{false, true} {
		key := fmt.Sprintf("/ordered/undone-%v", batch)
		o := c.Owners(key)
		if err := d.Put(ctx, ds.NewKey(key), v1); err != nil {
			t.Fatal(err)
		}
		restore := []func(){interceptPuts(c, o[3], key, func(int, coding.Version) *wire.BatchResult { return fail })}
		for _, x := range o[4:] {
			restore = append(restore, interceptPuts(c, x, key, func(nth int, v coding.Version) *wire.BatchResult {
				if nth == 1 {
					return supersededAnswer(v)
				}
				return fail
			}))
		}
		// A new front end: the handlers above serve new streams only.
		w := c.Client(nil)
		v2 := bytes.Repeat([]byte("2"), 300<<10)
		var err error
		if batch {
			err = batchCommit(ctx, w, key, v2)
		} else {
			err = w.Put(ctx, ds.NewKey(key), v2)
		}
		if !errors.Is(err, dscluster.ErrQuorum) {
			t.Fatalf("batch %v: overwrite: %v, want a quorum error", batch, err)
		}
		for _, r := range restore {
			r()
		}
		if got, err := c.Client(nil).Get(ctx, ds.NewKey(key)); err != nil || !bytes.Equal(got, v1) {
			t.Fatalf("batch %v: get after the failed overwrite, every node up: %d bytes, %v; want v1", batch, len(got), err)
		}
	}
}

// memberRetrying sends a membership command through d, again while the
// cluster answers that it is electing a raft leader.
func memberRetrying(ctx context.Context, d *dscluster.Datastore, cmd membership.Command) error {
	err := d.Member(ctx, cmd)
	for i := 0; i < 100 && err != nil && strings.Contains(err.Error(), "retry"); i++ {
		time.Sleep(100 * time.Millisecond)
		err = d.Member(ctx, cmd)
	}
	return err
}

// TestShardTooLargeToServeIsRefused: a put whose frame fits in
// wire.MaxFrame but whose shard would not fit in a get response (its fixed
// fields are longer than a put's) used to be stored and acknowledged, and
// every later get of it reset the stream. It is refused now.
func TestShardTooLargeToServeIsRefused(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	h := newHost(t, c.Secret)
	key := keyOwnedAt(c, 0)
	// A put request's body: version, op, epoch (10 bytes), then the shard.
	dataLen := wire.MaxFrame - 10 - coding.HeaderSize(len(key))
	data := bytes.Repeat([]byte{5}, dataLen)
	sum := coding.Checksum(data)
	sh := &coding.Shard{Header: coding.Header{Format: coding.FormatVersion, Key: key, Policy: coding.Replicas(1),
		ValueLen: uint64(dataLen), ValueSum: sum, ShardSum: sum, Version: coding.Version{HLC: 1 << 40, Writer: 9}}, Data: data}
	put := frame(wire.AppendRequest(nil, &wire.Request{Op: wire.OpPut, Shard: sh.AppendBinary(nil)}))
	if len(put)-4 > wire.MaxFrame {
		t.Fatalf("request of %d bytes exceeds a frame", len(put)-4)
	}
	resp, err := exchange(t, openStream(t, ctx, h, c), put, false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != wire.StatusTooLarge {
		t.Fatalf("put of a %d-byte shard: %s %q, want %s", len(put)-14, resp.Status, resp.Message, wire.StatusTooLarge)
	}
	resp, err = exchange(t, openStream(t, ctx, h, c), frame(wire.AppendRequest(nil, &wire.Request{Op: wire.OpGet, Key: key})), false)
	if err != nil || resp.Status != wire.StatusNotFound {
		t.Fatalf("get after the refused put: %v, %v; want not found", resp, err)
	}
}

// TestRebalanceWriteAtNewOwnerOnAck: during a rebalance a node that takes
// a writer's shard of a moving position has it at the position's new owner
// before it answers, for single puts and for batches. The copy used to go
// through a queue after the answer: a rebalance committed from lists taken
// before the write left it only at old owners, where reads no longer look
// (a newer value read as an older one until a repair pass copied it). A
// put the node answers as superseded (it holds a newer version) stores
// nothing and is not copied either.
func TestRebalanceWriteAtNewOwnerOnAck(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{HeartbeatInterval: 100 * time.Millisecond, RepairInterval: time.Hour, FastRaft: true})
	c.AddNode("")
	var cur *config.Cluster
	eventually(t, 30*time.Second, "a rebalance target on every node after a join", func() error {
		for i := 0; i < c.Len(); i++ {
			if c.Node(i).Cluster().Target == nil {
				return fmt.Errorf("node %d has no target", i)
			}
		}
		cur = c.Node(0).Cluster()
		return nil
	})
	nodeOf := func(m *placement.Map, slot uint16, pos int) int {
		id := m.Nodes[m.Owners(slot)[pos]].ID
		for i := 0; i < c.Len(); i++ {
			if c.Node(i).ID().String() == id {
				return i
			}
		}
		t.Fatalf("node %s is not in the test cluster", id)
		return -1
	}
	type move struct {
		key           string
		pos, from, to int
	}
	// The moving positions of keys under prefix, n or a few more. A node
	// may hold several positions of a key: the new owner of one position
	// may be the old owner of another, and gets its forward beside it.
	movesOf := func(prefix string, n int) []move {
		var moves []move
		for k := 0; len(moves) < n; k++ {
			key := fmt.Sprintf("%s/%d", prefix, k)
			slot := placement.Slot(key)
			for pos := 0; pos < 6; pos++ {
				if from, to := nodeOf(cur.Map, slot, pos), nodeOf(cur.Target, slot, pos); from != to {
					moves = append(moves, move{key, pos, from, to})
				}
			}
		}
		return moves
	}
	moves := movesOf("/moving", 59)
	client := newHost(t, c.Secret).ID()
	atNewOwner := func(m move, raw []byte) {
		t.Helper()
		got, err := c.Node(m.to).ShardAt(m.key, m.pos)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("shard %d of %s acknowledged by node %d, not at its new owner %d: %v", m.pos, m.key, m.from, m.to, err)
		}
	}

	for _, m := range moves[:20] {
		raw := encodeShard(t, m.key, 64<<10, m.pos)
		resp := c.Node(m.from).Serve(ctx, client, wire.AppendRequest(nil, &wire.Request{Op: wire.OpPut, Shard: raw, Epoch: cur.Map.Epoch}))
		if resp.Status != wire.StatusOK {
			t.Fatalf("put shard %d of %s on node %d: %s %s", m.pos, m.key, m.from, resp.Status, resp.Message)
		}
		atNewOwner(m, raw)
	}

	// The next moves, as one batch per old owner (a key once per batch).
	batches := map[int][]move{}
	for _, m := range moves[20:59] {
		if !slices.ContainsFunc(batches[m.from], func(o move) bool { return o.key == m.key }) {
			batches[m.from] = append(batches[m.from], m)
		}
	}
	for from, ms := range batches {
		req := &wire.Request{Op: wire.OpBatchPut, Epoch: cur.Map.Epoch}
		for _, m := range ms {
			req.Shards = append(req.Shards, encodeShard(t, m.key, 64<<10, m.pos))
		}
		resp := c.Node(from).Serve(ctx, client, wire.AppendRequest(nil, req))
		rs, err := wire.DecodeBatchPayload(resp.Payload)
		if resp.Status != wire.StatusOK || err != nil || len(rs) != len(ms) {
			t.Fatalf("batch of %d on node %d: %s %s, %d results, %v", len(ms), from, resp.Status, resp.Message, len(rs), err)
		}
		for i, m := range ms {
			if rs[i].Status != wire.StatusOK {
				t.Fatalf("batch shard %d of %s on node %d: %s %s", m.pos, m.key, from, rs[i].Status, rs[i].Message)
			}
			atNewOwner(m, req.Shards[i])
		}
	}

	// A member's copy of a newer version (never forwarded), then a
	// writer's put of an older one: answered as superseded, not copied.
	m := movesOf("/superseded", 1)[0] // a key no other part of the test wrote
	member := c.Node((m.from + 1) % c.Len()).ID()
	newer := encodeShardAt(t, m.key, 64<<10, m.pos, 2<<20)
	if resp := c.Node(m.from).Serve(ctx, member, wire.AppendRequest(nil, &wire.Request{Op: wire.OpPut, Shard: newer, Epoch: cur.Map.Epoch})); resp.Status != wire.StatusOK {
		t.Fatalf("member put: %s %s", resp.Status, resp.Message)
	}
	older := encodeShardAt(t, m.key, 64<<10, m.pos, 1<<20)
	resp := c.Node(m.from).Serve(ctx, client, wire.AppendRequest(nil, &wire.Request{Op: wire.OpBatchPut, Shards: [][]byte{older}, Epoch: cur.Map.Epoch}))
	if rs, err := wire.DecodeBatchPayload(resp.Payload); err != nil || len(rs) != 1 || rs[0].Status != wire.StatusOK || rs[0].HeldHLC != 2<<20 {
		t.Fatalf("older put: %+v (%v), want OK with the newer version held", rs, err)
	}
	if got, err := c.Node(m.to).ShardAt(m.key, m.pos); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("new owner %d holds %d bytes of %s after a superseded put (%v); want nothing", m.to, len(got), m.key, err)
	}
}

// encodeShardAt is encodeShard at write version hlc.
func encodeShardAt(t *testing.T, key string, size, index int, hlc uint64) []byte {
	t.Helper()
	shards, err := coding.Encode(key, bytes.Repeat([]byte{7}, size), coding.Erasure(4, 2), coding.Version{HLC: hlc, Writer: 1})
	if err != nil {
		t.Fatal(err)
	}
	return shards[index].AppendBinary(nil)
}

// TestSupersedeOfNoPositionsIsRefused: OpSupersede names an acknowledged
// version and its width; a width of 0 would have every older shard of the
// key dropped at every position with no tombstone in its place. The node
// refuses it and keeps its shard.
func TestSupersedeOfNoPositionsIsRefused(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	key := "/supersede/none"
	if err := c.Client(nil).Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("v"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	n := c.Owners(key)[3]
	before, err := c.Node(n).CurrentShard(key)
	if err != nil {
		t.Fatal(err)
	}
	newer := coding.Version{HLC: uint64(time.Now().Add(time.Hour).UnixMilli()) << 16, Writer: 1}
	for _, pos := range []uint8{0, 4} { // 4: the node's position, 3, is covered
		resp := c.Node(n).Serve(ctx, newHost(t, c.Secret).ID(), wire.AppendRequest(nil, &wire.Request{Op: wire.OpSupersede,
			Drop: []wire.ShardRef{{Key: key, Pos: pos, HLC: newer.HLC, Writer: newer.Writer}}}))
		rs, err := wire.DecodeBatchPayload(resp.Payload)
		if resp.Status != wire.StatusOK || err != nil || len(rs) != 1 {
			t.Fatalf("supersede of width %d: %s %s, %v", pos, resp.Status, resp.Message, err)
		}
		if want := map[uint8]wire.Status{0: wire.StatusBadRequest, 4: wire.StatusOK}[pos]; rs[0].Status != want {
			t.Fatalf("supersede of width %d: %s %q; want %s", pos, rs[0].Status, rs[0].Message, want)
		}
		if after, err := c.Node(n).CurrentShard(key); err != nil || !bytes.Equal(after, before) {
			t.Fatalf("shard after a supersede of width %d: %v", pos, err)
		}
	}
}

// TestSeveralPositionsOfAKey: a node may hold several positions of a key
// (during a rebalance it owns one position of a slot in the map and
// another in the target). A get names the position it reads, and the
// node answers for that position alone; dropping a position it does not
// own leaves the others; an overwrite keeps both as older shards.
func TestSeveralPositionsOfAKey(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	key := keyOwnedAt(c, 0)
	if err := d.Put(ctx, ds.NewKey(key), bytes.Repeat([]byte("1"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	n0, o := c.Node(0), c.Owners(key)
	own, err := n0.ShardAt(key, 0)
	if err != nil {
		t.Fatal(err)
	}
	third, err := c.Node(o[3]).ShardAt(key, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := n0.SetPrevShard(key, third); err != nil {
		t.Fatal(err)
	}
	client := newHost(t, c.Secret).ID()
	get := func(pos uint8, headerOnly bool) *wire.Response {
		t.Helper()
		return n0.Serve(ctx, client, wire.AppendRequest(nil, &wire.Request{Op: wire.OpGet, Key: key, Pos: pos, HeaderOnly: headerOnly}))
	}
	for pos, want := range map[uint8][]byte{0: own, 3: third} {
		if r := get(pos, false); r.Status != wire.StatusOK || !bytes.Equal(r.Payload, want) {
			t.Fatalf("get of position %d: %s %q, %d bytes; want its shard", pos, r.Status, r.Message, len(r.Payload))
		}
		r := get(pos, true)
		h, err := wire.DecodeHeaderPayload(r.Payload)
		if r.Status != wire.StatusOK || err != nil || h.Index != pos || len(h.Older) != 0 {
			t.Fatalf("header of position %d: %s, %+v, %v; want position %d, no older shards", pos, r.Status, h, err, pos)
		}
	}
	if r := get(1, false); r.Status != wire.StatusNotFound {
		t.Fatalf("get of position 1, not held: %s, want not found", r.Status)
	}
	es, err := n0.IndexEntries()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(es, func(e index.Entry) bool { return e.Key == key })
	if i < 0 || es[i].Index != 0 || len(es[i].Also) != 1 || es[i].Also[0].Index != 3 || len(es[i].Older) != 0 {
		t.Fatalf("index entry of %s: %+v, want positions 0 and 3 of one version", key, es)
	}

	// A writer's overwrite of position 0 keeps both shards of the older
	// version.
	sh, err := coding.ParseShard(own)
	if err != nil {
		t.Fatal(err)
	}
	newer := encodeShardAt(t, key, 64<<10, 0, sh.Header.Version.HLC+1)
	r := n0.Serve(ctx, client, wire.AppendRequest(nil, &wire.Request{Op: wire.OpBatchPut, Shards: [][]byte{newer}}))
	if rs, err := wire.DecodeBatchPayload(r.Payload); err != nil || len(rs) != 1 || rs[0].Status != wire.StatusOK || !rs[0].Kept {
		t.Fatalf("overwrite: %+v, %v; want stored, older kept", rs, err)
	}
	if r := get(3, true); r.Status != wire.StatusOK {
		t.Fatalf("header of position 3 after the overwrite of 0: %s", r.Status)
	} else if h, err := wire.DecodeHeaderPayload(r.Payload); err != nil || h.HLC != sh.Header.Version.HLC {
		t.Fatalf("header of position 3 after the overwrite of 0: %+v, %v; want the older version", h, err)
	}
	if r := get(0, false); r.Status != wire.StatusOK || !bytes.Equal(r.Payload, newer) {
		t.Fatalf("get of position 0 after the overwrite: %s, %d bytes; want the new shard", r.Status, len(r.Payload))
	}

	// Position 3, which node 0 does not own, goes alone.
	v := sh.Header.Version
	if st, msg := n0.Drop(ctx, wire.ShardRef{Key: key, Pos: 3, HLC: v.HLC, Writer: v.Writer}); st != wire.StatusOK || msg != "" {
		t.Fatalf("drop of position 3: %s %q", st, msg)
	}
	if r := get(3, false); r.Status != wire.StatusNotFound {
		t.Fatalf("get of position 3 after its drop: %s, want not found", r.Status)
	}
	if r := get(0, true); r.Status != wire.StatusOK {
		t.Fatalf("header of position 0 after the drop of 3: %s", r.Status)
	} else if h, err := wire.DecodeHeaderPayload(r.Payload); err != nil || len(h.Older) != 1 || h.Older[0].HLC != v.HLC {
		t.Fatalf("header of position 0 after the drop of 3: %+v, %v; want the new version over the kept one", h, err)
	}
	if st, _ := n0.Drop(ctx, wire.ShardRef{Key: key, Pos: 0, HLC: v.HLC, Writer: v.Writer}); st != wire.StatusBadRequest {
		t.Fatalf("drop of position 0, which the node owns: %s, want refused", st)
	}
}

// TestFlatfsSpreadsShardsOverDirectories: flatfs puts each file in the
// directory its sharding function names. The node's shard names end with
// the writer's ID and the position, so next-to-last/2 put every shard one
// writer stored on a node in one directory, whatever the key: millions of
// files in one folder. The names begin with the key's hash, which spreads
// them.
func TestFlatfsSpreadsShardsOverDirectories(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Store: "flatfs"})
	d := c.Client(nil)
	const keys = 40
	for i := range keys {
		if err := d.Put(ctx, ds.NewKey(fmt.Sprintf("/spread/%d", i)), bytes.Repeat([]byte{byte(i)}, 300<<10)); err != nil {
			t.Fatal(err)
		}
	}
	dirs, err := filepath.Glob(filepath.Join(c.Dirs[0], "shards", "*", "*.data"))
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]int{}
	for _, f := range dirs {
		in[filepath.Base(filepath.Dir(f))]++
	}
	// 40 keys over 1024 directories: about 39 distinct ones.
	if len(dirs) != keys || len(in) < keys/2 {
		t.Fatalf("node 0 holds %d shard files in %d directories: %v; want %d files over at least %d", len(dirs), len(in), in, keys, keys/2)
	}
}

// TestAcknowledgedDeleteStaysUnderFailedPuts: a delete is acknowledged,
// but its writer's notices to drop the value under the tombstone are lost
// (the value's shards stay there, as SetPrevShard leaves them). Two puts
// then fail, one with positions 4 and 5 down, one with 0 and 1 down. When
// a put dropped the tombstone it replaced but kept what lay behind it, no
// position listed the delete any more, and a read with positions 2 and 3
// down served the deleted value (found by review). Puts now keep the
// tombstone: the read says not found.
func TestAcknowledgedDeleteStaysUnderFailedPuts(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	d := c.Client(nil)
	key := ds.NewKey("/lost/delete-under-failed-puts")
	k := key.String()
	o := c.Owners(k)
	a := bytes.Repeat([]byte("a"), 300<<10)
	if err := d.Put(ctx, key, a); err != nil {
		t.Fatal(err)
	}
	shards := make([][]byte, len(o))
	for pos := range o {
		var err error
		if shards[pos], err = c.Node(o[pos]).ShardAt(k, pos); err != nil {
			t.Fatalf("position %d: %v", pos, err)
		}
	}
	if err := d.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the writer drops the value under the tombstone", func() error {
		for pos := range o {
			if _, err := c.Node(o[pos]).PrevShard(k); !errors.Is(err, ds.ErrNotFound) {
				return fmt.Errorf("position %d keeps it: %v", pos, err)
			}
		}
		return nil
	})
	for pos := range o { // as if the notices had been lost
		if err := c.Node(o[pos]).SetPrevShard(k, shards[pos]); err != nil {
			t.Fatal(err)
		}
	}
	for _, down := range [][]int{{4, 5}, {0, 1}} {
		w := c.Client(&dscluster.Options{Down: []int{o[down[0]], o[down[1]]}})
		if err := w.Put(ctx, key, bytes.Repeat([]byte{byte(down[0])}, 300<<10)); !errors.Is(err, dscluster.ErrQuorum) {
			t.Fatalf("put with positions %v down: %v, want a quorum error", down, err)
		}
	}
	got, err := c.Client(&dscluster.Options{Down: []int{o[2], o[3]}}).Get(ctx, key)
	if !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get with positions 2 and 3 down: %d bytes (the deleted value: %v), %v; want ds.ErrNotFound", len(got), bytes.Equal(got, a), err)
	}
}
