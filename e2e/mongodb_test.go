package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/mongods"
)

// TestSeedGettingStartedOnMongoDB is the Getting Started with every node
// on `dscluster --mongodb=URI`, as the seed README shows, against FerretDB
// (a MongoDB-compatible server; mongotest/ builds it, outside this module).
func TestSeedGettingStartedOnMongoDB(t *testing.T) {
	if os.Getenv("DSCLUSTER_TEST_MONGODB") == "" {
		t.Skip("builds FerretDB; runs with DSCLUSTER_TEST_MONGODB=1, as `make test-mongodb` sets it")
	}
	gettingStarted(t, startFerretDB(t))
}

// startFerretDB builds mongotest's ferretdb-test command, starts it on a
// free loopback port with its data under the test's folder, and returns
// its URI with the trailing slash (a database name follows). It is
// stopped by PID when the test ends.
func startFerretDB(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "mongotest"))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(binaries(t), "ferretdb-test")
	if _, err := os.Stat(exe); err != nil {
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", exe, "./cmd/ferretdb-test")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ferretdb-test in %s: %v\n%s", root, err, out)
		}
		t.Logf("build ferretdb-test: %s", time.Since(start).Round(time.Millisecond))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProcReady(t, "ferretdb", "ferretdb listening on", nil, exe, "--dir="+filepath.Join(t.TempDir(), "ferretdb"), "--listen="+addr)
	p.waitReady(t)
	return "mongodb://" + addr + "/"
}

// mongoURI is node i's URI on the server at uri: a database of its own,
// but node 0's, the cluster's default.
func mongoURI(uri string, i int) string {
	if i == 0 {
		return uri
	}
	return fmt.Sprintf("%snode%d", uri, i)
}

// mongoShards counts the shards node i (config in dir) keeps in its
// database on the server at uri.
func mongoShards(t *testing.T, uri string, i int, dir string) int {
	t.Helper()
	cfg, err := config.LoadNode(filepath.Join(dir, config.FileName))
	if err != nil {
		t.Fatal(err)
	}
	key, err := config.DecodePrivKey(cfg.PrivKey)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != "mongodb" {
		t.Errorf("node %d: config store %q after --mongodb, want mongodb", i, cfg.Store)
	}
	ctx := context.Background()
	store, err := mongods.Open(ctx, mongoURI(uri, i), mongods.Options{Database: "dscluster-" + cfg.Cluster.ID, Collection: id.String()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	res, err := store.Query(ctx, query.Query{KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all, err := res.Rest()
	if err != nil {
		t.Fatal(err)
	}
	return len(all)
}
