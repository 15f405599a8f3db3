// Package placement maps keys to hash slots and slots to nodes: the cluster
// map of go-ds-cluster, how it is computed, and what changes between two
// maps.
//
// A key belongs to slot CRC16(key) mod NumSlots (Slot), CRC16 being
// CRC-16/ARC as in the original go-ds-cluster. A Map gives each of the
// NumSlots slots an ordered list of Width distinct nodes; position p holds
// shard p of every value in the slot, and a policy of width w uses positions
// 0..w-1.
//
// The package is pure: no I/O, no goroutines, no logging, no global state.
// Membership changes go through consensus elsewhere; this package only
// computes.
//
// # Contracts
//
//   - A Map is immutable once built (by Assign, UnmarshalJSON or Clone):
//     nothing here modifies it, and any number of goroutines may read it at
//     once. Callers must not modify a shared Map either; Clone first.
//     Owners returns a sub-slice of Table that the caller must not modify.
//   - Assign does not modify its inputs, and the map it returns shares no
//     memory with them.
//   - Validate, UnmarshalJSON, Assign and Diff never panic on bad input;
//     they return an error, prefixed "placement:", that says what is wrong.
//     ErrTooFewNodes is the one sentinel (fewer nodes than the width).
//
// # Assign's guarantees
//
// In order of priority (see Assign for details):
//
//  1. the width nodes of a slot are distinct;
//  2. every node holds its weight-proportional share of NumSlots*width
//     positions, rounded by largest remainder (a share is capped at
//     NumSlots, one per slot);
//  3. few moves: a position keeps its node unless that node left, is over its
//     share, or a swap restores the slot's zone spread; a node joining N
//     equal nodes moves exactly its share of positions, a node leaving only
//     its own (when zones allow);
//  4. zones: a slot's nodes are on distinct zones when there are at least
//     width zones, else spread as evenly as the zones' sizes allow
//     (best effort);
//  5. deterministic: the same inputs give the same map.
//
// Diff lists the positions that change between two maps: the shards to
// migrate.
package placement
