package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// FetchNodeConfig asks the bootstrapper at addr (a multiaddr ending in
// /p2p/<id>) for the config of node identity. secret is the cluster secret
// (hex); without it the connection is refused.
func FetchNodeConfig(ctx context.Context, addr string, identity int, secret string) (*config.Node, error) {
	if identity < 0 || identity > math.MaxInt32 {
		return nil, fmt.Errorf("identity %d: want a node number from 1 up", identity)
	}
	var nc config.Node
	if err := fetchInfo(ctx, addr, int32(identity), secret, &nc); err != nil {
		return nil, err
	}
	if err := nc.Validate(); err != nil {
		return nil, fmt.Errorf("bootstrapper sent an invalid config: %w", err)
	}
	return &nc, nil
}

// FetchCluster asks the node at addr for the cluster description.
func FetchCluster(ctx context.Context, addr string, secret string) (*config.Cluster, error) {
	var c config.Cluster
	if err := fetchInfo(ctx, addr, ClientIdentity, secret, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("node sent an invalid cluster description: %w", err)
	}
	return &c, nil
}

func fetchInfo(ctx context.Context, addr string, identity int32, secret string, v any) error {
	ai, err := config.ParseAddrInfo(addr)
	if err != nil {
		return fmt.Errorf("bootstrapper address: %w", err)
	}
	psk, err := config.ParseSecret(secret)
	if err != nil {
		return err
	}
	h, err := transport.NewHost(transport.HostConfig{Secret: psk})
	if err != nil {
		return err
	}
	defer h.Close()
	addrs, err := transport.DialAddrInfo(ai)
	if err != nil {
		return err
	}
	if err := h.Connect(ctx, peer.AddrInfo{ID: ai.ID, Addrs: addrs}); err != nil {
		return fmt.Errorf("connect to %s: %w (is the node running, and is the cluster secret the same?)", addr, err)
	}
	cl := transport.NewClient(h, 0)
	defer cl.Close()
	resp, err := cl.Do(ctx, ai.ID, &wire.Request{Op: wire.OpClusterInfo, Identity: identity})
	if err != nil {
		return fmt.Errorf("cluster info from %s: %w", addr, err)
	}
	if resp.Status != wire.StatusOK {
		return fmt.Errorf("cluster info from %s: %s: %s", addr, resp.Status, resp.Message)
	}
	if err := json.Unmarshal(resp.Payload, v); err != nil {
		return fmt.Errorf("cluster info from %s does not parse: %w", addr, err)
	}
	return nil
}

// Join asks the cluster, through the member at addr, to add n as a member.
// The raft leader records it as joining; the rebalance that follows copies
// its share of the slots to it and then commits the new map. Join retries
// while the cluster has no leader, until ctx ends.
func Join(ctx context.Context, addr string, n *Node) error {
	ai, err := config.ParseAddrInfo(addr)
	if err != nil {
		return fmt.Errorf("bootstrapper address: %w", err)
	}
	addrs, err := transport.DialAddrInfo(ai)
	if err != nil {
		return err
	}
	n.host.Peerstore().AddAddrs(ai.ID, addrs, peerstore.PermanentAddrTTL)
	m := config.Member{Node: placement.Node{ID: n.selfID, Addrs: n.advertised(), Zone: n.cfg.Zone, Weight: n.cfg.Weight}}
	body, err := json.Marshal(membership.Command{Op: membership.OpJoin, Member: &m})
	if err != nil {
		return err
	}
	for {
		resp, err := n.client.Do(ctx, ai.ID, &wire.Request{Op: wire.OpMember, Body: body})
		switch {
		case err == nil && resp.Status == wire.StatusOK:
			return nil
		case err == nil && resp.Status != wire.StatusInternal && resp.Status != wire.StatusUnavailable:
			return fmt.Errorf("%s: %s", resp.Status, resp.Message)
		case err == nil:
			err = errors.New(resp.Message)
		}
		log.Infow("join: retrying", "through", addr, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// advertised are the addresses other members dial this node at: its
// stated listen addresses (statedAddrs), or else the host's own.
func (n *Node) advertised() []string {
	out := n.statedAddrs()
	if len(out) > 0 {
		return out
	}
	for _, a := range n.host.Addrs() {
		out = append(out, a.String())
	}
	return out
}
