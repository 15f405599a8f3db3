package transport

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
)

var log = logging.Logger("dscluster/transport")

// GateID is the security protocol every dscluster host speaks: libp2p's TLS
// 1.3, then each side proves it holds the cluster secret (see gate). A peer
// that offers only plain TLS, Noise or anything else finds no protocol in
// common and is disconnected before any handshake.
const GateID protocol.ID = "/dscluster/tls-secret/1.0.0"

// The gate's proof. Once TLS is up, each side sends
//
//	HMAC-SHA256(K, exporter || own peer ID || remote peer ID)
//
// where K is derived from the cluster secret with HKDF and exporter is the
// TLS session's exported keying material (RFC 5705) under gateLabel. The
// tag is bound to this session (a tag seen on another connection does not
// verify here) and to both peers' IDs (a peer cannot pass another's tag
// off as its own), and a peer learns nothing about K from it. Each side
// checks the other's in constant time and closes the connection, before
// any stream muxer runs, when it is wrong, missing or late. Nothing is
// encrypted twice: the bytes after the tags are plain libp2p TLS records.
const (
	gateLabel   = "EXPORTER-dscluster-cluster-secret"
	gateKeyInfo = "dscluster cluster secret v1"
	tagLen      = sha256.Size
	// gateTimeout bounds the exchange of tags once TLS is up.
	gateTimeout = 10 * time.Second
	// maxHandshakesPerSource bounds the inbound handshakes one remote IP
	// may have under way at once: a stranger cannot make a node spend
	// its CPU on TLS handshakes without limit.
	maxHandshakesPerSource = 16
	// refusalLogEvery is how often a node logs the refusals of one address.
	refusalLogEvery = time.Minute
)

// ErrNotInCluster is the handshake error for a peer that does not prove it
// holds the cluster secret.
var ErrNotInCluster = errors.New("transport: the peer did not prove it holds the cluster secret (a wrong or missing secret, or not a dscluster peer)")

// gateKey derives the HMAC key from the cluster secret.
func gateKey(secret []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, nil, gateKeyInfo, sha256.Size)
}

// tag is the proof side from sends to side to over the TLS session whose
// exported keying material is exporter.
func tag(key, exporter []byte, from, to peer.ID) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(exporter)
	m.Write([]byte(from))
	m.Write([]byte(to))
	return m.Sum(nil)
}

// exporter returns the keying material of c's TLS session for the gate.
func exporter(c sec.SecureConn) ([]byte, error) {
	tc, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil, fmt.Errorf("transport: gate: %T is not a TLS connection", c)
	}
	cs := tc.ConnectionState()
	return cs.ExportKeyingMaterial(gateLabel, nil, 32)
}

// prove sends this side's tag on c (a TLS connection whose handshake is
// done) and checks the peer's, within deadline; raw is the connection
// below TLS, whose deadline bounds both.
func prove(c sec.SecureConn, raw net.Conn, key []byte, deadline time.Time) error {
	ex, err := exporter(c)
	if err != nil {
		return err
	}
	local, remote := c.LocalPeer(), c.RemotePeer()
	if err := raw.SetDeadline(deadline); err != nil {
		return err
	}
	defer raw.SetDeadline(time.Time{})
	// Both sides write first: 32 bytes fit in any socket buffer, so
	// neither waits on the other's read.
	if _, err := c.Write(tag(key, ex, local, remote)); err != nil {
		return fmt.Errorf("%w: send the proof: %v", ErrNotInCluster, err)
	}
	got := make([]byte, tagLen)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("%w: no proof from %s: %v", ErrNotInCluster, remote, err)
	}
	if !hmac.Equal(got, tag(key, ex, remote, local)) {
		return fmt.Errorf("%w: %s sent a proof that does not verify", ErrNotInCluster, remote)
	}
	return nil
}

// sources counts the inbound handshakes under way per remote IP, and
// when each was last logged as refused.
type sources struct {
	mu       sync.Mutex
	active   map[string]int
	lastLog  map[string]time.Time
	maxPerIP int
}

func newSources() *sources {
	return &sources{active: map[string]int{}, lastLog: map[string]time.Time{}, maxPerIP: maxHandshakesPerSource}
}

// enter admits one more handshake from addr's IP, or reports false when
// that IP has too many under way.
func (s *sources) enter(addr net.Addr) (leave func(), ok bool) {
	ip := hostOf(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[ip] >= s.maxPerIP {
		return nil, false
	}
	s.active[ip]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.active[ip]--; s.active[ip] <= 0 {
			delete(s.active, ip)
		}
	}, true
}

// refused logs a refused peer, at most once per refusalLogEvery per IP.
func (s *sources) refused(addr net.Addr, err error) {
	ip := hostOf(addr)
	now := time.Now()
	s.mu.Lock()
	last, seen := s.lastLog[ip]
	if seen && now.Sub(last) < refusalLogEvery {
		s.mu.Unlock()
		return
	}
	for k, t := range s.lastLog { // forget old entries: the map stays small
		if now.Sub(t) >= refusalLogEvery {
			delete(s.lastLog, k)
		}
	}
	s.lastLog[ip] = now
	s.mu.Unlock()
	log.Warnw("refused a connection: no proof of the cluster secret (logged once a minute per address)", "from", addr.String(), "err", err)
}

func hostOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// handshakeDeadline is the deadline of the gate's exchange under ctx.
func handshakeDeadline(ctx context.Context) time.Time {
	d := time.Now().Add(gateTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(d) {
		return dl
	}
	return d
}
