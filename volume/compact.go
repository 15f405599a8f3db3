package volume

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// compactChunk bounds the bytes of records moved in one group commit.
const compactChunk = 8 << 20

type volStat struct {
	id        uint32
	end, dead uint64
}

// Compact rewrites the live records of every sealed volume (any but the
// active one) whose dead fraction is at least minGarbage into the active
// volume, then deletes those volumes. It returns the bytes of volume files
// removed. Writes and reads continue while it runs; a key overwritten or
// deleted during the move keeps its newer state. A live record that fails
// its checksum stops compaction of its volume, which is kept.
func (s *Store) Compact(ctx context.Context, minGarbage float64) (int64, error) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	s.appendMu.Lock()
	closed, active := s.closed, s.activeVol
	s.appendMu.Unlock()
	if closed {
		return 0, ErrClosed
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
				stats = append(stats, volStat{id: id, end: getU64(meta, k), dead: getU64(meta, metaKey('d', id))})
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("volume: compact: %w", err)
	}
	var reclaimed int64
	for _, st := range stats {
		if st.id >= active {
			continue
		}
		if st.end > 0 && float64(st.dead)/float64(st.end) < minGarbage {
			continue
		}
		n, err := s.compactVolume(ctx, st.id)
		reclaimed += n
		if err != nil {
			return reclaimed, err
		}
	}
	return reclaimed, nil
}

func (s *Store) compactVolume(ctx context.Context, vol uint32) (int64, error) {
	// Collect the entries pointing into vol. Sealed volumes get no new
	// entries, so one pass finds them all.
	type entry struct {
		key string
		at  loc
	}
	var live []entry
	err := s.scan(ctx, nil, func(k string, l loc) bool {
		if l.vol == vol {
			live = append(live, entry{k, l})
		}
		return true
	})
	if err != nil {
		return 0, err
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
	for _, e := range live {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		s.filesMu.RLock()
		rec, err := s.readRecord(e.key, e.at, nil)
		s.filesMu.RUnlock()
		if err == nil {
			_, err = decodeRecord(rec, e.key)
		}
		if err != nil {
			// The key may have moved on since the scan; only a record that
			// is still live blocks compaction.
			if l, ok, lerr := s.lookup(e.key); lerr == nil && (!ok || l != e.at) {
				continue
			}
			return 0, fmt.Errorf("volume: compact %s: key %s: %w", volName(vol), e.key, err)
		}
		ops = append(ops, op{kind: opMove, key: e.key, rec: rec, old: e.at})
		size += len(rec)
		if size >= compactChunk {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	// No entry points into vol now. Forget it in the index first, then
	// remove the file; Open removes a sealed volume the index does not know.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Delete(metaKey('e', vol)); err != nil {
			return err
		}
		return meta.Delete(metaKey('d', vol))
	}); err != nil {
		err = fmt.Errorf("volume: compact: index commit: %w", err)
		s.fence(err) // a failed index commit stops the store, as in a group's
		return 0, err
	}
	s.filesMu.Lock()
	f := s.files[vol]
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
