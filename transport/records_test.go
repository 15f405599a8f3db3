package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// countingConn counts the writes made to it.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// securePair connects a client and a server over loopback TCP and secures
// the connection with the given transports. It returns both secured ends
// and the client's insecure connection (to count the writes TLS makes).
func securePair(t testing.TB, client, server func(ic.PrivKey) (sec.SecureTransport, error)) (sec.SecureConn, sec.SecureConn, *countingConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ckey, _, _ := ic.GenerateEd25519Key(rand.Reader)
	skey, _, _ := ic.GenerateEd25519Key(rand.Reader)
	ct, err := client(ckey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := server(skey)
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := peer.IDFromPrivateKey(skey)

	type result struct {
		c   sec.SecureConn
		err error
	}
	srv := make(chan result, 1)
	go func() {
		raw, err := l.Accept()
		if err != nil {
			srv <- result{nil, err}
			return
		}
		c, err := st.SecureInbound(context.Background(), raw, "")
		srv <- result{c, err}
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingConn{Conn: raw}
	cc, err := ct.SecureOutbound(context.Background(), counted, sid)
	if err != nil {
		t.Fatal(err)
	}
	s := <-srv
	if s.err != nil {
		t.Fatal(s.err)
	}
	t.Cleanup(func() {
		cc.Close()
		s.c.Close()
	})
	return cc, s.c, counted
}

func plainTLS(key ic.PrivKey) (sec.SecureTransport, error) {
	return libp2ptls.New(libp2ptls.ID, key, nil)
}

// testSecret is the cluster secret of the gated ends in these tests.
var testSecret = bytes.Repeat([]byte{7}, 32)

func gathered(key ic.PrivKey) (sec.SecureTransport, error) { return gatedWith(testSecret)(key) }

// gatedWith makes gated transports (gatedTLS) with secret.
func gatedWith(secret []byte) func(ic.PrivKey) (sec.SecureTransport, error) {
	return func(key ic.PrivKey) (sec.SecureTransport, error) {
		ctor, err := gatedTLS(secret)
		if err != nil {
			return nil, err
		}
		return ctor(GateID, key, nil)
	}
}

// TestGatheredTLSWritesOnce: a 64 KiB write, four full TLS records and a
// bit, reaches the connection below TLS as one write, where plain libp2p
// TLS makes five, and the peer reads the same bytes.
func TestGatheredTLSWritesOnce(t *testing.T) {
	msg := make([]byte, 64<<10+100)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client func(ic.PrivKey) (sec.SecureTransport, error)
		writes int64
	}{
		{"plain", plainTLS, 5},
		{"gathered", gathered, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s, below := securePair(t, tc.client, tc.client)
			// Warm up past crypto/tls's small first records (it grows
			// them to 16 KiB over the first 128 KiB sent).
			warm := make([]byte, 256<<10)
			warmed := make(chan error, 1)
			go func() {
				_, err := io.CopyN(io.Discard, s, int64(len(warm)))
				warmed <- err
			}()
			if _, err := c.Write(warm); err != nil {
				t.Fatal(err)
			}
			if err := <-warmed; err != nil {
				t.Fatal(err)
			}
			got := make(chan []byte, 1)
			go func() {
				b := make([]byte, len(msg))
				if _, err := io.ReadFull(s, b); err != nil {
					t.Error(err)
				}
				got <- b
			}()
			before := below.writes.Load()
			n, err := c.Write(msg)
			if err != nil || n != len(msg) {
				t.Fatalf("Write: %d, %v; want %d, nil", n, err, len(msg))
			}
			if w := below.writes.Load() - before; w != tc.writes {
				t.Fatalf("a %d-byte write made %d writes below TLS, want %d", len(msg), w, tc.writes)
			}
			if b := <-got; !bytes.Equal(b, msg) {
				t.Fatal("the peer read other bytes than were written")
			}
		})
	}
}

// TestGatedEndsTalk: two gated ends exchange many writes of mixed sizes
// both ways at once, from several writers, and each side reads exactly
// what the other wrote.
func TestGatedEndsTalk(t *testing.T) {
	for _, tc := range []struct {
		name           string
		client, server func(ic.PrivKey) (sec.SecureTransport, error)
	}{
		{"both gated", gathered, gathered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s, _ := securePair(t, tc.client, tc.server)
			var wg sync.WaitGroup
			size := func(w, i int) int { return 1 + (w*50+i)*997%(70<<10) }
			total := 0
			for w := 0; w < 4; w++ {
				for i := 0; i < 50; i++ {
					total += size(w, i)
				}
			}
			for _, dir := range []struct{ w, r sec.SecureConn }{{c, s}, {s, c}} {
				// Each write is one writer's chunk; writers take a lock
				// so that chunks are whole on the wire, as yamux's single
				// send loop keeps frames whole.
				var (
					mu   sync.Mutex
					sent bytes.Buffer
				)
				var writers sync.WaitGroup
				for w := 0; w < 4; w++ {
					writers.Add(1)
					go func() {
						defer writers.Done()
						for i := 0; i < 50; i++ {
							chunk := make([]byte, size(w, i))
							_, _ = rand.Read(chunk)
							mu.Lock()
							sent.Write(chunk)
							_, err := dir.w.Write(chunk)
							mu.Unlock()
							if err != nil {
								t.Error(err)
								return
							}
						}
					}()
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					got := make([]byte, total)
					if _, err := io.ReadFull(dir.r, got); err != nil {
						t.Error(err)
						return
					}
					writers.Wait()
					if !bytes.Equal(got, sent.Bytes()) {
						t.Error("read other bytes than were written")
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkSecureWrite_64K: one side writes 64 KiB frames through TLS over
// loopback TCP and the other reads them, with plain libp2p TLS and with
// gathered records (and the gate), in the same run.
func BenchmarkSecureWrite_64K(b *testing.B) {
	for _, tc := range []struct {
		name      string
		transport func(ic.PrivKey) (sec.SecureTransport, error)
	}{{"tls", plainTLS}, {"gathered", gathered}} {
		b.Run(tc.name, func(b *testing.B) {
			c, s, _ := securePair(b, tc.transport, tc.transport)
			pump64K(b, c, s)
		})
	}
}

// BenchmarkChannelCPU_64K: the CPU that moving bytes between two hosts
// costs this process (both ends, user and system time, from getrusage),
// per byte: over plain loopback TCP, under libp2p's TLS alone, and under
// the gated TLS every host runs (the cluster secret checked once, in the
// handshake). cpu-ms/put256K and cpu-ms/get256K are that cost for the
// bytes one 4+2 put (six 64 KiB shards) and one get (four) move: a floor
// under the whole machine's CPU per operation, before any storage work.
func BenchmarkChannelCPU_64K(b *testing.B) {
	for _, tc := range []struct {
		name string
		pair func(b *testing.B) (io.Writer, io.Reader)
	}{
		{"tcp", plainPair},
		{"tls", func(b *testing.B) (io.Writer, io.Reader) {
			c, s, _ := securePair(b, plainTLS, plainTLS)
			return c, s
		}},
		{"gated", func(b *testing.B) (io.Writer, io.Reader) {
			c, s, _ := securePair(b, gathered, gathered)
			return c, s
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w, r := tc.pair(b)
			before := cpuTime(b)
			moved := pump64K(b, w, r)
			perByte := float64(cpuTime(b)-before) / float64(moved)
			b.ReportMetric(perByte, "cpu-ns/B")
			b.ReportMetric(perByte*6*(64<<10)/1e6, "cpu-ms/put256K")
			b.ReportMetric(perByte*4*(64<<10)/1e6, "cpu-ms/get256K")
		})
	}
}

// pump64K writes b.N frames of 64 KiB to w, timed, while r is read to the
// end of them, and returns the bytes moved.
func pump64K(b *testing.B, w io.Writer, r io.Reader) int64 {
	msg := make([]byte, 64<<10)
	total := int64(b.N) * int64(len(msg))
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, r, total)
		done <- err
	}()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return total
}

// plainPair connects two ends over loopback TCP, with nothing above it.
func plainPair(b *testing.B) (io.Writer, io.Reader) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			b.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		b.FailNow()
	}
	b.Cleanup(func() {
		c.Close()
		s.Close()
	})
	return c, s
}

// cpuTime is the CPU this process has used, user and system, in ns.
func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
