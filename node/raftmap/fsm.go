package raftmap

import (
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
)

// fsm is the raft state machine: the whole cluster description, changed
// only by membership.Apply. Raft calls Apply, Snapshot and Restore from one
// goroutine; readers use cluster at any time. Each state is a fresh value
// that is never modified once stored.
type fsm struct {
	cluster atomic.Pointer[config.Cluster]
	changed chan struct{} // buffered 1: a state newer than the last notified one exists
}

var _ raft.FSM = (*fsm)(nil)

func newFSM() *fsm {
	return &fsm{changed: make(chan struct{}, 1)}
}

// Apply applies one committed command. It returns nil, or an error wrapping
// membership.ErrRejected when the command was not applied (the state is
// then unchanged). The error is the same on every replica.
func (f *fsm) Apply(l *raft.Log) any {
	var cmd membership.Command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return fmt.Errorf("%w: log entry %d does not decode: %v", membership.ErrRejected, l.Index, err)
	}
	next, err := membership.Apply(f.cluster.Load(), cmd)
	if err != nil {
		return err
	}
	f.set(next)
	return nil
}

// Snapshot captures the current state; the state is immutable, so Persist
// can run concurrently with Apply.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot{f.cluster.Load()}, nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var c *config.Cluster
	if err := json.NewDecoder(rc).Decode(&c); err != nil {
		return fmt.Errorf("raftmap: snapshot does not decode: %w", err)
	}
	f.set(c)
	return nil
}

func (f *fsm) set(c *config.Cluster) {
	f.cluster.Store(c)
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// snapshot is the JSON of one cluster state ("null" before init).
type snapshot struct{ c *config.Cluster }

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	b, err := json.Marshal(s.c)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftmap: write snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() {}
