package volume

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	ds "github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"
)

const benchValue = 64 << 10

func benchKey(i int64) ds.Key { return ds.NewKey(fmt.Sprintf("/BENCH%010d", i)) }

// runWriters spreads b.N Puts over the given number of goroutines.
func runWriters(b *testing.B, writers int, put func(ds.Key, []byte) error) {
	val := make([]byte, benchValue)
	for i := range val {
		val[i] = byte(i * 7)
	}
	b.SetBytes(benchValue)
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := put(benchKey(i), val); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkPut_64K_Sync_16Writers(b *testing.B) {
	s := openT(b, b.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	runWriters(b, 16, func(k ds.Key, v []byte) error { return s.Put(ctx, k, v) })
}

func BenchmarkPut_64K_Sync_1Writer(b *testing.B) {
	s := openT(b, b.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	runWriters(b, 1, func(k ds.Key, v []byte) error { return s.Put(ctx, k, v) })
}

func BenchmarkPut_64K_Flatfs_Sync_16Writers(b *testing.B) {
	fs, err := flatfs.CreateOrOpen(b.TempDir(), flatfs.NextToLast(2), true)
	if err != nil {
		b.Fatal(err)
	}
	defer fs.Close()
	ctx := context.Background()
	runWriters(b, 16, func(k ds.Key, v []byte) error { return fs.Put(ctx, k, v) })
}

func BenchmarkPut_64K_Flatfs_Sync_1Writer(b *testing.B) {
	fs, err := flatfs.CreateOrOpen(b.TempDir(), flatfs.NextToLast(2), true)
	if err != nil {
		b.Fatal(err)
	}
	defer fs.Close()
	ctx := context.Background()
	runWriters(b, 1, func(k ds.Key, v []byte) error { return fs.Put(ctx, k, v) })
}

const getKeys = 2000

func benchGet(b *testing.B, d ds.Datastore) {
	ctx := context.Background()
	val := make([]byte, benchValue)
	for i := int64(0); i < getKeys; i++ {
		if err := d.Put(ctx, benchKey(i), val); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchValue)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int64(0)
		for pb.Next() {
			if _, err := d.Get(ctx, benchKey(i%getKeys)); err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}

func BenchmarkGet_64K(b *testing.B) {
	s := openT(b, b.TempDir(), &Options{NoSync: true})
	defer s.Close()
	benchGet(b, s)
}

func BenchmarkGet_64K_Flatfs(b *testing.B) {
	fs, err := flatfs.CreateOrOpen(b.TempDir(), flatfs.NextToLast(2), false)
	if err != nil {
		b.Fatal(err)
	}
	defer fs.Close()
	benchGet(b, fs)
}
