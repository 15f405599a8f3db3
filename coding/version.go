package coding

import (
	"math"
	"strconv"
	"sync"
	"time"
)

// Version orders the writes of one key: the hybrid logical clock first,
// then the writer id to break ties between writers. The zero Version is
// older than every version a Clock returns.
type Version struct {
	HLC    uint64 // physical milliseconds << 16 | logical counter
	Writer uint64 // id of the front end that wrote
}

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	if v.HLC != o.HLC {
		return v.HLC < o.HLC
	}
	return v.Writer < o.Writer
}

// IsZero reports whether v is the zero Version.
func (v Version) IsZero() bool { return v == Version{} }

// String formats v as "ms.logical@writer", writer in hex, for logs.
func (v Version) String() string {
	b := make([]byte, 0, 40)
	b = strconv.AppendUint(b, v.HLC>>16, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, v.HLC&0xffff, 10)
	b = append(b, '@')
	b = strconv.AppendUint(b, v.Writer, 16)
	return string(b)
}

// Clock is a hybrid logical clock: each HLC is the physical time in
// milliseconds shifted left 16 bits, or one more than the last HLC issued or
// observed, whichever is larger. So versions follow wall time when clocks
// agree and stay strictly increasing when time stands still, goes back, or
// another writer is ahead. Safe for concurrent use.
type Clock struct {
	writer uint64
	now    func() time.Time

	mu   sync.Mutex
	last uint64
}

// NewClock returns a Clock that stamps versions with writer. now supplies
// the physical time (tests inject it); nil means time.Now.
func NewClock(writer uint64, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{writer: writer, now: now}
}

// Next returns a Version whose HLC is strictly greater than every HLC this
// Clock returned or observed before. (Only if an observed HLC reached
// math.MaxUint64 does the clock saturate and repeat it.)
func (c *Clock) Next() Version {
	pt := HLCAt(c.now())
	c.mu.Lock()
	switch {
	case pt > c.last:
		c.last = pt
	case c.last < math.MaxUint64:
		c.last++
	}
	h := c.last
	c.mu.Unlock()
	return Version{HLC: h, Writer: c.writer}
}

// Observe moves the clock past v.HLC, so the next version this Clock issues
// orders after v. Call it with each version read or received.
func (c *Clock) Observe(v Version) {
	c.mu.Lock()
	if v.HLC > c.last {
		c.last = v.HLC
	}
	c.mu.Unlock()
}

// HLCAt is the hybrid logical clock value of wall time t, logical counter
// zero: every version written at or after t is at least this.
func HLCAt(t time.Time) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	if uint64(ms) > math.MaxUint64>>16 {
		return math.MaxUint64 &^ 0xffff
	}
	return uint64(ms) << 16
}
