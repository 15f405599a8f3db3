// Package ferret embeds FerretDB (a MongoDB-compatible server with an SQLite
// backend) so tests and test commands can run a MongoDB-compatible server on
// a loopback port without a real mongod.
package ferret

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// startTimeout bounds how long Start waits for the server to accept
// connections.
const startTimeout = 10 * time.Second

// Server is an embedded FerretDB instance using the SQLite backend.
type Server struct {
	dir  string
	addr string // actual bound host:port

	cancel context.CancelFunc
	done   chan struct{} // closed when the Run goroutine returned
	runErr error         // valid after done is closed
}

// Start starts an embedded FerretDB that stores its SQLite databases in dir
// (created if missing) and listens on the TCP address addr. Port 0 (for
// example "127.0.0.1:0") picks a free port; Addr and URI report the bound
// one. Start returns once the server accepts TCP connections.
func Start(dir, addr string) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("ferret: data dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("ferret: create data dir: %w", err)
	}

	// FerretDB wants a "file:" URI naming an existing directory, with a
	// trailing slash. Building it with net/url escapes odd characters.
	// Writers take SQLite's write lock when they begin: a transaction that
	// reads, then writes, fails at once with SQLITE_BUSY when another
	// committed meanwhile, which under a node's concurrent puts and deletes
	// made writes fail or stall for seconds.
	sqliteURL := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs) + "/", RawQuery: "_txlock=immediate"}).String()

	// Errors only: FerretDB logs every connection at info level.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// Telemetry: the embedded package never creates the telemetry reporter
	// and explicitly disables (and locks) telemetry in ferretdb.New, so no
	// network access happens; there is no config field for it.
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return nil, fmt.Errorf("ferret: start on %s with data dir %s: %w", addr, abs, err)
	}

	// ferretdb.New has already bound the listener, so MongoDBURI does not
	// block and reports the actual port (also for port 0).
	u, err := url.Parse(f.MongoDBURI())
	if err != nil {
		return nil, fmt.Errorf("ferret: parse server URI: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		dir:    abs,
		addr:   u.Host,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.runErr = f.Run(ctx)
	}()

	if err := s.waitAccepting(startTimeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitAccepting polls the listener with TCP dials until one succeeds.
func (s *Server) waitAccepting(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("ferret: server on %s exited during start: %v", s.addr, s.runErr)
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, 500*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("ferret: server on %s not accepting connections after %v: %w", s.addr, timeout, lastErr)
}

// Addr returns the bound TCP address (host:port).
func (s *Server) Addr() string { return s.addr }

// Dir returns the absolute data directory.
func (s *Server) Dir() string { return s.dir }

// URI returns the MongoDB connection string, e.g. mongodb://127.0.0.1:PORT/.
func (s *Server) URI() string { return "mongodb://" + s.addr + "/" }

// Stop stops the server and waits until its Run goroutine returned, the
// listener is closed and the SQLite backend is closed, so Start may be
// called again with the same addr and dir. Client connections still open
// are given up to 3 s (FerretDB's grace period) to go away; disconnect
// clients before Stop for a fast stop. Stop is idempotent.
func (s *Server) Stop() {
	s.cancel()
	<-s.done

	// Run closes the listener before returning; double-check that the port
	// no longer accepts connections (bounded, in case another process took it).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		_ = c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}
