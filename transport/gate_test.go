package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// gateServer is a gated server end on loopback: each accepted connection's
// SecureInbound result goes to results.
type gateServer struct {
	addr    string
	id      peer.ID
	results chan error
}

func startGateServer(t *testing.T, secret []byte, wait time.Duration) *gateServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	key, _, _ := ic.GenerateEd25519Key(rand.Reader)
	st, err := gatedWith(secret)(key)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	gs := &gateServer{addr: l.Addr().String(), id: id, results: make(chan error, 16)}
	go func() {
		for {
			raw, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				c, err := st.SecureInbound(ctx, raw, "")
				if err == nil {
					// Answer one echo, to show the connection works.
					buf := make([]byte, 5)
					if _, err = io.ReadFull(c, buf); err == nil {
						_, err = c.Write(buf)
					}
					c.Close()
				} else {
					raw.Close()
				}
				gs.results <- err
			}()
		}
	}()
	return gs
}

// result waits for the server's verdict on the next connection.
func (gs *gateServer) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-gs.results:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the server neither accepted nor refused the connection")
		return nil
	}
}

// plainClient completes a plain libp2p TLS handshake with gs as key, then
// hands the secured connection to act, which plays a misbehaving peer.
func plainClient(t *testing.T, gs *gateServer, key ic.PrivKey, act func(c sec.SecureConn)) {
	t.Helper()
	raw, err := net.Dial("tcp", gs.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tr, err := libp2ptls.New(GateID, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tr.SecureOutbound(context.Background(), raw, gs.id)
	if err != nil {
		t.Fatal(err)
	}
	act(c)
}

// gatedClient connects to gs through the gate with secret.
func gatedClient(t *testing.T, gs *gateServer, secret []byte) error {
	t.Helper()
	raw, err := net.Dial("tcp", gs.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	key, _, _ := ic.GenerateEd25519Key(rand.Reader)
	ct, err := gatedWith(secret)(key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ct.SecureOutbound(ctx, raw, gs.id)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		return err
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		return errors.New("no echo through the gate")
	}
	return nil
}

// TestGateRefusesStrangers: a peer without the secret, with a wrong one,
// one that replays a proof from another connection, one whose proof names
// other peers, and one that sends nothing are each refused by the server
// before any stream could run; a peer with the secret gets through after
// all of them.
func TestGateRefusesStrangers(t *testing.T) {
	gs := startGateServer(t, testSecret, 2*time.Second)

	if err := gatedClient(t, gs, testSecret); err != nil {
		t.Fatalf("a peer with the secret: %v", err)
	}
	if err := gs.result(t); err != nil {
		t.Fatalf("server, a peer with the secret: %v", err)
	}

	wrong := bytes.Repeat([]byte{8}, 32)
	if err := gatedClient(t, gs, wrong); !errors.Is(err, ErrNotInCluster) {
		t.Fatalf("a peer with a wrong secret: %v, want ErrNotInCluster", err)
	}
	if err := gs.result(t); !errors.Is(err, ErrNotInCluster) {
		t.Fatalf("server, a peer with a wrong secret: %v, want ErrNotInCluster", err)
	}

	key, _, _ := ic.GenerateEd25519Key(rand.Reader)
	me, _ := peer.IDFromPrivateKey(key)
	k, err := gateKey(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	// A proof for this session, captured: valid here, replayed below.
	var captured []byte
	plainClient(t, gs, key, func(c sec.SecureConn) {
		ex, err := exporter(c)
		if err != nil {
			t.Fatal(err)
		}
		captured = tag(k, ex, me, gs.id)
		if _, err := c.Write(captured); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, tagLen+5)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("a hand-made valid proof: %v", err)
		}
	})
	if err := gs.result(t); err != nil {
		t.Fatalf("server, a hand-made valid proof: %v", err)
	}

	for _, tc := range []struct {
		name string
		act  func(c sec.SecureConn)
	}{
		{"a proof replayed from another connection", func(c sec.SecureConn) { _, _ = c.Write(captured) }},
		{"a proof naming other peers", func(c sec.SecureConn) {
			ex, _ := exporter(c)
			_, _ = c.Write(tag(k, ex, gs.id, me)) // the server's own proof sent back
		}},
		{"a peer that sends nothing", func(c sec.SecureConn) { time.Sleep(3 * time.Second) }},
		{"a short proof", func(c sec.SecureConn) { _, _ = c.Write(captured[:10]); _ = c.Close() }},
	} {
		plainClient(t, gs, key, tc.act)
		if err := gs.result(t); !errors.Is(err, ErrNotInCluster) {
			t.Fatalf("server, %s: %v, want ErrNotInCluster", tc.name, err)
		}
	}

	if err := gatedClient(t, gs, testSecret); err != nil {
		t.Fatalf("a peer with the secret, after the strangers: %v", err)
	}
	if err := gs.result(t); err != nil {
		t.Fatalf("server, a peer with the secret after the strangers: %v", err)
	}
}

// TestGateBoundsHandshakesPerSource: one address may have at most
// maxHandshakesPerSource inbound handshakes under way; past that they are
// refused at once, and admitted again as the others end.
func TestGateBoundsHandshakesPerSource(t *testing.T) {
	s := newSources()
	s.maxPerIP = 2
	a := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}
	b := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 2}
	other := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 1}
	leave1, ok1 := s.enter(a)
	_, ok2 := s.enter(b)
	if _, ok3 := s.enter(a); !ok1 || !ok2 || ok3 {
		t.Fatalf("three handshakes from one IP with a bound of 2: admitted %v %v %v", ok1, ok2, ok3)
	}
	if _, ok := s.enter(other); !ok {
		t.Fatal("another IP refused")
	}
	leave1()
	if _, ok := s.enter(a); !ok {
		t.Fatal("refused after one ended")
	}
}
