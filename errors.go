package dscluster

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrUnavailable is wrapped by *UnavailableError: a value may exist but
	// too few of its shards are reachable to rebuild it.
	ErrUnavailable = errors.New("dscluster: value unavailable")
	// ErrQuorum is wrapped by *QuorumError: a write did not reach its quorum.
	ErrQuorum = errors.New("dscluster: write quorum not reached")
	// ErrValueTooLarge is returned by Put for values over MaxValueSize.
	ErrValueTooLarge = errors.New("dscluster: value too large")
	// ErrKeyTooLong is returned for keys over the shard header's limit.
	ErrKeyTooLong = errors.New("dscluster: key too long")
)

// NodeError is one node's failure within a cluster operation.
type NodeError struct {
	Node string // "node 3 (12D3KooW…)"
	Err  error
}

func (e NodeError) String() string { return e.Node + ": " + e.Err.Error() }

func joinNodeErrors(es []NodeError) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.String()
	}
	return strings.Join(parts, "; ")
}

// UnavailableError reports a read that found fewer valid shards of any
// version than it needs.
type UnavailableError struct {
	Key    string
	Found  int // valid shards of the best version found
	Need   int // shards needed to rebuild it
	Failed []NodeError
}

func (e *UnavailableError) Error() string {
	s := fmt.Sprintf("get %s: unavailable: found %d valid shards, need %d", e.Key, e.Found, e.Need)
	if len(e.Failed) > 0 {
		s += " (" + joinNodeErrors(e.Failed) + ")"
	}
	return s
}

func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// QuorumError reports a write that stored fewer shards than its quorum.
// Shards that did land stay; a retry of the same operation is safe.
type QuorumError struct {
	Op     string // "put" or "delete"
	Key    string
	Stored int
	Quorum int
	Failed []NodeError
}

func (e *QuorumError) Error() string {
	return fmt.Sprintf("%s %s: stored %d shards, quorum is %d: failed nodes: %s", e.Op, e.Key, e.Stored, e.Quorum, joinNodeErrors(e.Failed))
}

func (e *QuorumError) Unwrap() error { return ErrQuorum }
