package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cespare/xxhash/v2"
	bolt "go.etcd.io/bbolt"
)

// SumKey names one group of a node's entries: those of one slot, one
// policy and one shard position.
type SumKey struct {
	Slot       uint16
	Kind, K, M uint8 // the entries' policy
	Pos        uint8 // the shard index they hold
}

// Sum summarises a group of entries: how many, and the XOR of a hash of
// each entry's key, version, tombstone flag and policy. Two nodes whose
// groups for a slot and policy have equal sums hold the same keys at the
// same versions (up to 64-bit hash collisions), whatever positions they
// hold. The repair worker compares them instead of listing every key.
// Older counts the entries that keep older versions beside their newest:
// garbage once the newest is whole, which the repair worker drops.
type Sum struct {
	Count uint64
	XOR   uint64
	Older uint64
}

// sums keeps the Sum of every group in memory. They are computed from the
// entries when the index opens and follow every committed change (bbolt's
// commit handlers, so an aborted transaction changes nothing).
type sums struct {
	mu       sync.Mutex
	groups   map[SumKey]Sum
	loadedAt uint64 // the transaction id load read at: changes up to it are in groups
	err      error  // set while the sums are not known (an entry that does not decode)
}

func sumKey(e Entry, h Held) SumKey {
	return SumKey{Slot: e.Slot, Kind: h.Kind, K: h.K, M: h.M, Pos: h.Index}
}

// addEntry adds to groups (sign 1) or takes from them (sign -1) entry e:
// each position of its newest version counts in its group.
func addEntry(groups map[SumKey]Sum, e Entry, sign uint64) {
	h, older := entryHash(e), olderOf(e)
	for _, s := range e.Newest() {
		k := sumKey(e, s)
		g := groups[k]
		g.Count += sign
		g.XOR ^= h
		g.Older += sign * older
		// Handlers run out of order, so a count may pass through 0 with
		// changes still pending: only an empty XOR means an empty group.
		if g.Count == 0 && g.XOR == 0 && g.Older == 0 {
			delete(groups, k)
			continue
		}
		groups[k] = g
	}
}

// entryHash is what two owners of an entry's key agree on: not the
// position, the shard length or its checksum, which differ per shard.
func entryHash(e Entry) uint64 {
	var b [2 + 3 + 1 + 16]byte
	binary.BigEndian.PutUint16(b[0:], e.Slot)
	b[2], b[3], b[4] = e.Kind, e.K, e.M
	if e.Tombstone {
		b[5] = 1
	}
	binary.BigEndian.PutUint64(b[6:], e.Version.HLC)
	binary.BigEndian.PutUint64(b[14:], e.Version.Writer)
	d := xxhash.New()
	_, _ = d.Write(b[:])
	_, _ = d.WriteString(e.Key)
	return d.Sum64()
}

// change records that old (if non-nil) left the index and e (if non-nil)
// entered it, once tx commits. Commit handlers run after bbolt releases
// its lock, so they may run out of order; adding and removing commute,
// and a change that a later load already saw is skipped.
func (s *sums) change(tx *bolt.Tx, old, e *Entry) {
	id := uint64(tx.ID())
	tx.OnCommit(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if id <= s.loadedAt {
			return
		}
		if old != nil {
			addEntry(s.groups, *old, ^uint64(0))
		}
		if e != nil {
			addEntry(s.groups, *e, 1)
		}
	})
}

// olderOf is 1 for an entry that keeps older versions, else 0.
func olderOf(e Entry) uint64 {
	if len(e.Older) > 0 {
		return 1
	}
	return 0
}

// load computes every group's sum from the entries bucket, in tx, a write
// transaction the caller rolls back: no other transaction commits during
// the scan, so the changes of those committed before it (whose handlers
// may still be pending) are in the scan and skipped, and all later ones
// are applied. An entry that does not decode leaves the sums unknown
// (Sums fails) until Delete purges it.
func (s *sums) load(tx *bolt.Tx, entries []byte) {
	groups := map[SumKey]Sum{}
	var bad error
	err := tx.Bucket(entries).ForEach(func(k, v []byte) error {
		e, err := decodeEntry(string(k), v)
		if err != nil {
			bad = err
			return nil
		}
		addEntry(groups, e, 1)
		return nil
	})
	if err == nil {
		err = bad
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups, s.err, s.loadedAt = groups, err, uint64(tx.ID())-1 // a write tx has the next id
}

// errSumsUnknown wraps why Sums cannot answer.
var errSumsUnknown = errors.New("slot sums unknown")

// Sums returns the sum of every group of entries the index holds. It
// fails while an entry does not decode (its slot is unknown); Delete
// purges such an entry.
func (db *DB) Sums() (map[SumKey]Sum, error) {
	db.sums.mu.Lock()
	defer db.sums.mu.Unlock()
	if db.sums.err != nil {
		return nil, fmt.Errorf("index: %s: %w: %w", db.path, errSumsUnknown, db.sums.err)
	}
	out := make(map[SumKey]Sum, len(db.sums.groups))
	for k, v := range db.sums.groups {
		out[k] = v
	}
	return out, nil
}
