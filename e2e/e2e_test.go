package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
)

const (
	numNodes     = 6
	readyLine    = "dscluster ready"
	readyTimeout = 20 * time.Second
	exitTimeout  = 10 * time.Second
	cmdTimeout   = 60 * time.Second
	fileSize     = 20 << 20
	logTail      = 40
)

// The binaries are built once per test binary run, into binDir.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	buildTook time.Duration
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds dscfg, dscluster and dsclient (once) and returns the
// directory holding them.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			buildErr = err
			return
		}
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
			buildErr = fmt.Errorf("module root %s: %w", root, err)
			return
		}
		binDir, err = os.MkdirTemp("", "dscluster-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		start := time.Now()
		// One go build for the three: the go command builds them in parallel.
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			"./cmd/dscfg", "./cmd/dscluster", "./cmd/dsclient")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		buildTook = time.Since(start)
		if err != nil {
			buildErr = fmt.Errorf("go build in %s: %v\n%s", root, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func bin(t *testing.T, name string) string {
	return filepath.Join(binaries(t), name)
}

// logBuf keeps a process's output lines for failure messages.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logBuf) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.lines
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// proc is a long-running dscluster process.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   logBuf
	ready chan struct{} // closed on the ready line ("dscluster ready")
	done  chan struct{} // closed once the process has been waited for
	err   error         // cmd.Wait's result, set before done is closed
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) describe() string {
	return fmt.Sprintf("--- %s (pid %d) log tail:\n%s", p.name, p.cmd.Process.Pid, p.log.tail(logTail))
}

// startProc starts a command whose stdout and stderr go through a pipe to a
// scanner goroutine. The process is killed at the end of the test if it is
// still running.
func startProc(t *testing.T, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	return startProcReady(t, name, readyLine, env, path, args...)
}

// startProcReady is startProc for a process that says it is ready with
// the line ready.
func startProcReady(t *testing.T, name, ready string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, ready: make(chan struct{}), done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(os.Environ(), env...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = w
	p.cmd.Stderr = w
	if err := p.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	w.Close()
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		isReady := false
		for sc.Scan() {
			line := sc.Text()
			p.log.add(line)
			if !isReady && strings.Contains(line, ready) {
				isReady = true
				close(p.ready)
			}
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		<-scanned
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Kill() // by PID
		select {
		case <-p.done:
		case <-time.After(exitTimeout):
			t.Errorf("cleanup: %s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
		}
	})
	return p
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-p.ready:
	case <-p.done:
		t.Fatalf("%s exited before it was ready: %v\n%s", p.name, p.err, p.describe())
	case <-time.After(readyTimeout):
		t.Fatalf("%s not ready after %s\n%s", p.name, readyTimeout, p.describe())
	}
}

// signalAndWait sends sig to the process by PID and waits for it to exit.
func (p *proc) signalAndWait(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("kill -%d %s (pid %d): %v", sig, p.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(exitTimeout):
		t.Fatalf("%s (pid %d) still running %s after signal %v\n%s", p.name, p.cmd.Process.Pid, exitTimeout, sig, p.describe())
		return nil
	}
}

// result is the outcome of a short-lived command.
type result struct {
	stdout, stderr string
	code           int // exit code; -1 if killed by a signal or not started
	err            error
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (%v) after %s\nstdout:\n%s\nstderr:\n%s", r.code, r.err, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.TrimSpace(ls[len(ls)-1])
}

// run runs a command to completion under a cmdTimeout context.
func run(t *testing.T, env []string, path string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String(), err: err, took: time.Since(start), code: -1}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out after %s\n%s", filepath.Base(path), strings.Join(args, " "), cmdTimeout, r)
	}
	return r
}

// TestSeedGettingStarted runs the seed README's Getting Started with six
// nodes (policy 4+2) on loopback, then loses nodes one by one.
func TestSeedGettingStarted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries; skipped with -short")
	}
	gettingStarted(t, "")
}

// gettingStarted runs the seed README's Getting Started; with mongo, the
// URI of a MongoDB server, every node keeps its shards there, each in a
// database of its own (dscluster --mongodb=URI, as the seed shows).
func gettingStarted(t *testing.T, mongo string) {
	testStart := time.Now()
	dscfg, dscluster, dsclient := bin(t, "dscfg"), bin(t, "dscluster"), bin(t, "dsclient")
	t.Logf("build: %s", buildTook.Round(time.Millisecond))

	tmp := t.TempDir()
	nodes := make([]*proc, numNodes)
	// On failure, show every node's log tail.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range nodes {
			if p != nil {
				t.Log(p.describe())
			}
		}
	})
	step := time.Now()
	lap := func(what string) {
		t.Logf("%-40s %s", what, time.Since(step).Round(time.Millisecond))
		step = time.Now()
	}

	// 1. dscfg cluster
	dir := func(i int) string { return filepath.Join(tmp, fmt.Sprintf("srv%02d", i)) }
	r := run(t, nil, dscfg, "cluster", fmt.Sprintf("--cluster-node-number=%d", numNodes), "--base-port=0", "--host=127.0.0.1", dir(0))
	if r.code != 0 {
		t.Fatalf("dscfg cluster: %s", r)
	}
	boot := lastLine(r.stdout)
	if !strings.HasPrefix(boot, "/ip4/127.0.0.1/tcp/") || !strings.Contains(boot, "/p2p/") {
		t.Fatalf("dscfg cluster: last stdout line %q is not a loopback p2p multiaddr\n%s", boot, r)
	}
	for _, f := range []string{"config.json", "swarm.key"} {
		if _, err := os.Stat(filepath.Join(dir(0), f)); err != nil {
			t.Fatalf("dscfg cluster did not write %s: %v", f, err)
		}
	}
	key, err := os.ReadFile(filepath.Join(dir(0), "swarm.key"))
	if err != nil {
		t.Fatal(err)
	}
	secret := lastLine(string(key))
	if b, err := hex.DecodeString(secret); err != nil || len(b) != 32 {
		t.Fatalf("last line of swarm.key %q is not 64 hex characters", secret)
	}
	env := []string{"DSCLUSTER_SECRET=" + secret}
	lap("dscfg cluster")

	// 2. the bootstrapper, then the five others. On MongoDB, node 0 takes
	// the URI as the seed shows it, with no database (so the cluster's
	// default), node 1 from $DSCLUSTER_MONGODB, the others their own.
	store := func(i int) (flags, env []string) {
		switch {
		case mongo == "":
		case i == 0:
			flags = []string{"--mongodb=" + mongo}
		case i == 1:
			env = []string{"DSCLUSTER_MONGODB=" + mongoURI(mongo, i)}
		default:
			flags = []string{"--mongodb=" + mongoURI(mongo, i)}
		}
		return flags, env
	}
	flags, menv := store(0)
	nodes[0] = startProc(t, "node 0 (bootstrapper)", menv, dscluster, append(flags, "--conf="+dir(0))...)
	nodes[0].waitReady(t)
	lap("bootstrapper ready")
	for i := 1; i < numNodes; i++ {
		flags, menv := store(i)
		nodes[i] = startProc(t, fmt.Sprintf("node %d", i), append(menv, env...), dscluster, append(flags,
			"--conf="+dir(i), "--bootstrapper="+boot, fmt.Sprintf("--identity=%d", i))...)
	}
	for i := 1; i < numNodes; i++ {
		nodes[i].waitReady(t)
	}
	for i := 1; i < numNodes; i++ {
		if _, err := os.Stat(filepath.Join(dir(i), "config.json")); err != nil {
			t.Errorf("node %d did not save its fetched config: %v", i, err)
		}
	}
	lap("5 nodes fetched config and ready")
	// An identity that runs is not handed out again: two processes would
	// answer as one node. The bootstrapper used to hand out its own.
	for id, want := range map[int]string{0: "this bootstrapper's own", 1: "answers at its addresses", 1 << 32: "want a node number"} {
		r := run(t, env, dscluster, "--conf="+filepath.Join(tmp, fmt.Sprintf("again%d", id)), "--bootstrapper="+boot, fmt.Sprintf("--identity=%d", id))
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("identity %d fetched again: %s; want a refusal saying %q", id, r, want)
		}
	}

	// 3. dsclient init, add, get
	cli := filepath.Join(tmp, "client")
	client := func(args ...string) result {
		return run(t, env, dsclient, append([]string{"--conf=" + cli}, args...)...)
	}
	if r := client("init", "--bootstrapper="+boot); r.code != 0 {
		t.Fatalf("dsclient init: %s", r)
	}
	// --conf may name the config file itself, for init too: it used to
	// take it for a folder, and failed on a file dscfg client wrote.
	file := filepath.Join(tmp, "clusterds.json")
	if r := run(t, nil, bin(t, "dscfg"), "client", "--cluster="+dir(0), file); r.code != 0 {
		t.Fatalf("dscfg client: %s", r)
	}
	r0 := run(t, env, dsclient, "--conf="+file, "id")
	if r := run(t, env, dsclient, "--conf="+file, "init", "--bootstrapper="+boot); r.code != 0 {
		t.Fatalf("dsclient --conf=FILE init: %s", r)
	}
	if r := run(t, env, dsclient, "--conf="+file, "id"); r.code != 0 || lastLine(r.stdout) != lastLine(r0.stdout) {
		t.Fatalf("dsclient --conf=FILE id after init: %s; want the identity dscfg client wrote, %s", r, r0)
	}
	// A template from dscfg client (placeholders that do not validate)
	// keeps its identity through init too: it used to get a new one.
	// A file that is not a client config is not written over.
	tpl := filepath.Join(tmp, "template.json")
	if r := run(t, nil, bin(t, "dscfg"), "client", tpl); r.code != 0 {
		t.Fatalf("dscfg client (template): %s", r)
	}
	identity := func(path string) string {
		var c struct{ Identity string }
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &c)
		}
		if err != nil || c.Identity == "" {
			t.Fatalf("identity of %s: %q, err %v", path, c.Identity, err)
		}
		return c.Identity
	}
	before := identity(tpl)
	if r := run(t, env, dsclient, "--conf="+tpl, "init", "--bootstrapper="+boot); r.code != 0 || identity(tpl) != before {
		t.Fatalf("dsclient init over a dscfg client template: %s; identity kept: %v", r, identity(tpl) == before)
	}
	other := filepath.Join(tmp, "other.json")
	nodeCfg, err := os.ReadFile(filepath.Join(dir(0), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, nodeCfg, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{dsclient, "--conf=" + other, "init", "--bootstrapper=" + boot}, {bin(t, "dscfg"), "client", other}} {
		r := run(t, env, cmd[0], cmd[1:]...)
		if b, _ := os.ReadFile(other); r.code == 0 || !strings.Contains(r.stderr, "not a client config") || !bytes.Equal(b, nodeCfg) {
			t.Fatalf("%s over a node config: %s; want a refusal that leaves it", filepath.Base(cmd[0]), r)
		}
	}
	lap("dsclient init")

	want := make([]byte, fileSize)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(tmp, "random.bin")
	if err := os.WriteFile(in, want, 0o644); err != nil {
		t.Fatal(err)
	}
	r = client("add", in)
	if r.code != 0 {
		t.Fatalf("dsclient add: %s", r)
	}
	root := lastLine(r.stdout)
	if root == "" {
		t.Fatalf("dsclient add printed no CID: %s", r)
	}
	lap(fmt.Sprintf("dsclient add %d MiB", fileSize>>20))

	outDir := filepath.Join(tmp, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	umask := os.FileMode(syscall.Umask(0))
	syscall.Umask(int(umask))
	getEqual := func(name string) {
		t.Helper()
		out := filepath.Join(outDir, name)
		r := client("get", root, out)
		if r.code != 0 {
			t.Fatalf("dsclient get %s: %s", root, r)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("dsclient get exited 0 but: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("dsclient get %s: %d bytes differ from the %d bytes added", root, len(got), len(want))
		}
		// The file gets the mode any new file gets (it used to be 0600).
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o666&^umask {
			t.Fatalf("dsclient get wrote %s with mode %v; want %v", out, st.Mode().Perm(), os.FileMode(0o666&^umask))
		}
	}
	getEqual("all-up.bin")
	lap("dsclient get, 6/6 nodes up")
	if mongo != "" {
		// Every value has a shard on each of the 6 nodes: at least the
		// file's 80 blocks of 256 KiB are in each node's own database.
		for i := 0; i < numNodes; i++ {
			if n := mongoShards(t, mongo, i, dir(i)); n < fileSize/(256<<10) {
				t.Errorf("node %d keeps %d shards in MongoDB, want at least %d", i, n, fileSize/(256<<10))
			}
			for _, local := range []string{"volume", "shards"} {
				if _, err := os.Stat(filepath.Join(dir(i), local)); err == nil {
					t.Errorf("node %d on --mongodb has a local %s store", i, local)
				}
			}
		}
	}

	// 4. SIGKILL two nodes: still readable (4+2 loses at most 2)
	killed := []int{1, 4}
	for _, i := range killed {
		err := nodes[i].signalAndWait(t, syscall.SIGKILL)
		if !killedBy(err, syscall.SIGKILL) {
			t.Fatalf("%s: want death by SIGKILL, got %v", nodes[i].name, err)
		}
	}
	lap("SIGKILL nodes 1 and 4")
	getEqual("two-down.bin")
	lap("dsclient get, 4/6 nodes up")

	// 5. SIGKILL a third node (the bootstrapper): unreadable, clean failure
	killed = append(killed, 0)
	if err := nodes[0].signalAndWait(t, syscall.SIGKILL); !killedBy(err, syscall.SIGKILL) {
		t.Fatalf("%s: want death by SIGKILL, got %v", nodes[0].name, err)
	}
	lap("SIGKILL node 0")
	out := filepath.Join(outDir, "three-down.bin")
	r = client("get", root, out)
	if r.code == 0 {
		t.Fatalf("dsclient get with 3 of 6 nodes down succeeded: %s", r)
	}
	if r.code != 1 {
		t.Errorf("dsclient get: exit code %d, want 1: %s", r.code, r)
	}
	msg := strings.TrimSuffix(r.stderr, "\n")
	if strings.Contains(msg, "\n") {
		t.Errorf("dsclient get: stderr is not one line:\n%s", r.stderr)
	}
	// Every value has one shard on each of the 6 nodes. A leaf (256 KiB,
	// erasure coded 4+2) keeps 3 valid shards. The root (a few KiB, below
	// the small-value threshold) is replicated on 3 of the 6 nodes; when the
	// 3 killed nodes are exactly its holders (1 in 20) the root itself is
	// the unreadable block and nothing of it is found.
	// (When the root is the unreadable block, dagfile says "get ROOT", else
	// "read ROOT".)
	unavailable := regexp.MustCompile(`^dsclient: get ` + root + `: ((read|get) ` + root + `: )?get /[A-Z2-7]+: unavailable: found (3|0) valid shards, need 4 \(`)
	if !unavailable.MatchString(msg) {
		t.Errorf("dsclient get: stderr %q does not match %s", msg, unavailable)
	}
	for _, i := range killed {
		if s := fmt.Sprintf("node %d (", i); !strings.Contains(msg, s) {
			t.Errorf("dsclient get: stderr %q does not name the killed node %d", msg, i)
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed dsclient get left %s behind (stat: %v)", out, err)
	}
	if left, _ := filepath.Glob(filepath.Join(outDir, ".dsclient-get-*")); len(left) > 0 {
		t.Errorf("failed dsclient get left temporary files: %q", left)
	}
	t.Logf("dsclient get with 3 nodes down: %s", msg)
	lap("dsclient get fails, 3/6 nodes up")

	// 6. dsclient status: 3 unreachable, no slot readable
	r = client("status")
	if r.code != 1 {
		t.Errorf("dsclient status with 3 of 6 nodes down: exit code %d, want 1: %s", r.code, r)
	}
	// Columns: NODE PEER ADDRESS STATE REACHABLE RAFT KEYS SHARD-BYTES.
	reach := map[int]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		var idx int
		if len(f) >= 5 {
			if _, err := fmt.Sscanf(f[0], "%d", &idx); err == nil {
				reach[idx] = f[4]
			}
		}
	}
	isKilled := map[int]bool{}
	for _, i := range killed {
		isKilled[i] = true
	}
	unreachable := 0
	for i := 0; i < numNodes; i++ {
		want := "yes"
		if isKilled[i] {
			want = "no"
			unreachable++
		}
		if reach[i] != want {
			t.Errorf("dsclient status: node %d reachable %q, want %q\n%s", i, reach[i], want, r)
		}
	}
	if unreachable != 3 {
		t.Errorf("dsclient status: %d nodes unreachable, want 3\n%s", unreachable, r)
	}
	if !strings.Contains(r.stdout, "slots readable: 0/") {
		t.Errorf("dsclient status: want no readable slot with 3 of 6 nodes of a 4+2 cluster down\n%s", r)
	}
	if !strings.HasPrefix(r.stderr, "dsclient: status: ") || !strings.Contains(r.stderr, "slots cannot be read") {
		t.Errorf("dsclient status: stderr %q, want a %q line about unreadable slots", r.stderr, "dsclient: status: ")
	}
	lap("dsclient status")

	// 7. SIGTERM the three survivors: clean exit 0 within exitTimeout
	var wg sync.WaitGroup
	errs := make([]error, numNodes)
	for i := 0; i < numNodes; i++ {
		if isKilled[i] {
			continue
		}
		if err := syscall.Kill(nodes[i].cmd.Process.Pid, syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM %s: %v", nodes[i].name, err)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			select {
			case <-nodes[i].done:
				errs[i] = nodes[i].err
			case <-time.After(exitTimeout):
				errs[i] = fmt.Errorf("still running %s after SIGTERM", exitTimeout)
			}
		}(i)
	}
	wg.Wait()
	for i := 0; i < numNodes; i++ {
		if isKilled[i] {
			continue
		}
		if errs[i] != nil {
			t.Errorf("%s after SIGTERM: %v, want exit status 0\n%s", nodes[i].name, errs[i], nodes[i].describe())
		} else if code := nodes[i].cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s after SIGTERM: exit code %d, want 0", nodes[i].name, code)
		}
	}
	lap("SIGTERM 3 nodes, all exited 0")
	t.Logf("total (excluding build): %s", (time.Since(testStart) - buildTook).Round(time.Millisecond))
}

// killedBy reports whether err is a process exit by signal sig.
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// TestBadConfigRefused checks that a node refuses a config that does not
// parse, and that dscfg refuses a cluster too small for the policy asked
// for (and, asked for none, picks one that fits: the seed's 3 nodes).
func TestBadConfigRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries; skipped with -short")
	}
	dscfg, dscluster := bin(t, "dscfg"), bin(t, "dscluster")
	tmp := t.TempDir()

	t.Run("garbage config.json", func(t *testing.T) {
		dir := filepath.Join(tmp, "garbage")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "config.json")
		if err := os.WriteFile(path, []byte("{\"version\": 1, this is not json\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := run(t, nil, dscluster, "--conf="+dir)
		if r.code == 0 || r.code == -1 {
			t.Fatalf("dscluster with a garbage config: want a non-zero exit, got %s", r)
		}
		for _, s := range []string{path, "does not parse"} {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("dscluster stderr does not contain %q:\n%s", s, r.stderr)
			}
		}
		if strings.Contains(r.stderr, readyLine) {
			t.Errorf("dscluster reported ready with a garbage config:\n%s", r.stderr)
		}
	})

	t.Run("no client config", func(t *testing.T) {
		for _, args := range [][]string{{"id"}, {"get", "bafkqaaa", "-"}} {
			r := run(t, nil, bin(t, "dsclient"), append([]string{"--conf=" + filepath.Join(tmp, "none")}, args...)...)
			if r.code == 0 || !strings.Contains(r.stderr, "init --bootstrapper=") {
				t.Errorf("dsclient %v without a config: %s; want a failure saying to run init", args, r)
			}
		}
	})

	t.Run("the seed's 3 nodes", func(t *testing.T) {
		dir := filepath.Join(tmp, "seed3")
		r := run(t, nil, dscfg, "cluster", "--cluster-node-number=3", "--base-port=0", dir)
		if r.code != 0 || !strings.Contains(r.stderr, "using 1+2") {
			t.Fatalf("dscfg cluster --cluster-node-number=3: %s; want it to pick 1+2", r)
		}
		nc, err := config.LoadNode(filepath.Join(dir, "config.json"))
		if err != nil || nc.Cluster.Policy != coding.Erasure(1, 2) || len(nc.Cluster.Map.Nodes) != 3 {
			t.Fatalf("config written: %v, %v; want 3 nodes, 1+2", nc, err)
		}
	})

	t.Run("too few nodes for 4+2", func(t *testing.T) {
		dir := filepath.Join(tmp, "small")
		r := run(t, nil, dscfg, "cluster", "--cluster-node-number=3", "--data-shards=4", "--parity-shards=2", dir)
		if r.code == 0 || r.code == -1 {
			t.Fatalf("dscfg cluster --cluster-node-number=3 for 4+2: want a non-zero exit, got %s", r)
		}
		for _, s := range []string{"--cluster-node-number=3", "at least 6"} {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("dscfg stderr does not contain %q:\n%s", s, r.stderr)
			}
		}
		if strings.TrimSpace(r.stdout) != "" {
			t.Errorf("dscfg printed to stdout on failure: %q", r.stdout)
		}
		for _, f := range []string{"config.json", "swarm.key"} {
			if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused dscfg cluster wrote %s (stat: %v)", f, err)
			}
		}
	})
}

// TestDscfgClientKeepsIdentity: writing a client config again keeps the
// identity a role may have been granted to; it used to make a new one.
func TestDscfgClientKeepsIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries; skipped with -short")
	}
	dscfg, dsclient := bin(t, "dscfg"), bin(t, "dsclient")
	tmp := t.TempDir()
	srv := filepath.Join(tmp, "srv")
	if r := run(t, nil, dscfg, "cluster", "--cluster-node-number=6", "--base-port=0", srv); r.code != 0 {
		t.Fatalf("dscfg cluster: %s", r)
	}
	file := filepath.Join(tmp, "clusterds.json")
	var ids []string
	for range 2 {
		if r := run(t, nil, dscfg, "client", "--cluster="+srv, file); r.code != 0 {
			t.Fatalf("dscfg client: %s", r)
		}
		r := run(t, nil, dsclient, "--conf="+file, "id")
		if r.code != 0 {
			t.Fatalf("dsclient id: %s", r)
		}
		ids = append(ids, lastLine(r.stdout))
	}
	if ids[0] != ids[1] || ids[0] == "" {
		t.Fatalf("client identity %q, then %q after writing the config again", ids[0], ids[1])
	}
}
