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
		return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf("member command does not parse: %v", err)}
	}
	switch cmd.Op {
	case membership.OpJoin, membership.OpDrain:
	case membership.OpRemove:
		// An operator gives up on an out member (its machine is gone):
		// its shards were rebuilt elsewhere, and garbage collection
		// waits for out members. Others leave by a drain.
		if m, ok := n.cluster.Load().Member(cmd.ID); !ok || m.State != membership.Out {
			state := "not a member"
			if ok {
				state = m.State
			}
			return &wire.Response{Status: wire.StatusBadRequest,
				Message: fmt.Sprintf("remove %s: it is %s; only an out member can be removed (drain a live one)", cmd.ID, state)}
		}
	case membership.OpGrant, membership.OpRevoke, membership.OpAdmit:
	default:
		return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf("member command %q: only join, drain, remove, grant, revoke and admit are accepted", cmd.Op)}
	}
	// The command names who asked, for Apply to judge under the roles as
	// they stand when it applies; a member forwarding it keeps the name.
	c := n.cluster.Load()
	if cmd.By == "" || !n.isMember(c, from) {
		cmd.By = from.String()
	}
	// A node joins as itself; a member may forward another's join. Other
	// commands change the cluster: members and, once roles are enforced,
	// read-write clients only.
	if cmd.Op == membership.OpJoin && (cmd.Member == nil || cmd.Member.ID != from.String()) && !n.isMember(c, from) {
		return &wire.Response{Status: wire.StatusUnauthorized, Message: fmt.Sprintf("join: peer %s may only ask to join as itself", from)}
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
			// A new group's leader has not applied the initial cluster
			// yet: moments after start, not a rejection.
			return &wire.Response{Status: wire.StatusUnavailable, Message: "the raft group is starting; retry"}
		}
		if cmd.Op == membership.OpGrant || cmd.Op == membership.OpRevoke || cmd.Op == membership.OpAdmit {
			// A revoke may be urgent (a client's key leaked): members that
			// do not answer do not hold it back. One that applied the
			// grant runs a version with roles, and one of an older version
			// never enforced them.
			if err := n.everyMemberHas(ctx, c, FeatureRoles, cmd.Op == membership.OpRevoke); err != nil {
				return &wire.Response{Status: wire.StatusBadRequest, Message: fmt.Sprintf("%s: %v", cmd.Op, err)}
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
			// Leadership moved (or is being transferred) since IsLeader:
			// nothing was proposed, so asking again is safe.
			return &wire.Response{Status: wire.StatusUnavailable, Message: "the raft leadership is moving; retry"}
		default:
			return &wire.Response{Status: wire.StatusInternal, Message: err.Error()}
		}
	}
	leader, ok := n.raft.Leader()
	if !ok {
		return &wire.Response{Status: wire.StatusUnavailable, Message: "no raft leader right now; retry"}
	}
	// The leader may take 5 s asking a joiner's status (joinerHasRoles),
	// then 10 s proposing: more than that, so that a command the leader
	// applies is not reported failed here.
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := n.client.Do(fctx, leader, &wire.Request{Op: wire.OpMember, Body: body})
	if err != nil {
		return &wire.Response{Status: wire.StatusInternal, Message: fmt.Sprintf("forward to the raft leader %s: %v", leader, err)}
	}
	return &wire.Response{Status: resp.Status, Message: resp.Message}
}

// everyMemberHas checks that every member of c but the removed ones
// reports feature in its status: a command that a replica of an older
// version would reject must not be proposed, or the replicas part. A
// member that does not answer fails the check too (it may be of any
// version), unless unanswered is set: the operator brings it back or
// removes it. (A node's description always lists its members:
// membership.Init fills them in from the map.)
func (n *Node) everyMemberHas(ctx context.Context, c *config.Cluster, feature string, unanswered bool) error {
	var ids []string
	for _, m := range c.Members {
		if m.State != membership.Removed && m.ID != n.selfID {
			ids = append(ids, m.ID)
		}
	}
	problems := make([]string, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fs, err := n.featuresOf(ctx, id, 0)
			switch {
			case err != nil && !unanswered:
				problems[i] = fmt.Sprintf("%s did not answer (%v)", id, err)
			case err == nil && !slices.Contains(fs, feature):
				problems[i] = fmt.Sprintf("%s runs a version without %s", id, feature)
			}
		}()
	}
	wg.Wait()
	problems = slices.DeleteFunc(problems, func(p string) bool { return p == "" })
	if len(problems) > 0 {
		return fmt.Errorf("every member must run a version with %s first (upgrade it, or remove a member that is gone for good): %s",
			feature, strings.Join(problems, "; "))
	}
	return nil
}

// mayJoin reports whether id is admitted or a member that is not removed:
// the joins the raft log can accept once roles are enforced. The others
// are refused there, without the leader dialling what they announce.
func mayJoin(c *config.Cluster, id string) bool {
	m, ok := c.Member(id)
	return slices.Contains(c.Admitted, id) || ok && m.State != membership.Removed
}

// checkJoiner judges a join on the leader before it is proposed, on the
// whole committed state (a leader of a new term may not have applied the
// last admit or grant yet): where the cluster enforces roles, the joiner
// must be admitted and run a version with them. A joiner not admitted is
// refused here rather than in the raft log, so that an admit committed
// between this check and the proposal cannot let it in unchecked.
func (n *Node) checkJoiner(ctx context.Context, m *config.Member) *wire.Response {
	if err := n.raft.Barrier(5 * time.Second); err != nil {
		return &wire.Response{Status: wire.StatusUnavailable, Message: fmt.Sprintf("join: %v; retry", err)}
	}
	c := n.raft.Cluster()
	if len(c.Clients) == 0 {
		return nil
	}
	if !mayJoin(c, m.ID) {
		return &wire.Response{Status: wire.StatusBadRequest,
			Message: fmt.Sprintf("join: node %s is not admitted: the cluster enforces client roles, so a read-write client first runs `dsclient node admit %s`", m.ID, m.ID)}
	}
	return n.joinerHasRoles(ctx, m)
}

// joinerHasRoles refuses the join of m into a cluster that enforces client
// roles unless m runs a version with them: a node of an older version
// would fail to apply the role commands in the raft log, and its replica
// of the cluster description would part from the others' and enforce no
// roles. Role commands check the members (everyMemberHas); this checks
// the node about to become one, at the addresses it announces. A node
// that does not answer may just not be reachable yet: the joiner retries.
func (n *Node) joinerHasRoles(ctx context.Context, m *config.Member) *wire.Response {
	if id, err := peer.Decode(m.ID); err == nil && id != n.host.ID() {
		if addrs, err := transport.DialAddrs(m.Addrs); err == nil {
			n.host.Peerstore().AddAddrs(id, addrs, peerstore.TempAddrTTL)
		}
	}
	fs, err := n.featuresOf(ctx, m.ID, 0)
	switch {
	case err != nil:
		return &wire.Response{Status: wire.StatusUnavailable,
			Message: fmt.Sprintf("join: the cluster enforces client roles, and %s did not answer the leader's status request at %v: %v", m.ID, m.Addrs, err)}
	case !slices.Contains(fs, FeatureRoles):
		return &wire.Response{Status: wire.StatusBadRequest,
			Message: fmt.Sprintf("join: the cluster enforces client roles, and %s runs a version without %s: upgrade it first", m.ID, FeatureRoles)}
	}
	return nil
}

// featuresOf returns the features node's status lists, as it answered at
// most maxAge ago (0: ask now). A node of a version before features lists
// none.
func (n *Node) featuresOf(ctx context.Context, node string, maxAge time.Duration) ([]string, error) {
	if node == n.selfID {
		return features, nil
	}
	if maxAge > 0 {
		if v, ok := n.featureCache.Load(node); ok {
			if f := v.(cachedFeatures); time.Since(f.at) < maxAge {
				return f.features, nil
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := peers{n}.do(ctx, node, &wire.Request{Op: wire.OpStatus})
	if resp != nil && resp.Status == wire.StatusUnauthorized {
		// Only a node that applies client roles refuses a peer for want
		// of one (its description predates this node's joining, say).
		// What else it runs is unknown: not cached.
		return []string{FeatureRoles}, nil
	}
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(resp.Payload, &st); err != nil {
		return nil, fmt.Errorf("status of %s: %w", node, err)
	}
	n.featureCache.Store(node, cachedFeatures{features: st.Features, at: time.Now()})
	return st.Features, nil
}
