package coding_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/filedrive-team/go-ds-cluster/coding"
)

func Example() {
	policy, _ := coding.ParsePolicy("4+2")
	clock := coding.NewClock(1, func() time.Time { return time.UnixMilli(1_700_000_000_000) })

	// Put: one encoded shard per node.
	shards, err := coding.Encode("/blocks/example", []byte("an IPFS block"), policy, clock.Next())
	if err != nil {
		panic(err)
	}
	stored := make([][]byte, len(shards))
	for i, s := range shards {
		stored[i] = s.AppendBinary(nil)
	}

	// One node is gone and another returns a rotten shard.
	stored[0] = nil
	stored[5][len(stored[5])-1] ^= 0x01

	// Get: parse what came back; a bad shard counts as missing.
	got := make([]*coding.Shard, policy.Width())
	for i, b := range stored {
		if b == nil {
			continue
		}
		s, err := coding.ParseShard(b)
		if errors.Is(err, coding.ErrCorrupt) {
			fmt.Printf("shard %d: corrupt\n", i)
			continue
		}
		got[i] = s
	}
	value, err := coding.Decode(got)
	fmt.Printf("%q %v\n", value, err)

	got[1] = nil
	_, err = coding.Decode(got)
	fmt.Println(err, errors.Is(err, coding.ErrTooFewShards))
	// Output:
	// shard 5: corrupt
	// "an IPFS block" <nil>
	// coding: found 3 valid shards, need 4 true
}
