package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node"
	"github.com/filedrive-team/go-ds-cluster/volume"
)

// Procs is a Target of real dscluster processes on loopback, started with
// the seed README's commands. Close stops every process it started.
type Procs struct {
	// Bin is the folder holding dscfg, dscluster and dsclient.
	Bin string
	// Dir holds each node's folder and log (node<i>.log).
	Dir string
	// Nodes, DataShards, ParityShards and Store shape the cluster
	// (default 7, 4, 2, volume).
	Nodes, DataShards, ParityShards int
	Store                           string
	// Flags are passed to every dscluster (--heartbeat, --out-after, ...).
	Flags []string
	// Net, when set, runs each node in a network namespace of its own
	// (Isolate cuts its link); nil runs every node on 127.0.0.1.
	Net *Netns

	secret  string
	boot    string
	mu      sync.Mutex
	procs   []*exec.Cmd
	done    []chan struct{}
	listen  map[int]string // a joined node's listen address
	drained map[int]bool   // drained nodes: not a way in
}

// netnsPort is the port of every node in its own namespace (dscfg adds
// the node's number to it).
const netnsPort = 7100

func (p *Procs) nodeDir(i int) string { return filepath.Join(p.Dir, fmt.Sprintf("srv%02d", i)) }

// ClientDir is the dsclient config folder of the cluster.
func (p *Procs) ClientDir() string { return filepath.Join(p.Dir, "client") }

// Launch generates the cluster's configs and starts every node.
func (p *Procs) Launch(ctx context.Context) error {
	if p.Nodes == 0 {
		p.Nodes = 7
	}
	if p.DataShards == 0 {
		p.DataShards, p.ParityShards = 4, 2
	}
	if p.Store == "" {
		p.Store = "volume"
	}
	where := []string{"--base-port=0", "--host=127.0.0.1"}
	if p.Net != nil {
		// Each node has an address of its own: the ports need not differ.
		ips := make([]string, p.Nodes)
		for i := range ips {
			if err := p.Net.Add(i); err != nil {
				return err
			}
			ips[i] = p.Net.IP(i)
		}
		where = []string{fmt.Sprintf("--base-port=%d", netnsPort), "--hosts=" + strings.Join(ips, ",")}
	}
	args := append([]string{"cluster", fmt.Sprintf("--cluster-node-number=%d", p.Nodes),
		fmt.Sprintf("--data-shards=%d", p.DataShards), fmt.Sprintf("--parity-shards=%d", p.ParityShards),
		"--store=" + p.Store}, where...)
	out, err := p.run(ctx, "dscfg", append(args, p.nodeDir(0))...)
	if err != nil {
		return err
	}
	p.boot = lastLine(out)
	key, err := os.ReadFile(filepath.Join(p.nodeDir(0), "swarm.key"))
	if err != nil {
		return fmt.Errorf("chaos: read the cluster secret: %w", err)
	}
	p.secret = lastLine(string(key))
	p.procs = make([]*exec.Cmd, p.Nodes)
	p.done = make([]chan struct{}, p.Nodes)
	for i := 0; i < p.Nodes; i++ {
		if err := p.Start(i); err != nil {
			return err
		}
		if i == 0 {
			if err := p.waitReady(ctx, 0); err != nil {
				return err
			}
		}
	}
	for i := 1; i < p.Nodes; i++ {
		if err := p.waitReady(ctx, i); err != nil {
			return err
		}
	}
	_, err = p.run(ctx, "dsclient", "--conf="+p.ClientDir(), "init", "--bootstrapper="+p.boot)
	return err
}

// ClientConfig is the cluster's client config, written by dsclient init.
func (p *Procs) ClientConfig() (*config.Client, error) {
	return config.LoadClient(filepath.Join(p.ClientDir(), "config.json"))
}

func lastLine(s string) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.TrimSpace(ls[len(ls)-1])
}

// run runs one of the cluster's commands to completion.
func (p *Procs) run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.Bin, name), args...)
	cmd.Env = append(os.Environ(), "DSCLUSTER_SECRET="+p.secret)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("chaos: %s %s: %w\n%s", name, strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("chaos: %s: %w", name, err)
	}
	return string(out), nil
}

func (p *Procs) logPath(i int) string { return filepath.Join(p.Dir, fmt.Sprintf("node%d.log", i)) }

// Len is the number of nodes started, joined ones included.
func (p *Procs) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.procs)
}

// joinVia is the address of a first node that runs and was not drained
// (a drained node leaves the raft group), or the bootstrapper's; p.mu is
// held.
func (p *Procs) joinVia() string {
	cc, err := p.ClientConfig()
	if err != nil {
		return p.boot
	}
	for i, a := range cc.Nodes {
		if i < len(p.procs) && p.procs[i] != nil && !p.drained[i] {
			return a
		}
	}
	return p.boot
}

// Join starts a new node that joins the running cluster through the
// bootstrapper on a free loopback port, and waits until it is ready.
func (p *Procs) Join() (int, error) {
	p.mu.Lock()
	i := len(p.procs)
	p.procs = append(p.procs, nil)
	p.done = append(p.done, nil)
	p.mu.Unlock()
	addr := ""
	if p.Net != nil {
		if err := p.Net.Add(i); err != nil {
			return i, err
		}
		addr = fmt.Sprintf("/ip4/%s/tcp/%d", p.Net.IP(i), netnsPort)
	} else {
		port, err := p.freePort(i)
		if err != nil {
			return i, err
		}
		addr = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	}
	p.mu.Lock()
	if p.listen == nil {
		p.listen = map[int]string{}
	}
	p.listen[i] = addr
	p.mu.Unlock()
	if err := p.Start(i); err != nil {
		return i, err
	}
	return i, p.waitReady(context.Background(), i)
}

// freePort returns a free loopback port that none of the first n nodes
// listens on: the port of a node that is down is free, but it takes it
// back when it starts again.
func (p *Procs) freePort(n int) (int, error) {
	taken := map[string]bool{}
	for i := 0; i < n; i++ {
		if nc, err := config.LoadNode(filepath.Join(p.nodeDir(i), "config.json")); err == nil {
			for _, a := range nc.Listen {
				taken[a] = true
			}
		}
	}
	p.mu.Lock()
	for _, a := range p.listen {
		taken[a] = true
	}
	p.mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !taken[fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)] {
			return port, nil
		}
	}
	return 0, fmt.Errorf("chaos: no free port that no node listens on")
}

// Drain asks the cluster to drain node i (dsclient node drain --no-wait).
func (p *Procs) Drain(i int) error {
	nc, err := config.LoadNode(filepath.Join(p.nodeDir(i), "config.json"))
	if err != nil {
		return err
	}
	id, err := config.PeerIDOf(nc.PrivKey)
	if err != nil {
		return err
	}
	cc, err := p.ClientConfig()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := dscluster.Open(ctx, cc, nil)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Member(ctx, membership.Command{Op: membership.OpDrain, ID: id.String()}); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drained == nil {
		p.drained = map[int]bool{}
	}
	p.drained[i] = true
	return nil
}

// Start starts node i: the first time from the bootstrapper, later on its
// own config and data. Its output goes to DIR/node<i>.log.
func (p *Procs) Start(i int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.procs[i] != nil {
		return nil
	}
	args := []string{"--conf=" + p.nodeDir(i)}
	if _, err := os.Stat(filepath.Join(p.nodeDir(i), "config.json")); err != nil {
		if i < p.Nodes {
			args = append(args, "--bootstrapper="+p.boot, fmt.Sprintf("--identity=%d", i))
		} else {
			args = append(args, "--bootstrapper="+p.joinVia(), "--listen="+p.listen[i])
		}
	}
	args = append(args, p.Flags...)
	logf, err := os.OpenFile(p.logPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(p.Bin, "dscluster"), args...)
	if p.Net != nil {
		cmd = p.Net.Command(i, filepath.Join(p.Bin, "dscluster"), args...)
	}
	// Each node gets its share of the cores, as scripts/cluster.sh does.
	cmd.Env = append(os.Environ(), "DSCLUSTER_SECRET="+p.secret, "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("chaos: start node %d: %w", i, err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.procs[i], p.done[i] = cmd, done
	return nil
}

// waitReady waits for node i's "dscluster ready" line.
func (p *Procs) waitReady(ctx context.Context, i int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		b, _ := os.ReadFile(p.logPath(i))
		if strings.Contains(string(b), "dscluster ready") {
			return nil
		}
		p.mu.Lock()
		done := p.done[i]
		p.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("chaos: node %d exited before it was ready; its log:\n%s", i, b)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("chaos: node %d not ready after 30s (log %s)", i, p.logPath(i))
}

// signal sends sig to node i's process by PID.
func (p *Procs) signal(i int, sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.procs[i] == nil {
		return fmt.Errorf("chaos: node %d is not running", i)
	}
	return syscall.Kill(p.procs[i].Process.Pid, sig)
}

// Kill sends node i SIGKILL and waits for it to exit.
func (p *Procs) Kill(i int) error {
	p.mu.Lock()
	cmd, done := p.procs[i], p.done[i]
	p.procs[i] = nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil // it exited on its own (a join that failed)
	default:
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("chaos: kill node %d (pid %d): %w", i, cmd.Process.Pid, err)
	}
	<-done
	return nil
}

// Reboot kills node i (SIGKILL) and marks its volume store as left open by
// an earlier boot, as an operating system crash would leave it: at its
// next start it rebuilds its index from its volumes. On other stores it is
// a kill.
func (p *Procs) Reboot(i int) error {
	if err := p.Kill(i); err != nil {
		return err
	}
	if p.Store != "volume" {
		return nil
	}
	path := filepath.Join(p.nodeDir(i), "volume", volume.RunFile)
	if err := os.WriteFile(path, []byte("an earlier boot"), 0o644); err != nil {
		return fmt.Errorf("chaos: reboot node %d: %w", i, err)
	}
	return nil
}

// Pause sends node i SIGSTOP; Resume SIGCONT.
func (p *Procs) Pause(i int) error  { return p.signal(i, syscall.SIGSTOP) }
func (p *Procs) Resume(i int) error { return p.signal(i, syscall.SIGCONT) }

// Isolate cuts node i's link (with Net; unsupported on loopback).
func (p *Procs) Isolate(i int) error {
	if p.Net == nil {
		return ErrUnsupported
	}
	return p.Net.Cut(i)
}

// Rejoin mends node i's link.
func (p *Procs) Rejoin(i int) error {
	if p.Net == nil {
		return ErrUnsupported
	}
	return p.Net.Mend(i)
}

// Leader asks the nodes which one is raft leader.
func (p *Procs) Leader() int {
	cc, err := p.ClientConfig()
	if err != nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := dscluster.Open(ctx, cc, nil)
	if err != nil {
		return -1
	}
	defer d.Close()
	for _, s := range d.Status(ctx) {
		var st node.Status
		if s.Err == nil && json.Unmarshal(s.Status, &st) == nil && st.IsLeader {
			return st.Identity
		}
	}
	return -1
}

// Close stops every running node (SIGCONT first, for a paused one) and
// removes the network namespaces.
func (p *Procs) Close() {
	for i := range p.Len() {
		_ = p.signal(i, syscall.SIGCONT)
		_ = p.Kill(i)
	}
	if p.Net != nil {
		p.Net.Close()
		p.Net = nil
	}
}

var (
	_ Target = (*Procs)(nil)
	_ Grower = (*Procs)(nil)
)
