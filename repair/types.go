package repair

import (
	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// Holding is one shard a node holds, as its index reports it (wire
// OpInventory). A node lists every position it holds of its newest version
// of a key.
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
	// Target is the map a rebalance moves to (nil when none).
	Target *placement.Map
	// Reachable are the nodes whose holdings are complete in Holdings.
	Reachable map[string]bool
	Holdings  []Holding
	// GarbageBefore is the HLC (coding.Version.HLC) below which writes are
	// over: a version at or after it may still be landing, so it is never
	// dropped as garbage. 0 bounds nothing.
	GarbageBefore uint64
	// Quorum is the write quorum of a policy (config.Cluster.Quorum). Nil:
	// lost keys are never rolled back.
	Quorum func(coding.Policy) int
	// MapSince is a time (Unix nanoseconds) after which a write went to the
	// owners in Map: when Map became the map, plus a margin for the
	// writers' clocks. 0: unknown, as if every write came before it.
	MapSince int64
	// Unlisted is how many members that may hold shards are not in
	// Reachable (they did not answer, or are down or out). Each may hold
	// two positions of a version written before MapSince: its own in an
	// earlier map, and one forwarded to it.
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
	// Drop removes the shard (Key, Pos, Version) from To, with the older
	// shards To keeps at Pos; its other positions stay. Without a flag
	// (Stale, Restore, Older), To owns Pos in neither map and an owner of
	// Pos holds it at Version.
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

// Action is one step of a plan (see the package doc for its contracts).
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
	// Stale marks a Drop its holder performs even at a position it owns: a
	// superseded version past the policy's width, or a failed write's.
	Stale bool `json:"stale,omitempty"`
	// Restore marks a Drop of a failed write's shard: its holder removes
	// exactly that shard, and what it keeps of the key below it, an older
	// version included, becomes its newest.
	Restore bool `json:"restore,omitempty"`
	// Older marks a Drop of the versions older than Version that To keeps
	// of the key, at every position.
	Older bool `json:"older,omitempty"`
	// Bytes is the shard length moved by the action (0 for Drop and
	// tombstones), for rate limits and ETAs.
	Bytes int64 `json:"bytes"`
}

// Plan is the planner's answer for one View.
type Plan struct {
	Actions []Action // sorted by key, position, kind (copy, rebuild, drop) and To
	// Keys is the number of distinct keys seen (tombstones included).
	Keys int
	// Degraded counts the lost keys and the keys with fewer than their
	// policy's width of positions of the newest readable version held by
	// their reachable owners in View.Map.
	Degraded int
	// Lost counts the keys with no readable version: nothing can be
	// rebuilt for them now.
	Lost int
	// TargetReady says the leader may commit View.Target: every owner in it
	// is reachable and holds its target position of every key's newest
	// readable version.
	TargetReady bool
	// Held counts the holdings of each reachable node: a draining node is
	// removed once it holds nothing.
	Held map[string]int
	// Unsettled marks, by slot, the slots with a key degraded or an action
	// planned, or an owner in View.Map that is not reachable: the others
	// are at full redundancy on their owners (nil for a nil View).
	Unsettled []bool
}
