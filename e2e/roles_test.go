package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/node"
)

// TestClientRolesCLI: client roles from the command line (DESIGN §6).
// dsclient init and dscfg client write an identity; dsclient id prints its
// peer ID; once a client is granted read-write, a read-only client gets
// files but cannot add them, and a client without a role is refused, each
// with an error that says why.
func TestClientRolesCLI(t *testing.T) {
	c := startCluster(t)
	tmp := t.TempDir()
	reader := filepath.Join(tmp, "reader")
	if r := run(t, c.env, bin(t, "dsclient"), "--conf="+reader, "init", "--bootstrapper="+c.boot); r.code != 0 {
		t.Fatalf("dsclient init: %s", r)
	}
	stranger := filepath.Join(tmp, "clusterds.json")
	if r := run(t, nil, bin(t, "dscfg"), "client", "--cluster="+c.dir0, stranger); r.code != 0 {
		t.Fatalf("dscfg client: %s", r)
	}
	id := func(conf string) string {
		t.Helper()
		r := run(t, nil, bin(t, "dsclient"), "--conf="+conf, "id")
		if r.code != 0 || !strings.HasPrefix(lastLine(r.stdout), "12D3KooW") {
			t.Fatalf("dsclient id: %s", r)
		}
		return lastLine(r.stdout)
	}
	adminID, readerID, strangerID := id(c.client), id(reader), id(stranger)
	if adminID == readerID || readerID == strangerID || id(c.client) != adminID {
		t.Fatalf("identities %s %s %s: want distinct and stable", adminID, readerID, strangerID)
	}
	// init again keeps the identity a role is granted to.
	if r := run(t, c.env, bin(t, "dsclient"), "--conf="+reader, "init", "--bootstrapper="+c.boot); r.code != 0 || id(reader) != readerID {
		t.Fatalf("dsclient init again: %s; identity %s, want %s", r, id(reader), readerID)
	}

	file := filepath.Join(tmp, "file")
	want := writeRandom(t, file, 1<<20)
	if r := c.dsclient(t, "client", "grant", adminID, "--role=read-write"); r.code != 0 {
		t.Fatalf("grant: %s", r)
	}
	if r := c.dsclient(t, "client", "grant", readerID, "--role=read-only"); r.code != 0 {
		t.Fatalf("grant: %s", r)
	}
	if r := c.dsclient(t, "client", "grant", readerID, "--role=admin"); r.code == 0 || !strings.Contains(r.stderr, `role "admin" is unknown`) {
		t.Fatalf("grant of an unknown role: %s", r)
	}
	// Each node applies the grants once it follows the raft log (the
	// leader adds the nodes past the first voters within a heartbeat).
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := c.dsclient(t, "status", "--json")
		var st struct {
			Nodes []struct{ Status *struct{ Clients int } }
		}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r)
		}
		n := 0
		for _, nd := range st.Nodes {
			if nd.Status != nil && nd.Status.Clients == 2 {
				n++
			}
		}
		if n == len(c.nodes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d nodes apply the 2 client roles: %s", n, len(c.nodes), r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r := c.dsclient(t, "add", file)
	if r.code != 0 {
		t.Fatalf("add by the read-write client: %s", r)
	}
	root := lastLine(r.stdout)

	out := filepath.Join(tmp, "out")
	if r := run(t, nil, bin(t, "dsclient"), "--conf="+reader, "get", root, out); r.code != 0 {
		t.Fatalf("get by the read-only client: %s", r)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the read-only client got %d bytes (%v), want the file's %d", len(got), err, len(want))
	}
	// (A file the cluster has would be added without writing a block.)
	other := filepath.Join(tmp, "other")
	writeRandom(t, other, 64<<10)
	r = run(t, nil, bin(t, "dsclient"), "--conf="+reader, "add", other)
	if r.code == 0 || !strings.Contains(r.stderr, "is a read-only client") {
		t.Fatalf("add by the read-only client: %s; want it refused", r)
	}
	if r := run(t, nil, bin(t, "dsclient"), "--conf="+stranger, "get", root, out); r.code == 0 || !strings.Contains(r.stderr, "has no role") {
		t.Fatalf("get by a client without a role: %s; want it refused", r)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		r := c.dsclient(t, "client", "list")
		if r.code == 0 && strings.Contains(r.stdout, adminID+"  read-write") && strings.Contains(r.stdout, readerID+"  read-only") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client list: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := c.dsclient(t, "client", "revoke", adminID); r.code == 0 || !strings.Contains(r.stderr, "last read-write client") {
		t.Fatalf("revoke of the last read-write client: %s; want it refused", r)
	}
	if r := c.dsclient(t, "status"); !strings.Contains(r.stdout, "client roles: enforced, 2 clients") {
		t.Fatalf("status: %s", r)
	}

	// The cluster secret alone no longer takes a node's identity from the
	// bootstrapper, nor makes a new node a member.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret := strings.TrimPrefix(c.env[0], "DSCLUSTER_SECRET=")
	if _, err := node.FetchNodeConfig(ctx, c.boot, 3, secret); err == nil || !strings.Contains(err.Error(), "no node identities once client roles are enforced") {
		t.Fatalf("identity 3 fetched once roles are enforced: %v", err)
	}
	newDir := filepath.Join(tmp, "new")
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))
	if r := run(t, c.env, bin(t, "dscluster"), "--conf="+newDir, "--bootstrapper="+c.boot, "--listen="+listen); r.code == 0 || !strings.Contains(r.stderr, "is not admitted") {
		t.Fatalf("a new node joining a cluster that enforces roles: %s; want it refused until admitted", r)
	}
	nc, err := config.LoadNode(filepath.Join(newDir, config.FileName))
	if err != nil {
		t.Fatal(err)
	}
	key, err := config.DecodePrivKey(nc.PrivKey)
	if err != nil {
		t.Fatal(err)
	}
	newID, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if r := run(t, nil, bin(t, "dsclient"), "--conf="+reader, "node", "admit", newID.String()); r.code == 0 || !strings.Contains(r.stderr, "read-only client") {
		t.Fatalf("admit by the read-only client: %s; want it refused", r)
	}
	if r := c.dsclient(t, "node", "admit", newID.String()); r.code != 0 {
		t.Fatalf("admit: %s", r)
	}
	p := startProc(t, "node 6 (admitted)", c.env, bin(t, "dscluster"), "--conf="+newDir, "--bootstrapper="+c.boot)
	c.nodes = append(c.nodes, p)
	p.waitReady(t)
	c.waitStatus(t, 30*time.Second, "the admitted node is a member", func(st *statusOut) bool {
		s := st.state(newID.String())
		return s == "joining" || s == "up"
	})
}
