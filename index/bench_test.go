package index

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// benchEntry is a typical entry: a 256 KiB block stored 4+2.
func benchEntry(i uint64) Entry {
	return Entry{Key: fmt.Sprintf("/blocks/CIQ%016x", i), Slot: uint16(i), Held: Held{Index: 2, Kind: 1, K: 4, M: 2, ValueLen: 256 << 10, ShardLen: 64 << 10, ShardSum: i, Version: Version{HLC: i, Writer: 1}}}
}

func benchPut(b *testing.B, opts *Options, writers int) {
	db := openTest(b, "", opts)
	var n atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	put := func() {
		if _, err := db.Put(benchEntry(n.Add(1))); err != nil {
			b.Error(err)
		}
	}
	if writers == 1 {
		for i := 0; i < b.N; i++ {
			put()
		}
	} else {
		b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				put()
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// BenchmarkPut_Sync_1Writer: one caller, so every Put waits out
// MaxBatchDelay and pays its own fsync.
func BenchmarkPut_Sync_1Writer(b *testing.B) { benchPut(b, nil, 1) }

// BenchmarkPut_Sync_16Writers: 16 callers share commits and fsyncs.
func BenchmarkPut_Sync_16Writers(b *testing.B) { benchPut(b, nil, 16) }

// BenchmarkPut_NoSync: the CPU cost of a Put, one caller, no fsync.
func BenchmarkPut_NoSync(b *testing.B) { benchPut(b, &Options{NoSync: true}, 1) }
