package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node/raftmap"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// member serves OpMember: a join, drain, remove, grant, revoke or admit,
// proposed by the leader (a follower forwards it there).
func (n *Node) member(ctx context.Context, from peer.ID, body []byte) *wire.Response {
	var cmd membership.Command
	if err := json.Unmarshal(body, &cmd); err != nil {
		return failure(wire.StatusBadRequest, "member command does not parse: %v", err)
	}
	switch cmd.Op {
	case membership.OpJoin, membership.OpDrain:
	case membership.OpRemove:
		// Only an out member is removed (its shards were rebuilt, and
		// garbage collection waits for it); others leave by a drain.
		if m, ok := n.cluster.Load().Member(cmd.ID); !ok || m.State != membership.Out {
			state := "not a member"
			if ok {
				state = m.State
			}
			return failure(wire.StatusBadRequest, "remove %s: it is %s; only an out member can be removed (drain a live one)", cmd.ID, state)
		}
	case membership.OpGrant, membership.OpRevoke, membership.OpAdmit:
	default:
		return failure(wire.StatusBadRequest, "member command %q: only join, drain, remove, grant, revoke and admit are accepted", cmd.Op)
	}
	// The command names who asked, for Apply to judge under the roles as
	// they stand when it applies; a member forwarding it keeps the name.
	c := n.cluster.Load()
	if cmd.By == "" || !n.isMember(c, from) {
		cmd.By = from.String()
	}
	// A node joins as itself, or through a member. Other commands need a
	// member or (once roles are enforced) a read-write client.
	if cmd.Op == membership.OpJoin && (cmd.Member == nil || cmd.Member.ID != from.String()) && !n.isMember(c, from) {
		return failure(wire.StatusUnauthorized, "join: peer %s may only ask to join as itself", from)
	}
	if cmd.Op != membership.OpJoin {
		if resp := n.checkRole(c, from, "member "+cmd.Op, true); resp != nil {
			return resp
		}
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: err.Error()}
	}
	cmd.At = time.Now().UnixNano()
	if n.raft.IsLeader() {
		if n.raft.Cluster() == nil {
			// A new group's leader has not applied the initial cluster yet.
			return &wire.Response{Status: wire.StatusUnavailable, Message: "the raft group is starting; retry"}
		}
		if cmd.Op == membership.OpGrant || cmd.Op == membership.OpRevoke || cmd.Op == membership.OpAdmit {
			// A revoke may be urgent (a leaked key), so members that do not
			// answer do not hold it back: one that applied the grant has
			// roles, and an older one never enforced them.
			if err := n.everyMemberHas(ctx, c, FeatureRoles, cmd.Op == membership.OpRevoke); err != nil {
				return failure(wire.StatusBadRequest, "%s: %v", cmd.Op, err)
			}
		}
		if cmd.Op == membership.OpJoin && cmd.Member != nil {
			if resp := n.checkJoiner(ctx, cmd.Member); resp != nil {
				return resp
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := n.raft.Propose(pctx, cmd)
		switch {
		case err == nil:
			return &wire.Response{Status: wire.StatusOK}
		case errors.Is(err, membership.ErrRejected):
			return &wire.Response{Status: wire.StatusBadRequest, Message: err.Error()}
		case errors.Is(err, raftmap.ErrNotLeader):
			// Nothing was proposed: a retry is safe.
			return &wire.Response{Status: wire.StatusUnavailable, Message: "the raft leadership is moving; retry"}
		default:
			return &wire.Response{Status: wire.StatusInternal, Message: err.Error()}
		}
	}
	leader, ok := n.raft.Leader()
	if !ok {
		return &wire.Response{Status: wire.StatusUnavailable, Message: "no raft leader right now; retry"}
	}
	// Covers the leader's checks of a joiner (5 s barrier, 5 s status), its
	// 10 s proposal and the network, so a command it applies is not
	// reported failed; under the sender's 30 s request timeout.
	fctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	resp, err := n.client.Do(fctx, leader, &wire.Request{Op: wire.OpMember, Body: body})
	if err != nil {
		return failure(wire.StatusInternal, "forward to the raft leader %s: %v", leader, err)
	}
	return &wire.Response{Status: resp.Status, Message: resp.Message}
}

// everyMemberHas checks that every member of c but the removed ones reports
// feature in its status (c.Members is complete: membership.Init fills it
// from the map). One that does not answer fails the check (it may run any
// version) unless unanswered is set.
func (n *Node) everyMemberHas(ctx context.Context, c *config.Cluster, feature string, unanswered bool) error {
	problems := make([]string, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		if m.State == membership.Removed || m.ID == n.selfID {
			continue
		}
		wg.Go(func() {
			fs, err := n.featuresOf(ctx, m.ID)
			switch {
			case err != nil && !unanswered:
				problems[i] = fmt.Sprintf("%s did not answer (%v)", m.ID, err)
			case err == nil && !slices.Contains(fs, feature):
				problems[i] = fmt.Sprintf("%s runs a version without %s", m.ID, feature)
			}
		})
	}
	wg.Wait()
	problems = slices.DeleteFunc(problems, func(p string) bool { return p == "" })
	if len(problems) > 0 {
		return fmt.Errorf("every member must run a version with %s first (upgrade it, or remove a member that is gone for good): %s",
			feature, strings.Join(problems, "; "))
	}
	return nil
}

// checkJoiner judges a join before the leader proposes it, after a barrier
// (a new term's leader may lag the last admit or grant): where roles are
// enforced the joiner must be admitted (or a member not removed, as the raft
// log checks), checked before it is dialled, and run a version with roles,
// asked at the addresses it announces: an older node would fail to apply
// the role commands in the log, and its replica part. Checking here, not in
// the log, means an admit committed meanwhile cannot let it in unchecked.
func (n *Node) checkJoiner(ctx context.Context, m *config.Member) *wire.Response {
	if err := n.raft.Barrier(5 * time.Second); err != nil {
		return failure(wire.StatusUnavailable, "join: %v; retry", err)
	}
	c := n.raft.Cluster()
	if len(c.Clients) == 0 {
		return nil
	}
	if cm, ok := c.Member(m.ID); !slices.Contains(c.Admitted, m.ID) && (!ok || cm.State == membership.Removed) {
		return failure(wire.StatusBadRequest, "join: node %s is not admitted: the cluster enforces client roles, so a read-write client first runs `dsclient node admit %s`", m.ID, m.ID)
	}
	if id, err := peer.Decode(m.ID); err == nil && id != n.host.ID() {
		if addrs, err := transport.DialAddrs(m.Addrs); err == nil {
			n.host.Peerstore().AddAddrs(id, addrs, peerstore.TempAddrTTL)
		}
	}
	fs, err := n.featuresOf(ctx, m.ID)
	switch {
	case err != nil: // the joiner may not be reachable yet
		return failure(wire.StatusUnavailable, "join: the cluster enforces client roles, and %s did not answer the leader's status request at %v: %v", m.ID, m.Addrs, err)
	case !slices.Contains(fs, FeatureRoles):
		return failure(wire.StatusBadRequest, "join: the cluster enforces client roles, and %s runs a version without %s: upgrade it first", m.ID, FeatureRoles)
	}
	return nil
}

// featuresOf asks node for the features its status lists. A node older
// than features lists none.
func (n *Node) featuresOf(ctx context.Context, node string) ([]string, error) {
	if node == n.selfID {
		return features, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := peers{n}.do(ctx, node, &wire.Request{Op: wire.OpStatus})
	if resp != nil && resp.Status == wire.StatusUnauthorized {
		// Only a node that applies client roles refuses a peer for want
		// of one. What else it runs is unknown.
		return []string{FeatureRoles}, nil
	}
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(resp.Payload, &st); err != nil {
		return nil, fmt.Errorf("status of %s: %w", node, err)
	}
	return st.Features, nil
}
