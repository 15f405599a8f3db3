package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/config"
)

// dscfg runs dscfg's command tree on args and returns what it wrote to
// its output (help, completion scripts) and its error.
func dscfg(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestCommandLines: the seed's and the README's command lines work, flags
// also after DIR and FILE, and what is not a command line is refused with
// the errors the flag package's parsing gave.
func TestCommandLines(t *testing.T) {
	tmp := t.TempDir()
	// The seed's 3 nodes get the 1+2 policy: no policy flag was given,
	// wherever the flags stand.
	seed := filepath.Join(tmp, "seed")
	if _, err := dscfg(t, "cluster", seed, "--cluster-node-number=3", "--base-port", "0", "--host=127.0.0.1", "--store=flatfs", "--zones=a,b,c"); err != nil {
		t.Fatal(err)
	}
	nc, err := config.LoadNode(filepath.Join(seed, config.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if nc.Cluster.Policy != coding.Erasure(1, 2) || len(nc.Cluster.Map.Nodes) != 3 || nc.Store != "flatfs" ||
		nc.Cluster.Map.Nodes[2].Zone != "c" || !strings.HasPrefix(nc.Listen[0], "/ip4/127.0.0.1/tcp/") || strings.HasSuffix(nc.Listen[0], "/6735") {
		t.Fatalf("dscfg cluster --cluster-node-number=3: %+v", nc)
	}
	seedID := nc.Cluster.ID
	// Defaults: 4+2, volume, port 6735 on.
	six := filepath.Join(tmp, "six")
	if _, err := dscfg(t, "cluster", "--cluster-node-number=6", six); err != nil {
		t.Fatal(err)
	}
	if nc, err = config.LoadNode(filepath.Join(six, config.FileName)); err != nil {
		t.Fatal(err)
	}
	if nc.Cluster.Policy != coding.Erasure(4, 2) || nc.Store != "volume" || nc.Listen[0] != "/ip4/0.0.0.0/tcp/6735" ||
		nc.Cluster.Map.Nodes[5].Addrs[0] != "/ip4/0.0.0.0/tcp/6740" || nc.Cluster.SmallThreshold != config.DefaultSmallThreshold {
		t.Fatalf("dscfg cluster --cluster-node-number=6: %+v", nc)
	}

	file := filepath.Join(tmp, "clusterds.json")
	if _, err := dscfg(t, "client", file, "--namespace=alice", "--cluster="+seed); err != nil {
		t.Fatal(err)
	}
	cc, err := config.LoadClient(file)
	if err != nil {
		t.Fatal(err)
	}
	if cc.Namespace != "alice" || cc.ClusterID != seedID || len(cc.Nodes) != 3 {
		t.Fatalf("dscfg client --cluster --namespace: %+v", cc)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing subcommand"},
		{[]string{"frob"}, `unknown subcommand "frob"`},
		{[]string{"cluster", "--cluster-node-number=6"}, "cluster: want exactly one DIR argument"},
		{[]string{"cluster", "--cluster-node-number=6", "a", "b"}, "cluster: want exactly one DIR argument"},
		{[]string{"cluster", "--cluster-node-number=six", "d"}, `invalid argument "six" for "--cluster-node-number"`},
		{[]string{"cluster", "--nodes=6", "d"}, "unknown flag: --nodes"},
		{[]string{"cluster", filepath.Join(tmp, "small"), "--cluster-node-number=3", "--data-shards=4", "--parity-shards=2"}, "cluster: --cluster-node-number=3 is too small"},
		{[]string{"client"}, "client: want exactly one FILE argument"},
		{[]string{"client", "a", "b"}, "client: want exactly one FILE argument"},
		{[]string{"client", filepath.Join(tmp, "x.json"), "--namespace=a/b"}, `client: namespace "a/b"`},
	} {
		if _, err := dscfg(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dscfg %q: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "small")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused dscfg cluster made its DIR (stat: %v)", err)
	}
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}, {"cluster", "-h"}, {"help", "client"}} {
		out, err := dscfg(t, args...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("dscfg %q: %v, output %q; want the help", args, err, out)
		}
	}
}

// TestCompletion: dscfg completion bash writes a script for dscfg, and the
// command it asks offers the subcommands and their flags.
func TestCompletion(t *testing.T) {
	script, err := dscfg(t, "completion", "bash")
	if err != nil || !strings.Contains(script, "complete -o default -F __start_dscfg dscfg") {
		t.Fatalf("completion bash: %v\n%.400s", err, script)
	}
	out, err := dscfg(t, "__complete", "")
	if err != nil {
		t.Fatal(err)
	}
	var words []string
	for _, l := range strings.Split(out, "\n") {
		if w, _, _ := strings.Cut(l, "\t"); w != "" && !strings.HasPrefix(w, ":") {
			words = append(words, w)
		}
	}
	if got, want := strings.Join(words, " "), "client cluster completion help"; got != want {
		t.Errorf("completions of `dscfg `: %q, want %q", got, want)
	}
	out, err = dscfg(t, "__complete", "cluster", "--")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"--cluster-node-number", "--data-shards", "--parity-shards", "--base-port", "--store"} {
		if !strings.Contains(out, f+"\t") {
			t.Errorf("completions of `dscfg cluster --` lack %s:\n%s", f, out)
		}
	}
}
