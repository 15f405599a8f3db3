package dscluster

import (
	"cmp"
	"errors"
	"fmt"
	"strings"

	"github.com/filedrive-team/go-ds-cluster/wire"
)

var (
	// ErrUnavailable is wrapped by *UnavailableError: a value may exist but
	// too few of its shards are reachable to rebuild it.
	ErrUnavailable = errors.New("dscluster: value unavailable")
	// ErrQuorum is wrapped by *QuorumError, and by the error of a write
	// that met other writers' newer versions in every attempt.
	ErrQuorum = errors.New("dscluster: write quorum not reached")
	// ErrValueTooLarge is returned by Put for values over MaxValueSize.
	ErrValueTooLarge = errors.New("dscluster: value too large")
	// ErrKeyTooLong is returned for keys over the shard header's limit.
	ErrKeyTooLong = errors.New("dscluster: key too long")
	// ErrUnauthorized is wrapped by the error of an operation that nodes
	// refused under the cluster's client roles (DESIGN §6): this client
	// has no role, or a read-only one for a write.
	ErrUnauthorized = errors.New("dscluster: refused by the cluster's client roles")
)

// optionsError is the error of Options that do not fit the cluster's
// description: every node would give the same answer.
type optionsError struct{ err error }

func (e optionsError) Error() string { return e.err.Error() }
func (e optionsError) Unwrap() error { return e.err }

// NodeError is one node's failure within a cluster operation.
type NodeError struct {
	Node string // "node 3 (12D3KooW…)"
	Err  error
}

func (e NodeError) String() string { return e.Node + ": " + e.Err.Error() }

// joinNodeErrors lists es, each error once with the nodes that gave it
// (six nodes refusing a client say the same thing).
func joinNodeErrors(es []NodeError) string {
	var msgs []string
	nodes := map[string][]string{}
	for _, e := range es {
		m := e.Err.Error()
		if nodes[m] == nil {
			msgs = append(msgs, m)
		}
		nodes[m] = append(nodes[m], e.Node)
	}
	for i, m := range msgs {
		msgs[i] = strings.Join(nodes[m], ", ") + ": " + m
	}
	return strings.Join(msgs, "; ")
}

// UnavailableError reports a read that found fewer valid shards of any
// version than it needs.
type UnavailableError struct {
	Op     string // the operation that failed (get, has, getsize, delete); "" is get
	Key    string
	Found  int // valid shards of the best version found
	Need   int // shards needed to rebuild it
	Failed []NodeError
}

func (e *UnavailableError) Error() string {
	s := fmt.Sprintf("%s %s: unavailable: found %d valid shards, need %d", cmp.Or(e.Op, "get"), e.Key, e.Found, e.Need)
	if len(e.Failed) > 0 {
		s += " (" + joinNodeErrors(e.Failed) + ")"
	}
	return s
}

func (e *UnavailableError) Unwrap() []error { return withRefusal(ErrUnavailable, e.Failed) }

// opError is err of operation op on key; an UnavailableError, which
// names the key already, is given op instead of being wrapped.
func opError(op, key string, err error) error {
	if ue, ok := err.(*UnavailableError); ok {
		ue.Op = op
		return ue
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// statusError is the error of a node's answer that is not OK.
func statusError(resp *wire.Response) error { return statusErr(resp.Status, resp.Message) }

func statusErr(st wire.Status, msg string) error {
	if st == wire.StatusUnauthorized {
		return fmt.Errorf("%w: %s", ErrUnauthorized, msg)
	}
	return fmt.Errorf("%s: %s", st, msg)
}

// withRefusal is err, and ErrUnauthorized when a node refused the client.
func withRefusal(err error, failed []NodeError) []error {
	for _, f := range failed {
		if errors.Is(f.Err, ErrUnauthorized) {
			return []error{err, ErrUnauthorized}
		}
	}
	return []error{err}
}

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

func (e *QuorumError) Unwrap() []error { return withRefusal(ErrQuorum, e.Failed) }
