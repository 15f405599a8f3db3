package node

import (
	"slices"
	"testing"

	"github.com/filedrive-team/go-ds-cluster/config"
)

// TestStatedAddrs: only addresses that name an IP and a port are
// announced; 0.0.0.0, :: and port 0 (TCP or QUIC) are not.
func TestStatedAddrs(t *testing.T) {
	n := &Node{cfg: &config.Node{Listen: []string{
		"/ip4/10.0.0.9/tcp/6735",
		"/ip4/0.0.0.0/tcp/6735",
		"/ip6/::/tcp/6735",
		"/ip4/10.0.0.9/tcp/0",
		"/ip4/10.0.0.9/udp/0/quic-v1",
		"/ip4/10.0.0.9/udp/6735/quic-v1",
		"not an address",
	}}}
	want := []string{"/ip4/10.0.0.9/tcp/6735", "/ip4/10.0.0.9/udp/6735/quic-v1"}
	if got := n.statedAddrs(); !slices.Equal(got, want) {
		t.Fatalf("stated %v, want %v", got, want)
	}
}
