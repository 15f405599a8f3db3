package volume

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

type opKind uint8

const (
	opPut    opKind = iota
	opDelete        // remove the index entry
	opMove          // compaction: repoint key only if it still points at old
	opCarry         // compaction: a delete record copied forward, no index change
)

// An op appends one record: a put or delete record of its own, or a
// compaction's verbatim copy (opMove, opCarry), which keeps its sequence
// number.
type op struct {
	kind opKind
	key  string
	rec  []byte // encoded record, until appended
	seq  uint64 // rec's sequence number; set by appendAll
	at   loc    // where rec was appended; set by appendAll
	old  loc    // opMove: the location being replaced
}

// newOp is an op of kind on key with a record of its own.
func newOp(kind opKind, key string, value []byte) op {
	rk := kindPut
	if kind == opDelete {
		rk = kindDelete
	}
	return op{kind: kind, key: key, rec: encodeRecord(rk, key, value)}
}

// submission is one caller's run of ops; it commits atomically in one group.
type submission struct {
	ops []op
	// also runs in the index transaction that applies ops, after them
	// (CommitWith). If it fails, its submission fails alone.
	also     func(*bolt.Tx, Loc) ([]Loc, error)
	done     chan error
	rejected error // also failed: the records are dead, the answer is this
}

// alsoError carries the failure of an op's also out of the transaction.
type alsoError struct {
	sub *submission
	err error
}

func (e *alsoError) Error() string { return e.err.Error() }

// apply appends the records of ops to the active volume under one hold of
// appendMu, queues them for the committer and waits for the group commit.
func (s *Store) apply(ops []op, also func(*bolt.Tx, Loc) ([]Loc, error)) error {
	sub := &submission{ops: ops, also: also, done: make(chan error, 1)}
	if err := s.appendAll(sub); err != nil {
		return err
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return <-sub.done
}

func (s *Store) appendAll(sub *submission) error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.failed != nil {
		return s.failed
	}
	// Where this submission's records start in the active volume: on a
	// failed append the active volume goes back there. Nothing of the
	// submission is queued, so later appends overwrite its bytes, and no
	// committed end ever covers them (records it left in a volume it
	// rolled out of lie past that volume's end, and Open cuts them off).
	// A full disk is thus no lasting failure: writes go on once there is
	// room.
	if s.mustRoll {
		if err := s.roll(); err != nil {
			return err
		}
		s.mustRoll = false
	}
	back, seq := s.activeOff, s.seq
	for i := range sub.ops {
		o := &sub.ops[i]
		if o.kind == opMove || o.kind == opCarry {
			o.seq = binary.LittleEndian.Uint64(o.rec[5:])
		} else {
			seq++
			o.seq = seq
			stampRecord(o.rec, seq)
		}
		n := int64(len(o.rec))
		if s.activeOff > 0 && s.activeOff+n > s.opts.MaxVolumeSize {
			if err := s.roll(); err != nil {
				s.activeOff = back
				return err
			}
			back = 0
		}
		s.filesMu.RLock()
		f := s.files[s.activeVol]
		s.filesMu.RUnlock()
		if _, err := f.WriteAt(o.rec, s.activeOff); err != nil {
			s.activeOff = back
			return fmt.Errorf("volume: append: %w", err)
		}
		o.at = loc{vol: s.activeVol, off: s.activeOff, size: uint32(n)}
		s.activeOff += n
		if o.kind != opMove { // a copy's value goes to Owner.Move
			releaseRecord(o.rec) // the bytes are in the page cache
			o.rec = nil
		}
	}
	s.seq = seq
	s.pending = append(s.pending, sub)
	return nil
}

// roll makes a new volume the active one. Callers hold appendMu.
func (s *Store) roll() error {
	err := s.createVolume(s.activeVol + 1)
	if errors.Is(err, errSyncDir) && !isNoSpace(err) {
		s.failed = err // the disk fails its fsyncs
	}
	return err
}

// commitLoop is the single committer. Each round it waits, up to the
// commit delay, for the submissions its grouper asks for, then fsyncs the
// touched volumes and commits one index transaction.
func (s *Store) commitLoop() {
	defer close(s.committed)
	var g grouper
	var lastSync time.Duration // the previous group's fsyncs
	var timer *time.Timer
	for {
		select {
		case <-s.kick:
		case <-s.quit:
			s.commitRound()
			return
		}
		timedOut := false
		if d := commitDelay(s.opts.CommitDelay, lastSync); d > 0 && g.target > 1 {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
		wait:
			for s.pendingLen() < g.target {
				select {
				case <-s.kick:
				case <-timer.C:
					timedOut = true
					break wait
				case <-s.quit:
					break wait
				}
			}
			timer.Stop()
		}
		synced := s.stats.syncNanos.Load() // only the committer adds to it
		if n := s.commitRound(); n > 0 {
			g.committed(n, timedOut)
			if !s.opts.NoSync { // else nothing is worth waiting to share
				lastSync = time.Duration(s.stats.syncNanos.Load() - synced)
			}
		}
	}
}

// Bounds of a grouper's hold, in rounds.
const (
	minHold = 8
	maxHold = 1024
)

// A grouper chooses how many submissions a commit round waits for, from
// what the rounds before committed. Each group pays a fixed cost (the
// fsync's syscall and wake-ups, a bbolt transaction's pages), so larger
// groups cost less per write. It asks for twice as many as the last round
// had, so that a group grows while writes keep coming. When the delay runs
// out first, the writers it waited for were most likely waiting on this
// very commit (a fixed number of writers in a loop, whom waiting only
// slows), or load fell: it then asks for as many as came, and for more
// again only after a hold of rounds, which doubles with each round that
// runs out of time and is back to its least once asking for more works.
// After a lone write it asks for none: a lone writer never waits.
type grouper struct {
	target  int  // submissions to wait for; below 2, none
	hold    int  // rounds left before asking for more again
	backoff int  // the next hold
	asked   bool // target asks for more than the last round had
}

// committed takes a round's outcome: n submissions committed, and whether
// the delay ran out before target came.
func (g *grouper) committed(n int, timedOut bool) {
	switch {
	case timedOut:
		g.backoff = min(max(2*g.backoff, minHold), maxHold)
		g.hold = g.backoff
		g.target = n
	case g.hold > 0:
		g.hold--
		g.target = n
	default:
		if g.asked {
			g.backoff = 0 // asking for more worked
		}
		g.target = n
		if n > 1 {
			g.target = 2 * n
		}
	}
	g.asked = g.target > n
}

// commitDelay is how long a round waits for more submissions: opt when
// set (negative: not at all), else twice the previous group's fsyncs, at
// most maxAutoDelay. Tied to the disk's own latency, it at most triples a
// write's wait on any disk, and a stalled fsync does not stall the next
// group for as long.
func commitDelay(opt, lastSync time.Duration) time.Duration {
	if opt != 0 {
		return opt
	}
	return min(2*lastSync, maxAutoDelay)
}

func (s *Store) pendingLen() int {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	return len(s.pending)
}

// commitRound commits everything pending and answers each submission. It
// returns the number of submissions committed.
func (s *Store) commitRound() int {
	s.appendMu.Lock()
	group := s.pending
	s.pending = nil
	failed := s.failed
	s.appendMu.Unlock()
	if len(group) == 0 {
		return 0
	}
	err := failed
	if err == nil {
		err = s.commitGroup(group)
		if err != nil {
			s.fence(err)
		}
	}
	// With the store stopped (failed), the group was appended before that
	// was known: its pages may be among those a failed fsync lost, and a
	// later fsync of the same file would not say so (the kernel reports a
	// writeback error once per file). It is never committed.
	for _, sub := range group {
		if sub.rejected != nil {
			sub.done <- sub.rejected
		} else {
			sub.done <- err
		}
	}
	return len(group)
}

// fence keeps a failed commit from reaching writes queued behind it. Any
// failure but a full disk stops the store (failed), and commitRound then
// fails every queued submission. A full disk during a volume's fsync fails
// the queued submissions with records in that volume (their pages may be
// among those whose writeback failed, which a later fsync of the file
// would not report), and the next append rolls to a new volume, so that
// no later write is acknowledged by an fsync of that file.
func (s *Store) fence(err error) {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	if !isNoSpace(err) {
		if s.failed == nil {
			s.failed = err
		}
		return
	}
	var se *syncError
	if !errors.As(err, &se) {
		return // the index commit ran out of space and rolled back
	}
	keep := s.pending[:0]
	for _, sub := range s.pending {
		if sub.touches(se.vol) {
			sub.done <- err
		} else {
			keep = append(keep, sub)
		}
	}
	clear(s.pending[len(keep):])
	s.pending = keep
	if s.activeVol == se.vol {
		s.mustRoll = true
	}
}

// touches reports whether sub appended a record to volume vol.
func (sub *submission) touches(vol uint32) bool {
	for _, o := range sub.ops {
		if o.at.vol == vol {
			return true
		}
	}
	return false
}

// syncError is a failed fsync of one volume.
type syncError struct {
	vol uint32
	err error
}

func (e *syncError) Error() string { return fmt.Sprintf("volume: fsync %s: %v", volName(e.vol), e.err) }
func (e *syncError) Unwrap() error { return e.err }

// isNoSpace reports a full disk or quota. A group that fails for it fails
// alone: its records are never indexed (an index commit that ran out of
// space is rolled back, and bbolt never points at pages it did not
// write), and the store takes writes again once there is room. Any other
// failure of a commit stops the store (see Err).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// commitGroup makes group durable with one fsync of each volume it
// appended to (the write-ahead log), then visible with one index
// transaction, which bbolt writes without fsyncs of its own: a process
// crash leaves it whole in the page cache, and after an operating system
// crash Open rebuilds the index from the volumes (see rebuild.go).
func (s *Store) commitGroup(group []*submission) error {
	touched := map[uint32]bool{}
	for _, sub := range group {
		for _, o := range sub.ops {
			touched[o.at.vol] = true
		}
	}
	for vol := range touched {
		s.filesMu.RLock()
		f := s.files[vol]
		s.filesMu.RUnlock()
		if f == nil {
			return fmt.Errorf("volume: volume %d vanished before commit", vol)
		}
		start := time.Now()
		if err := s.fsync(f); err != nil {
			return &syncError{vol: vol, err: err}
		}
		s.stats.syncs.Add(1)
		s.stats.syncNanos.Add(uint64(time.Since(start)))
	}
	// Make them visible, in submission order, in one transaction. A
	// submission whose also fails is left out and the rest committed again
	// (at worst all are left out, and the last round counts them dead).
	for {
		err := s.db.Update(func(tx *bolt.Tx) error { return indexGroup(tx, group, s.opts.Owner) })
		var ae *alsoError
		if !errors.As(err, &ae) {
			if err != nil {
				return fmt.Errorf("volume: index commit: %w", err)
			}
			s.stats.groups.Add(1)
			s.stats.writes.Add(uint64(len(group)))
			s.stats.indexCommits.Add(1)
			return nil
		}
		ae.sub.rejected = ae.err
	}
}

// indexGroup points the keys of group's ops at their records (or, for an
// Owner, moves compaction's copies), runs their also, and keeps each
// volume's end, dead bytes and lowest sequence number, and the highest
// sequence number appended. The records of a rejected submission, delete
// records, compaction's carried deletes and the records an Owner's also
// says it dropped are dead.
func indexGroup(tx *bolt.Tx, group []*submission, owner Owner) error {
	keys, meta := tx.Bucket(bucketKeys), tx.Bucket(bucketMeta)
	dead := map[uint32]uint64{}
	ends := map[uint32]int64{}
	low := map[uint32]uint64{}
	var high uint64
	kill := func(k string, v []byte) {
		if l, err := decodeLoc(v); err == nil {
			dead[l.vol] += uint64(l.size)
		}
	}
	for _, sub := range group {
		var at Loc
		for _, o := range sub.ops {
			kb := []byte(o.key)
			size := int64(o.at.size)
			ends[o.at.vol] = max(ends[o.at.vol], o.at.off+size)
			if l, ok := low[o.at.vol]; !ok || o.seq < l {
				low[o.at.vol] = o.seq
			}
			high = max(high, o.seq)
			if sub.rejected != nil || o.kind == opDelete || o.kind == opCarry {
				dead[o.at.vol] += uint64(size)
			}
			if sub.rejected != nil {
				continue
			}
			if owner != nil {
				switch o.kind {
				case opPut:
					at = o.at.pack()
				case opDelete:
					// After a rebuild the store's table lists the records
					// until the owner has its own (NeedsReindex).
					if err := keys.Delete(kb); err != nil {
						return err
					}
				case opMove:
					value := o.rec[headerSize+len(o.key) : len(o.rec)-sumSize]
					moved, err := owner.Move(tx, o.key, value, o.old.pack(), o.at.pack())
					if err != nil {
						return err
					}
					if !moved {
						dead[o.at.vol] += uint64(size)
					}
				}
				continue
			}
			cur := keys.Get(kb)
			switch o.kind {
			case opPut:
				at = o.at.pack()
				if cur != nil {
					kill(o.key, cur)
				}
				if err := keys.Put(kb, o.at.encode()); err != nil {
					return err
				}
			case opDelete:
				if cur != nil {
					kill(o.key, cur)
					if err := keys.Delete(kb); err != nil {
						return err
					}
				}
			case opMove:
				if cur != nil && bytes.Equal(cur, o.old.encode()) {
					kill(o.key, cur)
					if err := keys.Put(kb, o.at.encode()); err != nil {
						return err
					}
				} else {
					dead[o.at.vol] += uint64(size)
				}
			}
		}
		if sub.rejected == nil && sub.also != nil {
			gone, err := sub.also(tx, at)
			if err != nil {
				return &alsoError{sub: sub, err: err}
			}
			for _, g := range gone {
				if l, err := decodeLoc(g[:]); err == nil && owner != nil {
					dead[l.vol] += uint64(l.size)
				}
			}
		}
	}
	return writeVolumeMeta(meta, ends, dead, low, high)
}

// writeVolumeMeta raises the volumes' ends to ends, adds dead to their dead
// bytes, lowers their lowest sequence numbers to low and raises the
// store's highest to high.
func writeVolumeMeta(meta *bolt.Bucket, ends map[uint32]int64, dead, low map[uint32]uint64, high uint64) error {
	for vol, e := range ends {
		k := metaKey('e', vol)
		if uint64(e) > getU64(meta, k) {
			if err := putU64(meta, k, uint64(e)); err != nil {
				return err
			}
		}
	}
	for vol, d := range dead {
		k := metaKey('d', vol)
		if err := putU64(meta, k, getU64(meta, k)+d); err != nil {
			return err
		}
	}
	for vol, l := range low {
		k := metaKey('m', vol)
		if meta.Get(k) == nil || l < getU64(meta, k) {
			if err := putU64(meta, k, l); err != nil {
				return err
			}
		}
	}
	if high > getU64(meta, metaSeq) {
		return putU64(meta, metaSeq, high)
	}
	return nil
}
