package coding

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kind says how a value is made redundant.
type Kind uint8

const (
	KindErasure Kind = 1 // k data + m parity shards via Reed-Solomon
	KindReplica Kind = 2 // whole copies; DataShards==1, ParityShards==r-1
)

func (k Kind) String() string {
	switch k {
	case KindErasure:
		return "erasure"
	case KindReplica:
		return "replica"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MaxWidth is the largest number of shards (nodes) a Policy may use. The
// shard index is one byte in the header.
const MaxWidth = 255

// Policy is the redundancy of one value: k data shards and m parity shards
// (erasure), or r = 1+m whole copies (replica). Either way any k of the
// Width shards are enough to read the value back, and m shards may be lost.
type Policy struct {
	Kind         Kind `json:"kind"`
	DataShards   int  `json:"data_shards"`   // k (1 for replica)
	ParityShards int  `json:"parity_shards"` // m (r-1 for replica)
}

// Erasure returns the k+m Reed-Solomon policy. It does not validate.
func Erasure(k, m int) Policy { return Policy{Kind: KindErasure, DataShards: k, ParityShards: m} }

// Replicas returns the policy of r whole copies. It does not validate.
func Replicas(r int) Policy { return Policy{Kind: KindReplica, DataShards: 1, ParityShards: r - 1} }

// Width is the number of shards, and so of distinct nodes, a value takes: k+m.
func (p Policy) Width() int { return p.DataShards + p.ParityShards }

// Validate returns an error wrapping ErrBadPolicy unless k >= 1, m >= 0 and
// k+m <= MaxWidth, and for a replica policy k == 1.
func (p Policy) Validate() error {
	switch p.Kind {
	case KindErasure, KindReplica:
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrBadPolicy, p.Kind)
	}
	if p.DataShards < 1 || p.ParityShards < 0 {
		return fmt.Errorf("%w: %d data and %d parity shards", ErrBadPolicy, p.DataShards, p.ParityShards)
	}
	if p.DataShards > MaxWidth || p.ParityShards > MaxWidth || p.Width() > MaxWidth {
		return fmt.Errorf("%w: width %d+%d exceeds %d", ErrBadPolicy, p.DataShards, p.ParityShards, MaxWidth)
	}
	if p.Kind == KindReplica && p.DataShards != 1 {
		return fmt.Errorf("%w: replica policy with %d data shards", ErrBadPolicy, p.DataShards)
	}
	return nil
}

// String returns "k+m" for erasure ("4+2") and "rN" for N replicas ("r3").
// ParsePolicy reads it back.
func (p Policy) String() string {
	switch p.Kind {
	case KindErasure:
		return strconv.Itoa(p.DataShards) + "+" + strconv.Itoa(p.ParityShards)
	case KindReplica:
		if p.DataShards == 1 {
			return "r" + strconv.Itoa(p.ParityShards+1)
		}
	}
	return fmt.Sprintf("invalid(%d:%d+%d)", p.Kind, p.DataShards, p.ParityShards)
}

// ParsePolicy parses the form written by String: "k+m" or "rN", decimal
// digits only. The result is validated; errors wrap ErrBadPolicy.
func ParsePolicy(s string) (Policy, error) {
	var p Policy
	if rest, ok := strings.CutPrefix(s, "r"); ok {
		r, ok := parseSmall(rest)
		if !ok {
			return Policy{}, fmt.Errorf("%w: cannot parse %q", ErrBadPolicy, s)
		}
		p = Replicas(r)
	} else {
		ks, ms, ok := strings.Cut(s, "+")
		k, okk := parseSmall(ks)
		m, okm := parseSmall(ms)
		if !ok || !okk || !okm {
			return Policy{}, fmt.Errorf("%w: cannot parse %q (want \"k+m\" or \"rN\")", ErrBadPolicy, s)
		}
		p = Erasure(k, m)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// parseSmall accepts 1 to 4 decimal digits, so no sign, space or overflow
// gets through.
func parseSmall(s string) (int, bool) {
	if len(s) == 0 || len(s) > 4 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// ShardLen is the number of data bytes in each shard of a value of
// valueLen bytes: ceil(valueLen/k) for erasure (the last data shard is
// zero-padded), valueLen for replica, 0 for an empty value. It returns -1
// when p is invalid or the result does not fit an int; DecodeHeader never
// yields such a header.
func ShardLen(p Policy, valueLen uint64) int {
	if p.Validate() != nil {
		return -1
	}
	k := uint64(p.DataShards)
	n := valueLen / k
	if valueLen%k != 0 {
		n++
	}
	if n > math.MaxInt {
		return -1
	}
	return int(n)
}
