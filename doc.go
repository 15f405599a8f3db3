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
// carries the write's version, so overwrites never mix: Get rebuilds only
// from shards of one version and verifies the value checksum.
//
// Get asks first the positions every acknowledged write reaches (2 with
// the defaults), then the other data positions, then parity. When the data
// shards of the newest version are valid the value is their concatenation;
// otherwise it is rebuilt from k valid shards (a tombstone needs one). A
// node that does not answer, or says it holds nothing (it may have lost
// its shard), shows no version, so the read asks on. Has and GetSize judge
// index entries the same way: they answer for the value Get would return.
//
// A wave of a read not all answered after Options.HedgeAfter (250 ms) is
// judged on the answers so far and the next wave starts, and a write
// returns HedgeAfter after its quorum answered: a node that hangs costs a
// hedge, not the request timeout. Such a node is marked slow
// (transport.Client.SetSlowAfter): reads ask it last, writes do not wait
// for it once they have their quorum, and at most 64 writes wait on it.
//
// A failed write needs no undo: nodes keep the versions an overwrite
// replaced until it is acknowledged, and when the newest version among the
// positions' newest shards cannot be served, a read asks every position
// for the versions it keeps and rebuilds the newest older value whose
// newer versions all provably never reached their write quorum (older.go).
// It never serves an older version from the newest shards alone: a
// position may keep an acknowledged version under a failed one.
//
// A missing key gives exactly ds.ErrNotFound; a key that may exist but has
// fewer than k reachable shards gives an *UnavailableError, which says how
// many shards were found and needed.
//
// Delete writes a tombstone version through the same quorum, unless no
// position holds any entry for the key. Query fans out to every node's
// index and merges by key, newest version wins.
//
// A Datastore is safe for concurrent use. Values passed to Put are not
// retained after Put returns; values returned by Get belong to the caller.
package dscluster
