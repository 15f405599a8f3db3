// Package dscluster is the front end of go-ds-cluster: a go-datastore
// (ds.Batching, ds.PersistentDatastore, ds.CheckedDatastore) that keeps its
// values erasure coded across a cluster of dscluster nodes.
//
// # Data path
//
// Put encodes a value into shards (Reed-Solomon k+m for values of at least
// the cluster's small-value threshold, m+1 whole copies below it), sends
// shard i to node i of the key's slot in parallel, and returns once the
// write quorum (default k+1) has stored and fsynced its shard. Every shard
// carries the write's version, so overwrites never mix: Get reconstructs
// only from shards of one version and verifies the value checksum.
//
// Get asks the first positions every acknowledged write reaches (2 with
// the defaults: an erasure write is on 5 of 6, a replicated one on 2 of 3),
// which is enough for a small replicated value; then the rest of the k
// data-shard nodes. When they all hold valid shards of the newest version
// the value is their concatenation, without decoding. Otherwise it asks the
// parity nodes and rebuilds the newest version that has k valid shards (a
// tombstone needs one: it carries no data). A node that does not answer,
// or answers that it holds nothing (it may have lost its shard), makes the
// read ask on: a newer version could be behind it. A wave that has not all answered after Options.HedgeAfter
// (250 ms) is judged on the answers so far and the next wave starts, so a
// node that hangs costs a read that, not the request timeout; a write
// returns HedgeAfter after its quorum answered even if a node has not. A
// node with a request unanswered past HedgeAfter is marked slow
// (transport.Client.SetSlowAfter): reads ask it last, writes do not wait
// for it once they have their quorum, and no more than 64 writes wait on
// it at once, so a hung node costs one hedge. Has and GetSize ask the same
// positions for index entries (with each shard's position and policy) and
// judge versions as Get does, so they answer for the value Get would
// return, not for a failed write's entry. When no version has enough
// newest shards, a read asks which older versions the nodes keep (each
// writer's overwrite keeps what it replaced until it is acknowledged) and
// rebuilds the newest older value whose newer versions all provably never
// reached their write quorum (older.go). So a failed write needs no undo:
// it is a version too scarce to read until repair drops it. A missing key gives exactly ds.ErrNotFound; a key
// that may exist but has fewer than k reachable shards gives an
// *UnavailableError, which says how many shards were found and needed.
//
// Delete writes a tombstone version through the same quorum, unless no
// position holds any entry for the key; shards of failed writes with no
// readable version are hidden by it too. Query fans out
// to every node's index and merges by key, newest version wins.
//
// A Datastore is safe for concurrent use. Values passed to Put are not
// retained after Put returns; values returned by Get belong to the caller.
package dscluster
