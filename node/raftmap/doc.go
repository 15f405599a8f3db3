// Package raftmap keeps the cluster description (config.Cluster: policy,
// members and their states, the slot map and a rebalance target) under
// hashicorp/raft, with raft's RPCs carried by libp2p streams of Protocol.
//
// # State
//
// The raft state machine is the whole cluster description, nil until the
// first membership.OpInit command. It changes only by membership.Apply on
// a committed membership.Command (JSON in the log), which is deterministic,
// so every server goes through the same states in the same order. A
// snapshot is the JSON of the cluster. Nothing else is replicated.
//
// # Identity
//
// A server's raft ID and raft address are both its libp2p peer ID string.
// The stream layer dials a peer by ID, first adding the multiaddrs that
// Config.AddrsOf gives (0.0.0.0 and :: dialed as loopback) to the
// peerstore, so a server that restarts on another port is found as soon as
// AddrsOf knows it.
//
// # Bootstrap
//
// Every initial voter opens with the same Config.Bootstrap list (peer IDs,
// itself among them); on an empty Dir each writes the same first
// configuration, as raft allows, and they elect a leader. A server that is
// not in the list, or that has raft state already, ignores it and waits to
// be added by the leader (SyncVoters). The init command is then proposed
// once, on the leader.
//
// # Voters and leadership
//
// The leader keeps the raft configuration in line with the members:
// SyncVoters(voters, others) removes the servers in neither list first,
// then demotes, then adds voters, then adds non-voters, so that a change
// never needs a dead server for its quorum; membership.Voters picks the
// voters (only live members are ever added). SyncVoters never demotes or
// removes the leader itself: a leader whose node is being drained calls
// TransferLeadership, and the next leader demotes it. Voters lists the
// voters of the configuration.
//
// A server that has just become the leader calls Barrier before it acts
// on Cluster: entries of earlier terms are committed, and so applied, only
// once the new leader commits one of its own term, and until then Cluster
// may lag what a majority holds.
//
// # Durability
//
// When Propose returns nil, the command is in the raft log of a majority of
// voters, fsynced (unless Config.NoSync), and applied on the leader, so
// Cluster on the leader shows it; followers apply it shortly after. It
// survives the loss of any minority of voters. An error wrapping
// membership.ErrRejected means the command was committed but rejected by
// the state machine everywhere: the state is unchanged and retrying the
// same command is pointless. ErrNotLeader means nothing was proposed and a
// retry on the leader (NotLeaderError.Leader) is safe. ErrUnknownOutcome
// means the command may or may not be applied.
//
// # Concurrency
//
// Every method of Raft is safe to call concurrently. Cluster returns the
// current state without locking; the value is shared and must not be
// modified. After Open on an existing Dir, Cluster is the newest local
// snapshot's state (nil without one) until this server learns the commit
// index from a leader and replays its log: a restarted server may briefly
// show an older state than the one it had. OnChange is called from a single goroutine, never while raft
// waits for it, with the newest state after one or more applied commands or
// a restored snapshot: intermediate states may be skipped when changes come
// faster than OnChange returns, and the same state is not passed twice.
// OnChange may call any method of Raft (Propose included) except Close.
//
// # Files
//
// Config.Dir holds raft.db (raft-boltdb: the log and raft's term and vote)
// and snapshots/ (the two newest snapshots). A Dir is opened by one Raft at
// a time; a second Open of the same Dir fails after a second.
//
// # Logging
//
// Raft's own logs go to the go-log logger "dscluster/raft", warnings and
// errors only unless that logger is at debug level.
package raftmap
