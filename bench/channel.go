package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/transport"
)

// channelProtocol is the stream protocol of MeasureChannel's two hosts.
const channelProtocol = "/dscluster/bench-channel/1.0.0"

// channelChunk is what MeasureChannel writes at a time: one 4+2 shard of a
// 256 KiB value, as the front end sends it.
const channelChunk = 64 << 10

// MeasureChannel returns the CPU, in ns per byte, that moving bytes through
// the nodes' secure channel costs this process, both ends counted: two
// libp2p hosts on loopback, set up as every node and front end is (the
// TLS with the cluster secret's gate, yamux; a throwaway secret, which
// costs the same), one writing 64 KiB at a time to the other for about d. With
// the nodes on this machine (make bench), a cluster operation that moves B
// bytes to and from them costs the machine at least B times this, before
// any storage work: Row.Ceiling turns it into the most operations per
// second this machine's cores allow.
func MeasureChannel(ctx context.Context, d time.Duration) (float64, error) {
	psk := make([]byte, 32)
	if _, err := rand.Read(psk); err != nil {
		return 0, err
	}
	server, err := transport.NewHost(transport.HostConfig{Secret: psk, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		return 0, fmt.Errorf("bench: channel: %w", err)
	}
	defer server.Close()
	client, err := transport.NewHost(transport.HostConfig{Secret: psk})
	if err != nil {
		return 0, fmt.Errorf("bench: channel: %w", err)
	}
	defer client.Close()
	read := make(chan int64, 1)
	server.SetStreamHandler(channelProtocol, func(s network.Stream) {
		n, _ := io.Copy(io.Discard, s)
		_ = s.Close()
		read <- n
	})
	if err := client.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		return 0, fmt.Errorf("bench: channel: connect: %w", err)
	}
	s, err := client.NewStream(ctx, server.ID(), channelProtocol)
	if err != nil {
		return 0, fmt.Errorf("bench: channel: open a stream: %w", err)
	}
	chunk := make([]byte, channelChunk)
	cpu0 := cpuTime()
	var sent int64
	for end := time.Now().Add(d); time.Now().Before(end); {
		if err := ctx.Err(); err != nil {
			_ = s.Reset()
			return 0, err
		}
		n, err := s.Write(chunk)
		sent += int64(n)
		if err != nil {
			_ = s.Reset()
			return 0, fmt.Errorf("bench: channel: write: %w", err)
		}
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return 0, fmt.Errorf("bench: channel: %w", err)
	}
	var got int64
	select {
	case got = <-read:
	case <-ctx.Done():
		_ = s.Reset()
		return 0, ctx.Err()
	}
	cpu := cpuTime() - cpu0
	_ = s.Close()
	if got != sent || sent == 0 {
		return 0, fmt.Errorf("bench: channel: %d bytes sent, %d read", sent, got)
	}
	return float64(cpu.Nanoseconds()) / float64(sent), nil
}
