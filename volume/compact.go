package volume

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// compactChunk bounds the bytes of records moved in one group commit.
const compactChunk = 8 << 20

type volStat struct {
	id             uint32
	end, dead, low uint64
}

// Compact rewrites the live records of every sealed volume (any but the
// active one) whose dead fraction is at least minGarbage into the active
// volume, then deletes those volumes. It returns the bytes of volume files
// removed. Writes and reads continue while it runs; a key overwritten or
// deleted during the move keeps its newer state. A record that fails its
// checksum stops compaction of its volume, which is kept.
//
// A delete record is copied too while it may still hide an older record of
// its key from a rebuild: its key has no value now, and another volume
// holds records older than it.
func (s *Store) Compact(ctx context.Context, minGarbage float64) (int64, error) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	s.appendMu.Lock()
	closed, active := s.closed, s.activeVol
	s.appendMu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	if s.reindex && s.opts.Owner != nil {
		// The owner's table does not hold what the rebuild found yet:
		// asked, it would call every record dead.
		return 0, errors.New("volume: compact: the owner has not rebuilt its table since the store's rebuild (NeedsReindex)")
	}
	// A write may have been appended to a now sealed volume and still be
	// waiting for its index commit: the scan below would miss it and the
	// volume would go with its record. An empty submission queued now
	// commits after every earlier one, so once it returns every record in
	// a volume below active is in the index.
	if err := s.apply(nil, nil); err != nil {
		return 0, fmt.Errorf("volume: compact: %w", err)
	}
	var stats []volStat
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		return meta.ForEach(func(k, v []byte) error {
			if len(k) == 5 && k[0] == 'e' {
				id := binary.BigEndian.Uint32(k[1:])
				stats = append(stats, volStat{id: id, end: getU64(meta, k), dead: getU64(meta, metaKey('d', id)), low: getU64(meta, metaKey('m', id))})
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("volume: compact: %w", err)
	}
	var reclaimed int64
	for i, st := range stats {
		if st.id >= active {
			continue
		}
		if st.end > 0 && float64(st.dead)/float64(st.end) < minGarbage {
			continue
		}
		older := uint64(math.MaxUint64) // the lowest sequence number elsewhere
		for j, o := range stats {
			if j != i && o.end > 0 {
				older = min(older, o.low)
			}
		}
		n, err := s.compactVolume(ctx, st, older)
		reclaimed += n
		if err != nil {
			return reclaimed, err
		}
		stats[i].end = 0 // gone
	}
	return reclaimed, nil
}

func (s *Store) compactVolume(ctx context.Context, st volStat, older uint64) (int64, error) {
	vol := st.id
	s.filesMu.RLock()
	f := s.files[vol]
	s.filesMu.RUnlock()
	if f == nil {
		return 0, fmt.Errorf("volume: compact: %s is not open", volName(vol))
	}
	var ops []op
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := s.apply(ops, nil)
		ops, size = nil, 0
		return err
	}
	end, err := scanVolume(f, 0, func(off int64, rec []byte, h header) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := string(recordKey(rec, h))
		here := loc{vol: vol, off: off, size: uint32(len(rec))}
		live, points, err := s.points(key, rec, h, here)
		if err != nil {
			return err
		}
		switch {
		case h.kind == kindPut && points:
			ops = append(ops, op{kind: opMove, key: key, rec: slices.Clone(rec), old: here})
		case h.kind == kindDelete && !live && older < h.seq:
			ops = append(ops, op{kind: opCarry, key: key, rec: slices.Clone(rec)})
		default:
			return nil
		}
		size += len(rec)
		if size >= compactChunk {
			return flush()
		}
		return nil
	})
	if err == nil && uint64(end) < st.end {
		err = fmt.Errorf("%w: the record at %d does not check out", ErrCorrupt, end)
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		return 0, fmt.Errorf("volume: compact %s: %w", volName(vol), err)
	}
	// No entry points into vol now. Forget it in the index first, then
	// remove the file; Open removes a sealed volume the index does not know.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for _, kind := range []byte{'e', 'd', 'm'} {
			if err := meta.Delete(metaKey(kind, vol)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		err = fmt.Errorf("volume: compact: index commit: %w", err)
		s.fence(err) // a failed index commit stops the store, as in a group's
		return 0, err
	}
	s.filesMu.Lock()
	f = s.files[vol]
	delete(s.files, vol)
	s.filesMu.Unlock()
	var size64 int64
	if f != nil {
		if st, err := f.Stat(); err == nil {
			size64 = st.Size()
		}
		f.Close()
	}
	if err := os.Remove(filepath.Join(s.dir, volName(vol))); err != nil && !os.IsNotExist(err) {
		return 0, fmt.Errorf("volume: compact: %w", err)
	}
	if err := s.syncDir(); err != nil {
		s.fence(err) // as a roll's failed directory sync does
		return size64, err
	}
	return size64, nil
}

// points reports whether key has a value (live) and whether the table
// points at its record rec, at l: the store's own, or the Owner's, for
// which a delete record's key has no value either.
func (s *Store) points(key string, rec []byte, h header, l loc) (live, points bool, err error) {
	if s.opts.Owner == nil {
		cur, live, err := s.lookup(key)
		return live, live && cur == l, err
	}
	if h.kind != kindPut {
		return false, false, nil
	}
	points, err = s.opts.Owner.Holds(key, rec[headerSize+h.keyLen:len(rec)-sumSize], l.pack())
	return points, points, err
}
