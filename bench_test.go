package dscluster_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	ds "github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"

	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// The cluster benchmarks run a whole 6-node 4+2 cluster in this process,
// with fsync on, next to a raw flatfs with fsync on: compare the two in one
// run (go test -bench 'Put_|Get_' -run '^$').

func benchValue(b *testing.B, n int) []byte {
	v := make([]byte, n)
	if _, err := rand.Read(v); err != nil {
		b.Fatal(err)
	}
	return v
}

func benchPut(b *testing.B, d ds.Datastore, size int) {
	ctx := context.Background()
	val := benchValue(b, size)
	var n atomic.Int64
	b.SetBytes(int64(size))
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := ds.RawKey(fmt.Sprintf("/BENCHPUT_%09d", n.Add(1)))
			if err := d.Put(ctx, k, val); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchGet(b *testing.B, d ds.Datastore, size int) {
	ctx := context.Background()
	val := benchValue(b, size)
	const keys = 256
	for i := 0; i < keys; i++ {
		if err := d.Put(ctx, ds.RawKey(fmt.Sprintf("/BENCHGET_%04d", i)), val); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetBytes(int64(size))
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			got, err := d.Get(ctx, ds.RawKey(fmt.Sprintf("/BENCHGET_%04d", n.Add(1)%keys)))
			if err != nil || len(got) != size {
				b.Errorf("get: %d bytes, %v", len(got), err)
				return
			}
		}
	})
}

func flatfsStore(b *testing.B) ds.Batching {
	fs, err := flatfs.CreateOrOpen(filepath.Join(b.TempDir(), "flatfs"), flatfs.NextToLast(2), true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fs.Close() })
	return fs
}

func clusterStore(b *testing.B, store string) ds.Datastore {
	c := clustertest.Start(b, clustertest.Options{Sync: true, Store: store})
	return c.Client(nil)
}

func BenchmarkFlatfsPut_256K(b *testing.B)      { benchPut(b, flatfsStore(b), 256<<10) }
func BenchmarkClusterPut_4x2x256K(b *testing.B) { benchPut(b, clusterStore(b, "flatfs"), 256<<10) }
func BenchmarkClusterPutVolume_4x2x256K(b *testing.B) {
	benchPut(b, clusterStore(b, "volume"), 256<<10)
}
func BenchmarkFlatfsGet_256K(b *testing.B)      { benchGet(b, flatfsStore(b), 256<<10) }
func BenchmarkClusterGet_4x2x256K(b *testing.B) { benchGet(b, clusterStore(b, "flatfs"), 256<<10) }
func BenchmarkClusterGetVolume_4x2x256K(b *testing.B) {
	benchGet(b, clusterStore(b, "volume"), 256<<10)
}
