package repair

import (
	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// Holding is one shard a node holds, as its index reports it (wire
// OpInventory): a node lists, for each key, every position it holds of its
// newest version of the key.
type Holding struct {
	Node      string // peer ID of the holder
	Key       string
	Pos       int // shard index
	Policy    coding.Policy
	Version   coding.Version
	Tombstone bool
	ValueLen  uint64
	ShardLen  uint32
	Older     int // shards of older versions of the key the node keeps beside its newest
}

// View is what the planner plans from: the maps, which nodes could be
// listed, and everything those nodes hold.
type View struct {
	Map *placement.Map
	// Target is the map a rebalance moves to (nil when none). Its owners
	// must get every shard before the leader commits it.
	Target *placement.Map
	// Reachable are the nodes whose holdings are complete in Holdings. A
	// node not in it is unknown: never a source, never written to, never
	// asked to drop.
	Reachable map[string]bool
	Holdings  []Holding
	// GarbageBefore is the HLC (coding.Version.HLC) below which writes
	// are over. A version at or after it may still be landing (its other
	// shards on their way, its write yet to be acknowledged), so it is
	// never dropped as garbage, however few its shards. 0 bounds nothing.
	GarbageBefore uint64
	// Quorum is the write quorum of a policy (config.Cluster.Quorum): a
	// version whose write provably never reached it was never
	// acknowledged. Nil: no version is known to be unacknowledged that
	// way, and lost keys are never rolled back.
	Quorum func(coding.Policy) int
	// MapSince is a time (Unix nanoseconds) after which a write went to
	// the owners in Map: when Map became the map, plus a margin for the
	// writers' clocks; 0 when unknown. A lost key is rolled back only from
	// a version written after it (see the package doc).
	MapSince int64
	// Unlisted is how many members that may hold shards are not in
	// Reachable (they did not answer, or are down or out). Each may hold
	// two shards of any key written before MapSince, when other nodes may
	// have owned its slot (its position then, and one forwarded to it):
	// such a version is garbage only if it has fewer than k shards even
	// counting two on each of them.
	Unlisted int
}

// ActionKind says what an Action does.
type ActionKind uint8

// Action kinds.
const (
	// Copy reads the shard (Key, Pos, Version) from From and writes it to To.
	Copy ActionKind = iota + 1
	// Rebuild reads Policy.DataShards shards of (Key, Version) from Sources,
	// decodes the value, encodes shard Pos and writes it to To. A tombstone
	// needs no sources: it is built from its header.
	Rebuild
	// Drop removes the shard (Key, Pos, Version) from To, which owns that
	// position in neither map, and the older shards To keeps at Pos; its
	// other positions stay. The owner of Pos holds it at Version.
	Drop
)

func (k ActionKind) String() string {
	switch k {
	case Copy:
		return "copy"
	case Rebuild:
		return "rebuild"
	case Drop:
		return "drop"
	}
	return "action(?)"
}

// Source is a shard to rebuild from.
type Source struct {
	Node string
	Pos  int
}

// Action is one step of a plan. Actions are idempotent: a node keeps the
// newest version of a key, and a drop names the exact version it removes.
type Action struct {
	Kind      ActionKind `json:"kind"`
	Key       string     `json:"key"`
	Pos       int        `json:"pos"`
	Policy    coding.Policy
	Version   coding.Version
	Tombstone bool     `json:"tombstone,omitempty"`
	To        string   `json:"to"`
	From      string   `json:"from,omitempty"`    // Copy
	Sources   []Source `json:"sources,omitempty"` // Rebuild: in preference order, at least DataShards
	// Stale marks a Drop its holder performs even at a position it owns:
	// an older version at a position the newest readable version's policy
	// does not use (a 4+2 value overwritten by a 3-replica one), or a newer
	// version that is provably unreadable (a failed write: fewer than k
	// shards exist, and every owner of the slot was listed).
	Stale bool `json:"stale,omitempty"`
	// Restore marks a Drop of a failed write's shard: its holder removes
	// exactly that shard, and the newest of what it keeps of the key then,
	// an older version included, is its newest.
	Restore bool `json:"restore,omitempty"`
	// Older marks a Drop of the versions older than Version that To keeps
	// of the key beside its shards of Version, at every position: the key
	// is whole at Version, which every read returns before any older one.
	Older bool `json:"older,omitempty"`
	// Bytes is the shard length moved by the action (0 for Drop and
	// tombstones), for rate limits and ETAs.
	Bytes int64 `json:"bytes"`
}

// Plan is the planner's answer for one View.
type Plan struct {
	Actions []Action // sorted by key, then position, then kind
	// Keys is the number of distinct keys seen (tombstones included).
	Keys int
	// Degraded counts keys with fewer than their policy's width of shards
	// of the newest readable version at reachable owners in View.Map.
	Degraded int
	// Lost counts keys of which no version is readable (no version has
	// DataShards shards on reachable nodes): nothing can be rebuilt for
	// them now.
	Lost int
	// TargetReady is true when View.Target is set, every owner in it is
	// reachable and holds its target position of the newest readable
	// version of every key: the leader may commit the target.
	TargetReady bool
	// Held counts the holdings of each reachable node (drain completion:
	// a draining node is removed once it holds nothing).
	Held map[string]int
	// Unsettled marks, by slot, the slots with a key degraded or an action
	// planned, or an owner in View.Map that is not reachable: the others
	// are at full redundancy on their owners (nil for a nil View).
	Unsettled []bool
}
