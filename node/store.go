package node

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	ds "github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"
	bolt "go.etcd.io/bbolt"

	"github.com/filedrive-team/go-ds-cluster/index"
	"github.com/filedrive-team/go-ds-cluster/volume"
)

func shardName(key string) ds.Key { return ShardKey(key) }

// prevShardName is where the node keeps the shard of key's previous value
// when a newer version replaced it (keepPrev). No shard name can be a
// previous shard's name: ShardKey never yields a '-'.
func prevShardName(key string) ds.Key {
	return ds.RawKey("/PREV-" + ShardKey(key).String()[1:])
}

// legacyPrevName is where nodes kept key's previous shard before
// prevShardName: the shard name of the user key key+"\x00prev", so that
// key's own shard may sit there too. Whatever is there counts as key's
// previous shard only when its header names key (legacyPrev).
func legacyPrevName(key string) ds.Key { return ShardKey(legacyPrevKey(key)) }

// legacyPrevKey is the user key whose shard name is legacyPrevName(key).
func legacyPrevKey(key string) string { return key + "\x00prev" }

// ShardKey maps a user key to the shard store key: flatfs accepts only a
// small alphabet and file names are bounded, so the key is hashed. The shard
// header holds the full key, which Get checks.
func ShardKey(key string) ds.Key {
	sum := sha256.Sum256([]byte(key))
	return ds.RawKey("/" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}

// openStore opens the shard store the config names, under dir.
func openStore(dir, kind string, sync bool, volumeSize int64) (ds.Batching, error) {
	switch kind {
	case "volume":
		path := filepath.Join(dir, "volume")
		v, err := volume.Open(path, &volume.Options{NoSync: !sync, MaxVolumeSize: volumeSize})
		if err != nil {
			return nil, fmt.Errorf("open volume shard store %s: %w", path, err)
		}
		return v, nil
	case "flatfs", "":
		return openFlatfs(dir, sync)
	}
	return nil, fmt.Errorf("shard store %q is unknown (want flatfs or volume)", kind)
}

// openFlatfs opens (creating if needed) the flatfs shard store under dir.
func openFlatfs(dir string, sync bool) (ds.Batching, error) {
	path := filepath.Join(dir, "shards")
	fs, err := flatfs.CreateOrOpen(path, flatfs.NextToLast(2), sync)
	if err != nil {
		return nil, fmt.Errorf("open flatfs shard store %s: %w", path, err)
	}
	return fs, nil
}

// openIndex opens the node's index. With a volume shard store it lives in
// the store's database and commits with the shards (one group commit and
// its fsyncs per write instead of two), and vol is that store; an index a
// node kept in DIR/index.db before is moved in first. With any other store
// it is DIR/index.db.
func openIndex(dir string, store ds.Datastore, noSync bool) (idx *index.DB, vol *volume.Store, err error) {
	own := filepath.Join(dir, "index.db")
	vol, ok := store.(*volume.Store)
	if !ok {
		idx, err = index.Open(own, &index.Options{NoSync: noSync})
		return idx, nil, err
	}
	if idx, err = index.OpenIn(vol.DB(), nil); err != nil {
		return nil, nil, err
	}
	if err := adoptIndex(own, idx, vol.DB()); err != nil {
		return nil, nil, err
	}
	return idx, vol, nil
}

// Where adoptIndex notes, in the volume store's database, that the old
// index file's entries are in: a file that comes back after a crash (its
// rename not yet on disk) must not bring back entries deleted since.
var (
	bucketNode   = []byte("node")
	keyIndexMove = []byte("index.db moved in")
)

// adoptIndex copies the entries of the index file at path, if there is
// one, into idx, notes that durably in db, and renames the file to
// path.moved. A crash before the note leaves the file to copy again
// (copying is idempotent: an entry is stored once per version); after it,
// the file is only renamed.
func adoptIndex(path string, idx *index.DB, db *bolt.DB) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	var done bool
	if err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNode)
		done = b != nil && b.Get(keyIndexMove) != nil
		return nil
	}); err != nil {
		return fmt.Errorf("move %s into the volume store: %w", path, err)
	}
	moved := 0
	if !done {
		n, err := copyIndex(path, idx)
		if err == nil {
			err = db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(bucketNode)
				if err != nil {
					return err
				}
				return b.Put(keyIndexMove, []byte(time.Now().UTC().Format(time.RFC3339)))
			})
		}
		if err != nil {
			return fmt.Errorf("move %s into the volume store: %w", path, err)
		}
		moved = n
	}
	if err := os.Rename(path, path+".moved"); err != nil {
		return fmt.Errorf("move %s into the volume store: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("move %s into the volume store: %w", path, err)
	}
	log.Infow("moved the node index into the volume store", "entries", moved, "old file", path+".moved")
	return nil
}

// copyIndex puts every entry of the index file at path into idx.
func copyIndex(path string, idx *index.DB) (int, error) {
	old, err := index.Open(path, nil)
	if err != nil {
		return 0, err
	}
	defer old.Close()
	moved := 0
	for after := ""; ; {
		es, err := old.ListPrefix("", after, listLimit)
		if err == nil && len(es) > 0 {
			err = idx.PutMany(es)
		}
		if err != nil {
			return moved, err
		}
		if len(es) == 0 {
			return moved, nil
		}
		moved += len(es)
		after = es[len(es)-1].Key
	}
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
