package dscluster

import (
	"testing"
	"time"
)

// TestDegradedLogIsRateLimited: the first write below full redundancy is
// logged, the next ones within degradedLogEvery are counted, and the first
// after it is logged with that count.
func TestDegradedLogIsRateLimited(t *testing.T) {
	var l degradedLog
	t0 := time.Unix(1000, 0)
	if n, ok := l.admit(t0); !ok || n != 0 {
		t.Fatalf("first: logged %v with %d unsaid, want true, 0", ok, n)
	}
	for i := 1; i <= 99; i++ {
		if _, ok := l.admit(t0.Add(time.Duration(i) * degradedLogEvery / 100)); ok {
			t.Fatalf("write %d within the interval was logged", i)
		}
	}
	if n, ok := l.admit(t0.Add(degradedLogEvery)); !ok || n != 99 {
		t.Fatalf("after the interval: logged %v with %d unsaid, want true, 99", ok, n)
	}
	if _, ok := l.admit(t0.Add(degradedLogEvery + time.Second)); ok {
		t.Fatal("logged again one second after the last line")
	}
	l.flush() // (logs the one unsaid write)
	if l.unsaid != 0 {
		t.Fatalf("%d writes still unsaid after flush", l.unsaid)
	}
}
