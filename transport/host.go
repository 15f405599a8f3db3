package transport

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// HostConfig describes a libp2p host.
type HostConfig struct {
	// Key is the host's identity; nil generates a throwaway one (clients).
	Key crypto.PrivKey
	// Listen lists multiaddrs to listen on; empty for a client that only dials.
	Listen []string
	// Secret is the cluster secret (32 bytes). Required: a peer that does
	// not prove it holds the same one is disconnected (gate.go).
	Secret []byte
	// Gater, when set, may refuse connections (fault injection in tests).
	Gater connmgr.ConnectionGater
}

// NewHost starts a libp2p host as the package doc describes.
func NewHost(cfg HostConfig) (host.Host, error) {
	if len(cfg.Secret) != 32 {
		return nil, fmt.Errorf("transport: the cluster secret is required (got %d bytes, want 32)", len(cfg.Secret))
	}
	gate, err := gatedTLS(cfg.Secret)
	if err != nil {
		return nil, err
	}
	opts := []libp2p.Option{
		// No SO_REUSEPORT: a second process on a node's port must fail to
		// start, not share the port and half its connections.
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Security(string(GateID), gate),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.Ping(false),
		libp2p.WithDialTimeout(5 * time.Second),
	}
	if cfg.Key != nil {
		opts = append(opts, libp2p.Identity(cfg.Key))
	}
	if cfg.Gater != nil {
		opts = append(opts, libp2p.ConnectionGater(cfg.Gater))
	}
	if len(cfg.Listen) > 0 {
		opts = append(opts, libp2p.ListenAddrStrings(cfg.Listen...))
	} else {
		opts = append(opts, libp2p.NoListenAddrs)
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("transport: start libp2p host: %w", err)
	}
	return h, nil
}

// DialAddrs parses addresses for dialing. An unspecified IP (0.0.0.0 or ::),
// which a node listens on but nobody can dial, is replaced by loopback, so
// that the seed's default --host=0.0.0.0 works on one machine.
func DialAddrs(addrs []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		s = strings.Replace(s, "/ip4/0.0.0.0/", "/ip4/127.0.0.1/", 1)
		s = strings.Replace(s, "/ip6/::/", "/ip6/::1/", 1)
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// DialAddrInfo is DialAddrs for the addresses of ai.
func DialAddrInfo(ai *peer.AddrInfo) ([]ma.Multiaddr, error) {
	s := make([]string, len(ai.Addrs))
	for i, a := range ai.Addrs {
		s[i] = a.String()
	}
	return DialAddrs(s)
}

// MoveAddrs records in ps that peer p is dialled at now: addresses of
// before that now lacks are dropped (a node that moved must not be dialled
// at its old address), those of now are added for good. before and now are
// address lists of two cluster descriptions, in DialAddrs form. An address
// that does not parse is an error, and nothing is changed.
func MoveAddrs(ps peerstore.AddrBook, p peer.ID, before, now []string) error {
	add, err := DialAddrs(now)
	if err != nil {
		return err
	}
	old, _ := DialAddrs(before) // an old list that does not parse was never added
	// Add first, then drop: a concurrent dial never sees no address.
	ps.AddAddrs(p, add, peerstore.PermanentAddrTTL)
	var gone []ma.Multiaddr
	for _, a := range old {
		if !slices.ContainsFunc(add, a.Equal) {
			gone = append(gone, a)
		}
	}
	if len(gone) > 0 {
		ps.SetAddrs(p, gone, 0)
	}
	return nil
}
