package transport

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/filedrive-team/go-ds-cluster/internal/testpeer"
)

// TestMoveAddrs: the addresses an older description gave are dropped,
// the new ones kept for good, and an address learned elsewhere (identify)
// stays.
func TestMoveAddrs(t *testing.T) {
	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	p, err := peer.Decode(testpeer.ID("moved"))
	if err != nil {
		t.Fatal(err)
	}
	old := []string{"/ip4/10.0.0.1/tcp/6735", "/ip4/10.0.0.1/udp/6735/quic-v1"}
	learned := ma.StringCast("/ip4/192.168.1.1/tcp/4001")
	if err := MoveAddrs(ps, p, nil, old); err != nil {
		t.Fatal(err)
	}
	ps.AddAddr(p, learned, time.Hour)
	now := []string{"/ip4/10.0.0.2/tcp/6735", "/ip4/10.0.0.1/udp/6735/quic-v1"}
	if err := MoveAddrs(ps, p, old, now); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range ps.Addrs(p) {
		got = append(got, a.String())
	}
	slices.Sort(got)
	want := []string{now[1], now[0], learned.String()}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("addresses after the move: %v, want %v", got, want)
	}
	if err := MoveAddrs(ps, p, now, []string{"not an address"}); err == nil {
		t.Fatal("MoveAddrs took an address that does not parse")
	}
	if n := len(ps.Addrs(p)); n != 3 {
		t.Fatalf("%d addresses after a refused move, want the 3 before", n)
	}
}

// TestListenPortNotShared: a second host on a port another host listens on
// fails to start. libp2p's TCP transport sets SO_REUSEPORT by default, so
// a second node process started on a node's port used to share it and
// take half of its connections.
func TestListenPortNotShared(t *testing.T) {
	first, _, psk := testHosts(t)
	addr := first.Addrs()[0].String()
	second, err := NewHost(HostConfig{Secret: psk, Listen: []string{addr}})
	if err == nil {
		second.Close()
		t.Fatalf("a second host listens on %s beside the first", addr)
	}
}
