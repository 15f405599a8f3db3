package node

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	flatfs "github.com/ipfs/go-ds-flatfs"
	bolt "go.etcd.io/bbolt"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/mongods"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/volume"
)

// shardName is where key's shard of version v at position pos lives in the
// shard store: the key hashed (flatfs takes a small alphabet and bounded
// names), then version and position, so that every shard a node keeps has
// a name of its own and keeping or dropping one moves no bytes. Reads
// check the full key, version and position in the shard's header.
func shardName(key string, v index.Version, pos uint8) ds.Key {
	b := make([]byte, 0, 1+nameHashLen+1+16+16+2)
	b = appendNamePrefix(append(b, '/'), key)
	b = appendHex(appendHex(appendHex(b, v.HLC, 16), v.Writer, 16), uint64(pos), 2)
	return ds.RawKey(string(b))
}

// nameHashLen is the length of a key's hash in shard names.
var nameHashLen = nameEncoding.EncodedLen(sha256.Size)

var nameEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// ShardNamePrefix is what the shard store names of every version of key
// begin with (after the leading slash): the hashed key and a '-'.
func ShardNamePrefix(key string) string {
	return string(appendNamePrefix(nil, key))
}

func appendNamePrefix(b []byte, key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return append(nameEncoding.AppendEncode(b, sum[:]), '-')
}

// appendHex appends the low digits hex digits of v, upper-case.
func appendHex(b []byte, v uint64, digits int) []byte {
	const hex = "0123456789ABCDEF"
	for i := digits - 1; i >= 0; i-- {
		b = append(b, hex[(v>>(4*i))&0xf])
	}
	return b
}

// A shardStore keeps a node's shard bytes and commits them with the
// node's index.
type shardStore interface {
	// commit makes one change durable: raw, key's shard in, stored (unless
	// raw is nil), key's shards in drop deleted, and indexTx run, with
	// where raw went (Held.Loc), in a write transaction of the index;
	// indexTx returns the places of the shards it dropped. No entry ever
	// names a missing shard.
	commit(ctx context.Context, key string, raw []byte, in index.Held, drop []index.Held, indexTx indexChange) error
	// get reads key's shard h, into buf when the store can.
	get(ctx context.Context, key string, h index.Held, buf []byte) (raw, grown []byte, err error)
	// checked reports whether get verifies the bytes it returns against
	// a checksum of its own, so that the shard's needs no second pass.
	checked() bool
}

// An indexChange changes the index in tx, given where the change's shard
// went, and returns the places (Held.Loc) of the shards it dropped.
type indexChange func(tx *bolt.Tx, at [16]byte) (gone [][16]byte, err error)

// volumeShards is the volume store: the index lives in its database and
// is the store's table of where shards are (shardOwner), and a change
// (records, drops, index entries) is one group commit.
type volumeShards struct{ v *volume.Store }

func (s volumeShards) commit(ctx context.Context, key string, raw []byte, in index.Held, drop []index.Held, indexTx indexChange) error {
	name := ds.Key{}
	if raw != nil {
		name = shardName(key, in.Version, in.Index)
	}
	return s.v.CommitWith(ctx, name, raw, shardNames(key, drop), indexTx)
}

// shardNames are the names of key's shards hs.
func shardNames(key string, hs []index.Held) []ds.Key {
	names := make([]ds.Key, len(hs))
	for i, h := range hs {
		names[i] = shardName(key, h.Version, h.Index)
	}
	return names
}

func (s volumeShards) get(ctx context.Context, key string, h index.Held, buf []byte) ([]byte, []byte, error) {
	return s.v.GetAt(shardName(key, h.Version, h.Index), h.Loc, buf) // the record's checksum covers the shard
}

func (volumeShards) checked() bool { return true }

// shardOwner is the node's index as the volume store's table of where its
// records are: compaction asks it which records are live and moves them.
type shardOwner struct{ idx atomic.Pointer[index.DB] }

// OpenVolume opens the volume shard store in dir as a node keeps it: with
// the node's index as its table of records (volume.Owner).
func OpenVolume(dir string, opts volume.Options) (*volume.Store, error) {
	opts.Owner = &shardOwner{}
	return volume.Open(dir, &opts)
}

// keyOf is the key of the shard a record holds, and the index it is in;
// "" for a record that is no shard, which no entry names.
func (o *shardOwner) keyOf(name string, value []byte) (string, *index.DB, error) {
	idx := o.idx.Load()
	if idx == nil {
		return "", nil, errors.New("the node's index is not open")
	}
	sh, err := coding.ParseShardUnverified(value)
	if err != nil {
		log.Warnw("compaction: a record that is no shard: dropped", "name", name, "err", err)
		return "", idx, nil
	}
	return sh.Header.Key, idx, nil
}

// Holds reports whether key's entry names the record at at. An entry
// that does not decode names nothing: scrub purges it, and repair refills
// its shards.
func (o *shardOwner) Holds(name string, value []byte, at volume.Loc) (bool, error) {
	key, idx, err := o.keyOf(name, value)
	if key == "" {
		return false, err
	}
	e, err := idx.Get(key)
	switch {
	case errors.Is(err, index.ErrNotFound), errors.Is(err, index.ErrCorrupt):
		return false, nil
	case err != nil:
		return false, err
	}
	return slices.ContainsFunc(e.Shards(), func(h index.Held) bool { return h.Loc == at }), nil
}

func (o *shardOwner) Move(tx *bolt.Tx, name string, value []byte, from, to volume.Loc) (bool, error) {
	key, idx, err := o.keyOf(name, value)
	if key == "" {
		return false, err
	}
	moved, err := idx.MoveTx(tx, key, from, to)
	if errors.Is(err, index.ErrCorrupt) {
		return false, nil // as Holds
	}
	return moved, err
}

// datastoreShards is any other go-datastore (flatfs, Options.Store), with
// the index in a file of its own: a change stores the shard, commits the
// index, then deletes. A crash or a failed delete leaves a shard no entry
// names: dead space, never served.
type datastoreShards struct {
	d   ds.Datastore
	idx *index.DB
}

func (s datastoreShards) commit(ctx context.Context, key string, raw []byte, in index.Held, drop []index.Held, indexTx indexChange) error {
	if raw != nil {
		if err := s.d.Put(ctx, shardName(key, in.Version, in.Index), raw); err != nil {
			return err // the caller names the shard store
		}
	}
	if err := s.idx.Update(func(tx *bolt.Tx) error {
		_, err := indexTx(tx, [16]byte{})
		return err
	}); err != nil {
		return err
	}
	for _, h := range drop {
		k := shardName(key, h.Version, h.Index)
		if err := s.d.Delete(ctx, k); err != nil && !errors.Is(err, ds.ErrNotFound) {
			log.Warnw("delete a shard no entry names any more: its file stays, unused", "name", k.String(), "err", err)
		}
	}
	return nil
}

func (s datastoreShards) get(ctx context.Context, key string, h index.Held, buf []byte) ([]byte, []byte, error) {
	raw, err := s.d.Get(ctx, shardName(key, h.Version, h.Index))
	return raw, buf, err
}

func (datastoreShards) checked() bool { return false }

// openStore opens the shard store the config names: under opts.Dir, or
// in MongoDB, a collection named after the node in the URI's database (by
// default one named after the cluster).
func openStore(ctx context.Context, cfg *config.Node, opts Options) (ds.Batching, error) {
	switch cfg.Store {
	case "volume":
		path := filepath.Join(opts.Dir, "volume")
		v, err := OpenVolume(path, volume.Options{NoSync: opts.NoSync, MaxVolumeSize: opts.VolumeSize})
		if err != nil {
			return nil, fmt.Errorf("open volume shard store %s: %w", path, err)
		}
		return v, nil
	case "flatfs", "":
		return openFlatfs(opts.Dir, !opts.NoSync)
	case "mongodb":
		if opts.MongoDB == "" {
			return nil, errors.New("this node keeps its shards in MongoDB: give its URI (dscluster --mongodb=URI)")
		}
		id, err := config.PeerIDOf(cfg.PrivKey)
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		d, err := mongods.Open(ctx, opts.MongoDB, mongods.Options{Database: "dscluster-" + cfg.Cluster.ID, Collection: id.String()})
		if err != nil {
			return nil, err // not a nil *Datastore in the interface
		}
		return d, nil
	}
	return nil, fmt.Errorf("shard store %q is unknown (want volume, flatfs or mongodb)", cfg.Store)
}

// shardDirs spreads a new flatfs store's files over 1,024 directories by
// the first two characters of their names, the key's hash. flatfs's usual
// next-to-last/2 would take the names' end, the writer's ID and position,
// and put every shard one writer stored in one directory.
var shardDirs = flatfs.Prefix(2)

// openFlatfs opens (creating if needed) the flatfs shard store under dir.
// A store made before shardDirs keeps the sharding it was made with.
func openFlatfs(dir string, sync bool) (ds.Batching, error) {
	path := filepath.Join(dir, "shards")
	fun := shardDirs
	if made, err := flatfs.ReadShardFunc(path); err == nil {
		fun = made
	}
	fs, err := flatfs.CreateOrOpen(path, fun, sync)
	if err != nil {
		return nil, fmt.Errorf("open flatfs shard store %s: %w", path, err)
	}
	return fs, nil
}

// openIndex opens the node's index (in a volume store's database, else
// DIR/index.db) and the shardStore over store.
func openIndex(dir string, store ds.Datastore, noSync bool) (*index.DB, shardStore, error) {
	own := filepath.Join(dir, "index.db")
	vol, ok := store.(*volume.Store)
	if !ok {
		idx, err := index.Open(own, &index.Options{NoSync: noSync})
		if err != nil {
			return nil, nil, err
		}
		if err := sameStore(store, idx); err != nil {
			idx.Close()
			return nil, nil, err
		}
		return idx, datastoreShards{d: store, idx: idx}, nil
	}
	if _, err := os.Stat(own); err == nil {
		// An index.db beside a volume store is an older layout.
		return nil, nil, fmt.Errorf("%s beside a volume shard store: %w", own, index.ErrOldFormat)
	}
	owner, ok := vol.Owner().(*shardOwner)
	if !ok {
		return nil, nil, errors.New("a volume shard store opened without node.OpenVolume: its records are not in the node's index")
	}
	idx, err := index.OpenIn(vol.DB(), nil)
	if err != nil {
		return nil, nil, err
	}
	owner.idx.Store(idx)
	if vol.NeedsReindex() {
		if err := reindex(context.Background(), vol, idx); err != nil {
			return nil, nil, fmt.Errorf("rebuild the index from the shards: %w", err)
		}
	}
	return idx, volumeShards{v: vol}, nil
}

// sameStore refuses a shard store that holds nothing under an index that
// names keys: another store than the one the index was written with (a
// MongoDB URI naming another database, a shards folder moved away). Served,
// its reads would fail and scrub would empty the index. A store that
// cannot answer yet is not checked.
func sameStore(store ds.Datastore, idx *index.DB) error {
	st, err := idx.Stats()
	if err != nil || st.Keys+st.Tombstones == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := store.Query(ctx, query.Query{KeysOnly: true, Limit: 1})
	if err == nil {
		defer res.Close()
		r, ok := res.NextSync()
		if !ok {
			return fmt.Errorf("the index names %d keys but the shard store holds none: is it the store this node used before? (with MongoDB: the URI's database)", st.Keys+st.Tombstones)
		}
		err = r.Error
	}
	if err != nil {
		log.Warnw("cannot check that the shard store is the index's", "err", err)
	}
	return nil
}

// reindex rebuilds the index from the shards in vol, after vol rebuilt its
// own database. A key's entry holds its newest version's shards and, as
// writes keep them (keepOlder), up to index.MaxOlder older ones, tombstones
// too; other shards, and those that do not parse, are dropped. Names sort
// by key hash, then version and position, so each key's shards come together.
func reindex(ctx context.Context, vol *volume.Store, idx *index.DB) error {
	res, err := vol.Query(ctx, query.Query{})
	if err != nil {
		return err
	}
	defer res.Close()
	var (
		group   []index.Held // the shards of one key, oldest first
		key     string       // and its key
		entries []index.Entry
		drop    []ds.Key     // shards no entry takes
		places  []volume.Loc // and where they are
		keys    int
	)
	gone := func(name ds.Key, at volume.Loc) { drop, places = append(drop, name), append(places, at) }
	flush := func(force bool) error {
		if !force && len(entries)+len(drop) < 1000 {
			return nil
		}
		err := vol.CommitWith(ctx, ds.Key{}, nil, drop, func(tx *bolt.Tx, _ volume.Loc) ([]volume.Loc, error) {
			for _, e := range entries {
				if _, err := idx.ReplaceTx(tx, e); err != nil {
					return nil, err
				}
			}
			return places, nil
		})
		entries, drop, places = entries[:0], drop[:0], places[:0]
		return err
	}
	endGroup := func() {
		n := len(group)
		if n == 0 {
			return
		}
		newest := group[n-1].Version
		var hs []index.Held
		older := 0
		for i := n - 1; i >= 0; i-- {
			if group[i].Version != newest {
				if older == index.MaxOlder {
					for _, h := range group[:i+1] {
						gone(shardName(key, h.Version, h.Index), h.Loc)
					}
					break
				}
				older++
			}
			hs = append(hs, group[i])
		}
		e, _ := index.NewEntry(key, placement.Slot(key), hs)
		entries = append(entries, e)
		group = group[:0]
		keys++
	}
	prefix := ""
	for r := range res.Next() {
		if r.Error != nil {
			return r.Error
		}
		name := ds.RawKey(r.Key)
		at, _, err := vol.Locate(name)
		if err != nil {
			return err
		}
		sh, err := coding.ParseShard(r.Value)
		if err != nil || shardName(sh.Header.Key, toIndexVersion(sh.Header.Version), sh.Header.Index) != name {
			log.Warnw("reindex: a shard that does not parse or is misnamed: dropped", "name", r.Key, "err", err)
			gone(name, at)
			continue
		}
		if p := ShardNamePrefix(sh.Header.Key); p != prefix {
			endGroup()
			prefix, key = p, sh.Header.Key
		}
		h := heldOf(sh)
		h.Loc = at
		group = append(group, h)
		if err := flush(false); err != nil {
			return err
		}
	}
	endGroup()
	if err := flush(true); err != nil {
		return err
	}
	log.Infow("index rebuilt from the shards", "keys", keys)
	return vol.ReindexDone()
}
