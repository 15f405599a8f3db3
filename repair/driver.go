package repair

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	logging "github.com/ipfs/go-log/v2"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

var log = logging.Logger("dscluster/repair")

// Peers is the I/O the driver does against the nodes. Package node
// implements it over the wire protocol; tests implement it in memory.
type Peers interface {
	// Inventory returns every shard node holds.
	Inventory(ctx context.Context, node string) ([]Holding, error)
	// GetShard returns the encoded shard pos of key that node holds.
	GetShard(ctx context.Context, node, key string, pos int) ([]byte, error)
	// PutShard stores an encoded shard on node: a newer version replaces
	// what the node holds of the key, the same version adds a position,
	// an older one is refused.
	PutShard(ctx context.Context, node string, shard []byte) error
	// Drop carries out a Drop action on a.To, if it still holds the shard.
	// A node refuses to drop a position it owns unless a.Stale is set.
	Drop(ctx context.Context, a Action) error
}

// DriverConfig configures a Driver.
type DriverConfig struct {
	Peers Peers
	// StatePath is the bbolt file that keeps the backlog and the totals,
	// so that a repair resumes after a crash.
	StatePath string
	// Rate limits the shard bytes moved per second (0: unlimited).
	Rate float64
	// Workers is the number of actions run at once (default 4).
	Workers int
	// NoSync skips fsync of the state file (tests).
	NoSync bool
	// GarbageGrace is how old a version with fewer than k shards must be
	// to be dropped as a failed write's garbage (default DefaultGarbageGrace;
	// negative: 0). It outlasts any write in flight, with room for front
	// ends whose clocks lag.
	GarbageGrace time.Duration
	// Quorum is the write quorum of a policy (View.Quorum), and MapSince
	// when the current map was set (config.Cluster.MapSince; 0: unknown);
	// without both no lost key is rolled back.
	Quorum   func(coding.Policy) int
	MapSince func() int64
}

// DefaultGarbageGrace is DriverConfig.GarbageGrace's default.
const DefaultGarbageGrace = 10 * time.Minute

// Validate checks the config and fills defaults.
func (c *DriverConfig) Validate() error {
	if c.Peers == nil {
		return errors.New("repair: no peers")
	}
	if c.StatePath == "" {
		return errors.New("repair: no state path")
	}
	if c.Rate < 0 {
		return fmt.Errorf("repair: rate %v is negative", c.Rate)
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	switch {
	case c.GarbageGrace == 0:
		c.GarbageGrace = DefaultGarbageGrace
	case c.GarbageGrace < 0:
		c.GarbageGrace = 0
	}
	return nil
}

// Stats is what the driver reports: the last plan and the work since.
type Stats struct {
	Passes   int       `json:"passes"`
	Started  time.Time `json:"pass_started"`  // start of the last pass
	Finished time.Time `json:"pass_finished"` // end of the last complete pass
	Epoch    uint64    `json:"epoch"`         // map epoch the last pass planned for
	Nodes    int       `json:"nodes_listed"`
	// SlotsListed is how many slots the last pass listed: those whose
	// owners' sums disagree, or all of them (see SettledSlots).
	SlotsListed int `json:"slots_listed"`
	Keys        int `json:"keys"`
	Degraded    int `json:"degraded_keys"`
	Lost        int `json:"lost_keys"`
	// Backlog is the actions of the current plan not done yet.
	Backlog      int   `json:"backlog"`
	BacklogBytes int64 `json:"backlog_bytes"`
	// Totals over the driver's life, kept across restarts.
	Done       int64 `json:"done_total"`
	Failed     int64 `json:"failed_total"`
	BytesMoved int64 `json:"bytes_moved_total"`
	// Rate is the bytes per second moved by the last pass that moved any.
	Rate float64 `json:"rate_bytes_per_sec"`
	// ETA is the backlog's bytes at Rate, in seconds (0 when idle).
	ETA float64 `json:"eta_seconds"`
}

// Settled reports whether the last complete pass planned for the map of
// this epoch found every key at full redundancy and left nothing to do. A
// pass still running, or planned for an older map, does not count.
func (s Stats) Settled(epoch uint64) bool {
	return s.Epoch == epoch && s.Finished.After(s.Started) && s.Degraded == 0 && s.Backlog == 0
}

// Driver runs repair passes: list what every node holds, plan, act.
// Only one pass runs at a time; Stats may be called from any goroutine.
type Driver struct {
	cfg     DriverConfig
	db      *bolt.DB
	limiter *rate.Limiter

	passMu sync.Mutex // one pass at a time
	mu     sync.Mutex
	stats  Stats
}

var (
	bucketBacklog = []byte("backlog")
	bucketMeta    = []byte("meta")
	keyTotals     = []byte("totals")
)

// burst is the most bytes the rate limiter lets through at once; a larger
// shard waits for several buckets.
const burst = 1 << 20

// OpenDriver opens (or creates) the driver's state file.
func OpenDriver(cfg DriverConfig) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(cfg.StatePath, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("repair: open state %s: %w", cfg.StatePath, err)
	}
	d := &Driver{cfg: cfg, db: db}
	if cfg.Rate > 0 {
		d.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), burst)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketBacklog); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keyTotals); v != nil {
			if err := json.Unmarshal(v, &d.stats); err != nil {
				return fmt.Errorf("totals do not parse: %w", err)
			}
		}
		return nil
	})
	var left []Action
	if err == nil {
		left, err = d.loadBacklog() // what the next pass resumes
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("repair: state %s: %w", cfg.StatePath, err)
	}
	d.stats.Backlog, d.stats.BacklogBytes = len(left), 0
	for _, a := range left {
		d.stats.BacklogBytes += a.Bytes
	}
	return d, nil
}

// Close closes the state file. A pass still running fails.
func (d *Driver) Close() error { return d.db.Close() }

// Stats returns the driver's current figures.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	if s.Rate > 0 {
		s.ETA = float64(s.BacklogBytes) / s.Rate
	}
	return s
}

// Pass runs one repair pass for the cluster described by m and target
// over nodes: it finishes the backlog a crash may have left, lists every
// node (one that fails to answer is unreachable), plans, records the plan
// as the new backlog, carries it out and returns it. Action failures are
// counted and logged, not returned: the next pass plans them again. absent
// counts the members outside nodes that may still hold shards (down or
// out), from the same cluster description as nodes. ctx bounds the pass:
// the actions it leaves unstarted stay in the backlog.
func (d *Driver) Pass(ctx context.Context, m, target *placement.Map, nodes []string, absent int) (*Plan, error) {
	d.passMu.Lock()
	defer d.passMu.Unlock()
	started := time.Now()
	d.mu.Lock()
	d.stats.Started = started
	d.mu.Unlock()

	if left, err := d.loadBacklog(); err != nil {
		return nil, err
	} else if len(left) > 0 {
		// Copies and rebuilds are safe whenever they run; a drop only
		// against the view it was planned from, so drops are replanned.
		resume := slices.DeleteFunc(slices.Clone(left), func(a Action) bool { return a.Kind == Drop })
		log.Infow("resuming the repair backlog", "actions", len(resume), "drops_replanned", len(left)-len(resume))
		if err := d.saveBacklog(resume); err != nil {
			return nil, err
		}
		d.run(ctx, resume)
	}

	view, settledKeys := d.list(ctx, m, target, nodes)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, id := range nodes {
		if !view.Reachable[id] {
			view.Unlisted++
		}
	}
	view.Unlisted += absent
	plan := Make(view)
	plan.Keys += settledKeys
	if err := d.saveBacklog(plan.Actions); err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.stats.Epoch = m.Epoch
	d.stats.Nodes = len(view.Reachable)
	d.stats.Keys, d.stats.Degraded, d.stats.Lost = plan.Keys, plan.Degraded, plan.Lost
	d.mu.Unlock()
	if len(plan.Actions) > 0 {
		log.Infow("repair plan", "epoch", m.Epoch, "keys", plan.Keys, "degraded", plan.Degraded, "lost", plan.Lost, "actions", len(plan.Actions))
	}
	moved := d.run(ctx, plan.Actions)
	d.mu.Lock()
	d.stats.Passes++
	if ctx.Err() == nil {
		d.stats.Finished = time.Now()
	}
	if moved > 0 {
		if secs := time.Since(started).Seconds(); secs > 0 {
			d.stats.Rate = float64(moved) / secs
		}
	}
	d.mu.Unlock()
	return plan, d.saveTotals()
}

// list builds the view a pass plans from. With SlotPeers and no rebalance
// under way it lists only the slots that SettledSlots leaves, and returns
// the number of keys in the settled ones; when a node gives no sums (its
// slots cannot be judged), or too many slots are unsettled, it lists every
// node whole. A node that fails to answer is left unreachable.
func (d *Driver) list(ctx context.Context, m, target *placement.Map, nodes []string) (view *View, settled int) {
	view = &View{Map: m, Target: target, Reachable: make(map[string]bool), Quorum: d.cfg.Quorum,
		GarbageBefore: coding.HLCAt(time.Now().Add(-d.cfg.GarbageGrace))}
	if d.cfg.MapSince != nil {
		if at := d.cfg.MapSince(); at != 0 {
			// The garbage grace is the room writers' clocks get here too.
			view.MapSince = at + int64(d.cfg.GarbageGrace)
		}
	}
	listed := placement.NumSlots
	defer func() {
		d.mu.Lock()
		d.stats.SlotsListed = listed
		d.mu.Unlock()
	}()
	if sp, ok := d.cfg.Peers.(SlotPeers); ok && target == nil {
		sums := map[string][]SlotSum{}
		fromEach(nodes, "sums", func(id string) ([]SlotSum, error) { return sp.Sums(ctx, id) },
			func(id string, ss []SlotSum) { sums[id] = ss })
		unsettled, keys := SettledSlots(m, sums)
		if len(sums) == len(nodes) && len(unsettled) <= maxSlotListing {
			fromEach(nodes, "slot inventory", func(id string) ([]Holding, error) { return listSlots(ctx, sp, id, unsettled) }, view.add)
			listed = len(unsettled)
			return view, keys
		}
	}
	fromEach(nodes, "inventory", func(id string) ([]Holding, error) { return d.cfg.Peers.Inventory(ctx, id) }, view.add)
	return view, 0
}

// fromEach calls fetch for every node at once, and keep, one call at a
// time, with each node's answer. A node whose fetch fails is logged and
// left out.
func fromEach[T any](nodes []string, what string, fetch func(id string) (T, error), keep func(id string, v T)) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range nodes {
		wg.Go(func() {
			v, err := fetch(id)
			if err != nil {
				log.Debugw(what, "node", id, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			keep(id, v)
		})
	}
	wg.Wait()
}

// add records node id as reachable, holding hs.
func (v *View) add(id string, hs []Holding) {
	v.Reachable[id] = true
	v.Holdings = append(v.Holdings, hs...)
}

// run carries out actions with the configured workers and returns the
// bytes moved. Each done action leaves the backlog.
func (d *Driver) run(ctx context.Context, actions []Action) int64 {
	type job struct {
		seq uint64
		a   Action
	}
	jobs := make(chan job)
	var moved atomic.Int64
	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() {
			for j := range jobs {
				err := d.do(ctx, j.a)
				if err == nil {
					moved.Add(j.a.Bytes)
				}
				d.finish(j.seq, j.a, err)
			}
		})
	}
	for i, a := range actions {
		if ctx.Err() != nil {
			break
		}
		jobs <- job{seq: uint64(i), a: a}
	}
	close(jobs)
	wg.Wait()
	return moved.Load()
}

// finish records the outcome of one action.
func (d *Driver) finish(seq uint64, a Action, err error) {
	d.mu.Lock()
	if err != nil {
		d.stats.Failed++
	} else {
		d.stats.Done++
		d.stats.BytesMoved += a.Bytes
	}
	d.stats.Backlog--
	d.stats.BacklogBytes -= a.Bytes
	d.mu.Unlock()
	if err != nil {
		log.Debugw("repair action failed", "action", a.Kind.String(), "key", a.Key, "pos", a.Pos, "to", a.To, "err", err)
	}
	// A failed action leaves the backlog too: the next pass plans it again
	// from what the nodes hold then.
	uerr := d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBacklog).Delete(seqKey(seq))
	})
	if uerr != nil {
		log.Warnw("repair backlog", "err", uerr)
	}
}

// Delegator is Peers that can have the node an action writes to carry it
// out itself (package node: wire.OpRepair), so that one node's links and
// cores do not bound every repair.
type Delegator interface {
	// Delegate has a.To make shard a.Pos of a Copy or Rebuild (MakeShard)
	// and store it.
	Delegate(ctx context.Context, a Action) error
}

// do carries out one action.
func (d *Driver) do(ctx context.Context, a Action) error {
	for left := a.Bytes; d.limiter != nil && left > 0; left -= burst {
		if err := d.limiter.WaitN(ctx, int(min(left, burst))); err != nil {
			return err
		}
	}
	switch a.Kind {
	case Drop:
		return d.cfg.Peers.Drop(ctx, a)
	case Copy, Rebuild:
		if dp, ok := d.cfg.Peers.(Delegator); ok {
			return dp.Delegate(ctx, a)
		}
		shard, err := MakeShard(ctx, d.cfg.Peers.GetShard, a)
		if err != nil {
			return err
		}
		return d.cfg.Peers.PutShard(ctx, a.To, shard)
	}
	return fmt.Errorf("repair: unknown action kind %d", a.Kind)
}

// GetShardFunc reads the encoded shard pos of key that node holds.
type GetShardFunc func(ctx context.Context, node, key string, pos int) ([]byte, error)

// MakeShard returns the encoded shard a Copy or Rebuild writes to a.To:
// for a Copy, From's shard, checked to be still (a.Key, a.Pos, a.Version);
// for a Rebuild, shard a.Pos re-encoded from a.Policy.DataShards valid
// shards of (a.Key, a.Version) read from a.Sources.
func MakeShard(ctx context.Context, get GetShardFunc, a Action) ([]byte, error) {
	switch a.Kind {
	case Copy:
		raw, err := get(ctx, a.From, a.Key, a.Pos)
		if err != nil {
			return nil, fmt.Errorf("copy %q shard %d from %s: %w", a.Key, a.Pos, a.From, err)
		}
		sh, err := coding.ParseShard(raw)
		if err != nil {
			return nil, fmt.Errorf("copy %q shard %d from %s: %w", a.Key, a.Pos, a.From, err)
		}
		if sh.Header.Key != a.Key || int(sh.Header.Index) != a.Pos || sh.Header.Version != a.Version {
			return nil, fmt.Errorf("copy %q shard %d from %s: it now holds another shard", a.Key, a.Pos, a.From)
		}
		return raw, nil
	case Rebuild:
		return rebuild(ctx, get, a)
	}
	return nil, fmt.Errorf("repair: a %s action makes no shard", a.Kind)
}

// rebuild makes shard a.Pos of (a.Key, a.Version) from a.Sources.
func rebuild(ctx context.Context, get GetShardFunc, a Action) ([]byte, error) {
	w := a.Policy.Width()
	if a.Pos < 0 || a.Pos >= w {
		return nil, fmt.Errorf("rebuild %q: position %d outside policy %s", a.Key, a.Pos, a.Policy)
	}
	if a.Tombstone {
		return coding.Tombstone(a.Key, a.Policy, a.Version)[a.Pos].AppendBinary(nil), nil
	}
	shards := make([]*coding.Shard, w)
	have := 0
	for _, src := range a.Sources {
		if have == a.Policy.DataShards {
			break
		}
		if src.Pos < 0 || src.Pos >= w || shards[src.Pos] != nil {
			continue
		}
		raw, err := get(ctx, src.Node, a.Key, src.Pos)
		if err != nil {
			continue
		}
		sh, err := coding.ParseShard(raw)
		if err != nil || sh.Header.Key != a.Key || int(sh.Header.Index) != src.Pos || sh.Header.Version != a.Version {
			continue
		}
		shards[src.Pos] = sh
		have++
	}
	if have < a.Policy.DataShards {
		return nil, fmt.Errorf("rebuild %q shard %d: %d valid sources of %d needed", a.Key, a.Pos, have, a.Policy.DataShards)
	}
	value, err := coding.Decode(shards)
	if err != nil {
		return nil, fmt.Errorf("rebuild %q shard %d: %w", a.Key, a.Pos, err)
	}
	out, err := coding.Encode(a.Key, value, a.Policy, a.Version)
	if err != nil {
		return nil, fmt.Errorf("rebuild %q shard %d: %w", a.Key, a.Pos, err)
	}
	b := out[a.Pos].AppendBinary(nil)
	coding.Release(out)
	return b, nil
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// saveBacklog replaces the backlog with actions.
func (d *Driver) saveBacklog(actions []Action) error {
	var bytes int64
	err := d.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketBacklog); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketBacklog)
		if err != nil {
			return err
		}
		for i, a := range actions {
			v, err := json.Marshal(a)
			if err != nil {
				return err
			}
			if err := b.Put(seqKey(uint64(i)), v); err != nil {
				return err
			}
			bytes += a.Bytes
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("repair: save backlog: %w", err)
	}
	d.mu.Lock()
	d.stats.Backlog, d.stats.BacklogBytes = len(actions), bytes
	d.mu.Unlock()
	return nil
}

// loadBacklog returns the actions a previous pass left, in order.
func (d *Driver) loadBacklog() ([]Action, error) {
	var out []Action
	err := d.db.View(func(tx *bolt.Tx) error {
		// Bolt walks keys in byte order, which for seqKey is sequence order.
		return tx.Bucket(bucketBacklog).ForEach(func(k, v []byte) error {
			var a Action
			if len(k) == 8 && json.Unmarshal(v, &a) == nil {
				out = append(out, a)
			}
			return nil // unreadable entries are skipped: the pass replans
		})
	})
	if err != nil {
		return nil, fmt.Errorf("repair: load backlog: %w", err)
	}
	return out, nil // Pass saves what it resumes, numbered from 0 as run expects
}

// saveTotals persists the life totals.
func (d *Driver) saveTotals() error {
	d.mu.Lock()
	v, err := json.Marshal(d.stats)
	d.mu.Unlock()
	if err != nil {
		return err
	}
	err = d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyTotals, v) })
	if err != nil {
		return fmt.Errorf("repair: save totals: %w", err)
	}
	return nil
}
