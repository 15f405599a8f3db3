package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The kubo tests build kubo v0.43.1 with the clusterds plugin (the
// ipfsplugin module), which takes minutes from a cold cache: they run only
// when DSCLUSTER_TEST_IPFS=1, as `make test-ipfs` sets it.
const ipfsEnv = "DSCLUSTER_TEST_IPFS"

var (
	ipfsOnce sync.Once
	ipfsErr  error
	ipfsTook time.Duration
)

// ipfsBin builds the ipfs binary (once) next to the other binaries.
func ipfsBin(t *testing.T) string {
	t.Helper()
	if os.Getenv(ipfsEnv) != "1" {
		t.Skipf("builds kubo; set %s=1 (make test-ipfs) to run", ipfsEnv)
	}
	dir := binaries(t)
	ipfsOnce.Do(func() {
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "ipfs"), "./cmd/ipfs")
		cmd.Dir = filepath.Join("..", "ipfsplugin")
		out, err := cmd.CombinedOutput()
		ipfsTook = time.Since(start)
		if err != nil {
			ipfsErr = fmt.Errorf("go build ./cmd/ipfs in ipfsplugin: %v\n%s", err, out)
		}
	})
	if ipfsErr != nil {
		t.Fatal(ipfsErr)
	}
	return filepath.Join(dir, "ipfs")
}

// cluster is a running cluster of dscluster processes.
type cluster struct {
	boot   string
	dir0   string
	dirs   []string // --conf of each node
	args   []string // extra dscluster flags every node runs with
	env    []string
	nodes  []*proc
	client string // dsclient config dir
}

// startCluster runs dscfg and starts numNodes nodes on free loopback ports.
func startCluster(t *testing.T) *cluster { return startClusterN(t, numNodes) }

// startClusterN runs dscfg for n nodes (4+2) and starts them on free
// loopback ports, each with the extra dscluster flags args.
func startClusterN(t *testing.T, n int, args ...string) *cluster {
	t.Helper()
	tmp := t.TempDir()
	c := &cluster{dir0: filepath.Join(tmp, "srv0"), client: filepath.Join(tmp, "client"), args: args}
	r := run(t, nil, bin(t, "dscfg"), "cluster", fmt.Sprintf("--cluster-node-number=%d", n), "--base-port=0", "--host=127.0.0.1", c.dir0)
	if r.code != 0 {
		t.Fatalf("dscfg cluster: %s", r)
	}
	c.boot = lastLine(r.stdout)
	key, err := os.ReadFile(filepath.Join(c.dir0, "swarm.key"))
	if err != nil {
		t.Fatal(err)
	}
	c.env = []string{"DSCLUSTER_SECRET=" + lastLine(string(key))}
	c.dirs = append(c.dirs, c.dir0)
	c.nodes = append(c.nodes, startProc(t, "node 0", nil, bin(t, "dscluster"), append([]string{"--conf=" + c.dir0}, args...)...))
	c.nodes[0].waitReady(t)
	for i := 1; i < n; i++ {
		dir := filepath.Join(tmp, fmt.Sprintf("srv%d", i))
		c.dirs = append(c.dirs, dir)
		c.nodes = append(c.nodes, startProc(t, fmt.Sprintf("node %d", i), c.env, bin(t, "dscluster"),
			append([]string{"--conf=" + dir, "--bootstrapper=" + c.boot, fmt.Sprintf("--identity=%d", i)}, args...)...))
	}
	for _, p := range c.nodes[1:] {
		p.waitReady(t)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.nodes {
				t.Log(p.describe())
			}
		}
	})
	if r := c.dsclient(t, "init", "--bootstrapper="+c.boot); r.code != 0 {
		t.Fatalf("dsclient init: %s", r)
	}
	return c
}

func (c *cluster) dsclient(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, c.env, bin(t, "dsclient"), append([]string{"--conf=" + c.client}, args...)...)
}

// shardKeys is the number of index entries (live shards) the nodes report.
func (c *cluster) shardKeys(t *testing.T) int {
	t.Helper()
	r := c.dsclient(t, "status", "--json")
	var st struct {
		Nodes []struct {
			Reachable bool
			Status    *struct{ Keys int }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("dsclient status --json: %v\n%s", err, r)
	}
	n := 0
	for _, nd := range st.Nodes {
		if nd.Status != nil {
			n += nd.Status.Keys
		}
	}
	return n
}

func writeRandom(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIPFSAddCIDs: dsclient add gives the CIDs kubo's ipfs add gives, for
// files around the chunk size, a nested folder with a symlink in it, and a
// symlink itself, CIDv0 and CIDv1, raw leaves on and off.
func TestIPFSAddCIDs(t *testing.T) {
	ipfs := ipfsBin(t)
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	env := []string{"IPFS_PATH=" + repo, "IPFS_TELEMETRY=off"}
	if r := run(t, env, ipfs, "init", "--profile=test"); r.code != 0 {
		t.Fatalf("ipfs init: %s", r)
	}
	inputs := map[string]int{"0B": 0, "1B": 1, "256KiB": 256 << 10, "256KiB+1": 256<<10 + 1, "10MiB": 10 << 20}
	for name, n := range inputs {
		writeRandom(t, filepath.Join(tmp, "in", name), n)
	}
	folder := filepath.Join(tmp, "folder")
	writeRandom(t, filepath.Join(folder, "a.bin"), 1000)
	writeRandom(t, filepath.Join(folder, "sub", "b.bin"), 300<<10)
	writeRandom(t, filepath.Join(folder, "sub", "deeper", "c.bin"), 10)
	writeRandom(t, filepath.Join(folder, "empty.bin"), 0)
	if err := os.Symlink("a.bin", filepath.Join(folder, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("1B", filepath.Join(tmp, "in", "link")); err != nil {
		t.Fatal(err)
	}

	type variant struct{ cidVersion, rawLeaves string }
	variants := []variant{{"0", "false"}, {"0", "true"}, {"1", "false"}, {"1", "true"}}
	paths := []string{folder}
	for name := range inputs {
		paths = append(paths, filepath.Join(tmp, "in", name))
	}
	paths = append(paths, filepath.Join(tmp, "in", "link"))
	for _, v := range variants {
		for _, p := range paths {
			args := []string{"add", "-n", "-Q", "--cid-version=" + v.cidVersion, "--raw-leaves=" + v.rawLeaves}
			if p == folder {
				args = append(args, "-r")
			}
			args = append(args, p)
			want := run(t, env, ipfs, args...)
			got := run(t, nil, bin(t, "dsclient"), args...)
			if want.code != 0 || got.code != 0 {
				t.Fatalf("%v: ipfs: %s\ndsclient: %s", args, want, got)
			}
			if lastLine(got.stdout) != lastLine(want.stdout) {
				t.Errorf("%s cid-version=%s raw-leaves=%s: dsclient %s, ipfs %s", filepath.Base(p), v.cidVersion, v.rawLeaves, lastLine(got.stdout), lastLine(want.stdout))
			}
		}
	}
}

// TestIPFSDaemonOnCluster runs a kubo daemon whose /blocks is the cluster.
func TestIPFSDaemonOnCluster(t *testing.T) {
	c := startCluster(t)
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "ipfs")
	ipfsCmd, startDaemon := kuboOn(t, c, repo)
	daemon := startDaemon()

	big := filepath.Join(tmp, "big.bin")
	want := writeRandom(t, big, 30<<20)
	r := ipfsCmd("add", "-Q", big)
	if r.code != 0 {
		t.Fatalf("ipfs add: %s", r)
	}
	bigCID := lastLine(r.stdout)
	if got := ipfsCmd("cat", bigCID); got.code != 0 || got.stdout != string(want) {
		t.Fatalf("ipfs cat %s: %d bytes, equal=%v: %s", bigCID, len(got.stdout), got.stdout == string(want), got.stderr)
	}
	folder := filepath.Join(tmp, "folder")
	inner := writeRandom(t, filepath.Join(folder, "sub", "x.bin"), 700<<10)
	r = ipfsCmd("add", "-Q", "-r", folder)
	if r.code != 0 {
		t.Fatalf("ipfs add -r: %s", r)
	}
	folderCID := lastLine(r.stdout)
	if got := ipfsCmd("cat", folderCID+"/sub/x.bin"); got.code != 0 || got.stdout != string(inner) {
		t.Fatalf("ipfs cat %s/sub/x.bin: %s", folderCID, got.stderr)
	}
	if r := ipfsCmd("repo", "verify"); r.code != 0 {
		t.Fatalf("ipfs repo verify: %s", r)
	}
	// The plugin's front end registers its metrics with kubo's registry.
	if body := kuboMetrics(t, repo); !strings.Contains(body, `dscluster_client_operations_total{op="put",result="ok"}`) {
		t.Fatalf("kubo's /debug/metrics/prometheus lacks the front end's put count:\n%.2000s", body)
	}
	r = ipfsCmd("repo", "stat", "--size-only")
	if r.code != 0 {
		t.Fatalf("ipfs repo stat: %s", r)
	}
	if size := repoSize(t, r.stdout); size < 30<<20 {
		t.Fatalf("ipfs repo stat: RepoSize %d, want at least the 30 MiB added\n%s", size, r.stdout)
	}

	// What ipfs add stored, dsclient get reads; and the other way round.
	out := filepath.Join(tmp, "via-dsclient.bin")
	if r := c.dsclient(t, "get", bigCID, out); r.code != 0 {
		t.Fatalf("dsclient get %s: %s", bigCID, r)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, want) {
		t.Fatal("dsclient get of what ipfs add stored: bytes differ")
	}
	small := filepath.Join(tmp, "small.bin")
	smallWant := writeRandom(t, small, 3<<20+7)
	r = c.dsclient(t, "add", small)
	if r.code != 0 {
		t.Fatalf("dsclient add: %s", r)
	}
	smallCID := lastLine(r.stdout)
	if got := ipfsCmd("cat", smallCID); got.code != 0 || got.stdout != string(smallWant) {
		t.Fatalf("ipfs cat of what dsclient add stored (%s): %s", smallCID, got.stderr)
	}

	// Blocks that dsclient stored are not pinned in kubo: pin them so that
	// the gc below keeps them.
	if r := ipfsCmd("pin", "add", smallCID); r.code != 0 {
		t.Fatalf("ipfs pin add %s: %s", smallCID, r)
	}

	// pin rm + repo gc removes the big file's blocks from the cluster.
	before := c.shardKeys(t)
	if r := ipfsCmd("pin", "rm", bigCID); r.code != 0 {
		t.Fatalf("ipfs pin rm: %s", r)
	}
	if r := ipfsCmd("repo", "gc"); r.code != 0 {
		t.Fatalf("ipfs repo gc: %s", r)
	}
	after := c.shardKeys(t)
	// 30 MiB is 120 leaf blocks of 4+2 shards: at least 600 shards go.
	if before-after < 600 {
		t.Fatalf("cluster shard count %d before gc, %d after: want at least 600 fewer", before, after)
	}

	// Restart the daemon: the data is still there.
	if err := daemon.signalAndWait(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ipfs daemon exit: %v\n%s", err, daemon.describe())
	}
	daemon = startDaemon()
	if got := ipfsCmd("cat", folderCID+"/sub/x.bin"); got.code != 0 || got.stdout != string(inner) {
		t.Fatalf("after restart, ipfs cat %s/sub/x.bin: %s", folderCID, got.stderr)
	}

	// SIGKILL 2 cluster nodes: ipfs cat still returns the same bytes.
	for _, i := range []int{2, 5} {
		_ = c.nodes[i].signalAndWait(t, syscall.SIGKILL)
	}
	if got := ipfsCmd("cat", smallCID); got.code != 0 || got.stdout != string(smallWant) {
		t.Fatalf("with 2 cluster nodes killed, ipfs cat %s: %s", smallCID, got.stderr)
	}
	if got := ipfsCmd("cat", folderCID+"/sub/x.bin"); got.code != 0 || got.stdout != string(inner) {
		t.Fatalf("with 2 cluster nodes killed, ipfs cat folder file: %s", got.stderr)
	}
	if err := daemon.signalAndWait(t, syscall.SIGTERM); err != nil {
		t.Fatalf("ipfs daemon exit: %v", err)
	}
}

// kuboOn makes a kubo repo whose /blocks is cluster c, with the client
// config's extra dscfg client flags (a namespace), and returns how to run
// ipfs commands on it and start its daemon.
func kuboOn(t *testing.T, c *cluster, repo string, dscfgFlags ...string) (ipfsCmd func(args ...string) result, startDaemon func() *proc) {
	t.Helper()
	ipfs := ipfsBin(t)
	env := append([]string{"IPFS_PATH=" + repo, "IPFS_TELEMETRY=off"}, c.env...)
	ipfsCmd = func(args ...string) result { return run(t, env, ipfs, args...) }
	// The profile's spec names $IPFS_PATH/clusterds.json, written first.
	args := append([]string{"client", "--cluster=" + c.dir0}, dscfgFlags...)
	if r := run(t, nil, bin(t, "dscfg"), append(args, filepath.Join(repo, "clusterds.json"))...); r.code != 0 {
		t.Fatalf("dscfg client: %s", r)
	}
	if r := ipfsCmd("init", "--profile=clusterds,test"); r.code != 0 {
		t.Fatalf("ipfs init --profile=clusterds,test: %s", r)
	}
	startDaemon = func() *proc {
		p := startProc(t, "ipfs daemon "+filepath.Base(repo), env, ipfs, "daemon", "--offline")
		select {
		case <-waitLine(p, "Daemon is ready"):
		case <-p.done:
			t.Fatalf("ipfs daemon exited: %v\n%s", p.err, p.describe())
		case <-time.After(60 * time.Second):
			t.Fatalf("ipfs daemon not ready\n%s", p.describe())
		}
		return p
	}
	return ipfsCmd, startDaemon
}

// TestIPFSNamespaces runs two kubo daemons on one cluster, each in a
// namespace of its own: neither sees the other's blocks, repo gc on one
// leaves every block of the other readable, and repo stat counts the
// namespace's own blocks.
func TestIPFSNamespaces(t *testing.T) {
	c := startCluster(t)
	tmp := t.TempDir()
	type kubo struct {
		ipfs   func(args ...string) result
		daemon *proc
		cid    string
		want   []byte
	}
	var ks [2]*kubo
	for i, name := range []string{"alice", "bob"} {
		ipfsCmd, start := kuboOn(t, c, filepath.Join(tmp, name), "--namespace="+name)
		k := &kubo{ipfs: ipfsCmd, daemon: start()}
		k.want = writeRandom(t, filepath.Join(tmp, name+".bin"), 5<<20)
		r := k.ipfs("add", "-Q", filepath.Join(tmp, name+".bin"))
		if r.code != 0 {
			t.Fatalf("%s: ipfs add: %s", name, r)
		}
		k.cid = lastLine(r.stdout)
		ks[i] = k
	}
	alice, bob := ks[0], ks[1]
	// Neither sees the other's blocks.
	if r := alice.ipfs("block", "stat", "--offline", bob.cid); r.code == 0 {
		t.Fatalf("alice sees bob's root block: %s", r)
	}
	// Alice adds a file she does not pin, and collects her garbage.
	junk := filepath.Join(tmp, "junk.bin")
	writeRandom(t, junk, 2<<20)
	r := alice.ipfs("add", "-Q", "--pin=false", junk)
	if r.code != 0 {
		t.Fatalf("alice: ipfs add --pin=false: %s", r)
	}
	junkCID := lastLine(r.stdout)
	if r := alice.ipfs("repo", "gc"); r.code != 0 {
		t.Fatalf("alice: ipfs repo gc: %s", r)
	}
	if r := alice.ipfs("block", "stat", "--offline", junkCID); r.code == 0 {
		t.Fatalf("alice: ipfs repo gc kept her unpinned %s", junkCID)
	}
	// Bob's blocks are all there, and so are alice's pinned ones.
	for _, k := range ks {
		if r := k.ipfs("repo", "verify"); r.code != 0 {
			t.Fatalf("ipfs repo verify after alice's gc: %s", r)
		}
		if got := k.ipfs("cat", k.cid); got.code != 0 || got.stdout != string(k.want) {
			t.Fatalf("ipfs cat %s after alice's gc: %d bytes, %s", k.cid, len(got.stdout), got.stderr)
		}
	}
	// repo stat counts the namespace: 5 MiB of blocks, stored 4+2.
	r = bob.ipfs("repo", "stat", "--size-only")
	if r.code != 0 {
		t.Fatalf("bob: ipfs repo stat: %s", r)
	}
	if size := repoSize(t, r.stdout); size < 5<<20*3/2 || size > 5<<20*3/2+8<<20 {
		t.Fatalf("bob: ipfs repo stat: RepoSize %d, want about 1.5 x his 5 MiB", size)
	}
	for _, k := range ks {
		if err := k.daemon.signalAndWait(t, syscall.SIGTERM); err != nil {
			t.Fatalf("ipfs daemon exit: %v", err)
		}
	}
}

// TestIPFSPluginFailsLoudly: the daemon refuses to start, saying why, when
// the client config is missing or the cluster cannot be reached.
func TestIPFSPluginFailsLoudly(t *testing.T) {
	ipfs := ipfsBin(t)
	c := startCluster(t)
	repo := filepath.Join(t.TempDir(), "ipfs")
	env := []string{"IPFS_PATH=" + repo, "IPFS_TELEMETRY=off"}
	cfgPath := filepath.Join(repo, "clusterds.json")
	// Init without the client config: refused before the repo is written,
	// saying how to write it, so that init works once it is there.
	if r := run(t, env, ipfs, "init", "--profile=clusterds,test"); r.code == 0 || !strings.Contains(r.stderr, "dscfg client") {
		t.Fatalf("ipfs init without %s: want a failure saying to run dscfg client\n%s", cfgPath, r)
	}
	if _, err := os.Stat(filepath.Join(repo, "config")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused ipfs init left a repo config (stat: %v)", err)
	}
	if r := run(t, nil, bin(t, "dscfg"), "client", "--cluster="+c.dir0, cfgPath); r.code != 0 {
		t.Fatalf("dscfg client: %s", r)
	}
	if r := run(t, env, ipfs, "init", "--profile=clusterds,test"); r.code != 0 {
		t.Fatalf("ipfs init: %s", r)
	}
	// Every node down: no node answers.
	for _, p := range c.nodes {
		_ = p.signalAndWait(t, syscall.SIGKILL)
	}
	r := run(t, env, ipfs, "daemon", "--offline")
	if r.code == 0 || !strings.Contains(r.stderr, "clusterds") || !strings.Contains(r.stderr, "cannot reach any node") {
		t.Fatalf("ipfs daemon with the cluster down: want a failure naming clusterds and the unreachable cluster\n%s", r)
	}
	// Config file missing.
	if err := os.Remove(cfgPath); err != nil {
		t.Fatal(err)
	}
	r = run(t, env, ipfs, "daemon", "--offline")
	if r.code == 0 || !strings.Contains(r.stderr, cfgPath) {
		t.Fatalf("ipfs daemon without %s: want a failure naming the file\n%s", cfgPath, r)
	}
}

// waitLine returns a channel closed once p has logged a line containing s.
func waitLine(p *proc, s string) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for {
			if strings.Contains(p.log.tail(1000), s) {
				close(ch)
				return
			}
			select {
			case <-p.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return ch
}

// repoSize reads RepoSize from `ipfs repo stat` output.
func repoSize(t *testing.T, out string) int64 {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "RepoSize:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("RepoSize %q: %v", f[1], err)
			}
			return n
		}
	}
	t.Fatalf("no RepoSize in ipfs repo stat output:\n%s", out)
	return 0
}

// kuboMetrics fetches /debug/metrics/prometheus from the API of the daemon
// that runs on repo (its address is in the repo's api file).
func kuboMetrics(t *testing.T, repo string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "api"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ma.NewMultiaddr(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	_, hostport, err := manet.DialArgs(a)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + hostport + "/debug/metrics/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /debug/metrics/prometheus: %s, %v", resp.Status, err)
	}
	return string(body)
}
