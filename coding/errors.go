package coding

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is; the errors this
// package returns wrap them with detail.
var (
	// ErrCorrupt marks bytes or shards that fail a structural or checksum
	// check. The repair worker treats a shard that yields ErrCorrupt as
	// missing and rebuilds it.
	ErrCorrupt = errors.New("coding: corrupt")

	// ErrTooFewShards is matched by *TooFewShardsError: fewer than k valid
	// shards of one version were given to Decode.
	ErrTooFewShards = errors.New("coding: too few shards")

	// ErrBadPolicy marks a Policy that fails Validate or a string that
	// ParsePolicy cannot read.
	ErrBadPolicy = errors.New("coding: bad policy")

	// ErrKeyTooLong is returned by Encode for a key longer than MaxKeyLen.
	ErrKeyTooLong = errors.New("coding: key too long")

	// ErrTombstone is returned by Decode when the shards given are k valid
	// shards of a delete marker: the key was deleted at that version. It is
	// not a failure, and it is never ErrCorrupt or ErrTooFewShards.
	ErrTombstone = errors.New("coding: tombstone")
)

// TooFewShardsError reports that Decode found fewer valid shards of one
// version than the policy needs. errors.Is(err, ErrTooFewShards) holds.
type TooFewShardsError struct {
	Have int // valid shards found for the best candidate version
	Need int // k of that version's policy (1 when no shard was usable at all)
}

func (e *TooFewShardsError) Error() string {
	return fmt.Sprintf("coding: found %d valid shards, need %d", e.Have, e.Need)
}

// Is reports whether target is ErrTooFewShards.
func (e *TooFewShardsError) Is(target error) bool { return target == ErrTooFewShards }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}
