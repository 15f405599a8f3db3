package node

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"path/filepath"

	ds "github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"

	"github.com/filedrive-team/go-ds-cluster/volume"
)

func shardName(key string) ds.Key { return ShardKey(key) }

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
