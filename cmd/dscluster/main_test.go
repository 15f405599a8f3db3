package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/node"
)

// dscluster runs dscluster's command line on args with the node's start
// replaced by noting the options it was given (nil: none ran).
func dscluster(t *testing.T, args ...string) (*options, string, error) {
	t.Helper()
	var got *options
	root := newRoot(func(o options) error { got = &o; return nil })
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return got, out.String(), err
}

// TestCommandLines: the README's command lines give the options they say,
// with the documented defaults; stray arguments and unknown flags are
// refused.
func TestCommandLines(t *testing.T) {
	o, _, err := dscluster(t)
	if err != nil || o == nil {
		t.Fatalf("dscluster with no flags: %v", err)
	}
	want := options{conf: ".dscluster", identity: -1, logLevel: "info", listen: "/ip4/0.0.0.0/tcp/6735", store: "volume",
		heartbeat: node.DefaultHeartbeatInterval, outAfter: node.DefaultOutAfter, repairEvery: node.DefaultRepairInterval, scrubEvery: node.DefaultScrubInterval,
		compactEvery: node.DefaultCompactEvery, volumeMiB: 1024}
	if *o != want {
		t.Errorf("defaults: %+v, want %+v", *o, want)
	}
	if o.outAfter != 10*time.Minute || o.heartbeat != time.Second || o.repairEvery != 30*time.Second || o.scrubEvery != 24*time.Hour ||
		o.compactEvery != 10*time.Minute || o.volumeMiB != 1024 {
		t.Errorf("defaults differ from docs/operations.md: %+v", *o)
	}

	o, _, err = dscluster(t, "--conf=[srv02-dir]", "--bootstrapper=/ip4/127.0.0.1/tcp/6735/p2p/12D3KooW", "--identity=1")
	if err != nil || o.conf != "[srv02-dir]" || o.boot != "/ip4/127.0.0.1/tcp/6735/p2p/12D3KooW" || o.identity != 1 {
		t.Errorf("fetch a config: %+v, %v", o, err)
	}
	o, _, err = dscluster(t, "--conf", "new", "--bootstrapper", "/ip4/10.0.0.1/tcp/6735/p2p/12D3KooW", "--listen=/ip4/10.0.0.9/tcp/6735",
		"--zone=rack3", "--weight=2", "--store=flatfs", "--data=/data", "--log-level=debug",
		"--heartbeat=200ms", "--out-after=3s", "--repair-interval=1s", "--repair-rate=12.5", "--scrub-interval=0",
		"--compact-interval=2s", "--volume-size=8", "--pprof=127.0.0.1:6060", "--metrics=127.0.0.1:9464")
	want = options{conf: "new", boot: "/ip4/10.0.0.1/tcp/6735/p2p/12D3KooW", identity: -1, listen: "/ip4/10.0.0.9/tcp/6735",
		zone: "rack3", weight: 2, store: "flatfs", data: "/data", logLevel: "debug",
		heartbeat: 200 * time.Millisecond, outAfter: 3 * time.Second, repairEvery: time.Second, repairRate: 12.5,
		compactEvery: 2 * time.Second, volumeMiB: 8, pprofAddr: "127.0.0.1:6060", metricsAddr: "127.0.0.1:9464"}
	if err != nil || *o != want {
		t.Errorf("join with every flag: %+v, %v; want %+v", o, err, want)
	}

	// The seed README's MongoDB line.
	o, _, err = dscluster(t, "--conf=[srv1cfg-dir]", "--mongodb=mongodb://localhost:27017")
	if err != nil || o.conf != "[srv1cfg-dir]" || o.mongodb != "mongodb://localhost:27017" {
		t.Errorf("the seed's --mongodb line: %+v, %v", o, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--conf=d", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"--identity=one"}, `invalid argument "one" for "--identity"`},
		{[]string{"--out-after=10"}, `invalid argument "10" for "--out-after"`},
	} {
		if o, _, err := dscluster(t, tc.args...); o != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dscluster %q: ran %v, %v; want an error containing %q", tc.args, o != nil, err, tc.want)
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--conf=d", "-h"}} {
		o, out, err := dscluster(t, args...)
		if o != nil || err != nil || !strings.Contains(out, "--bootstrapper string") {
			t.Errorf("dscluster %q: ran %v, %v, output %q; want the help", args, o != nil, err, out)
		}
	}
}

// TestCompletion: dscluster has no subcommands, yet `dscluster completion
// bash` writes a script for it, and the command it asks offers the flags.
func TestCompletion(t *testing.T) {
	o, script, err := dscluster(t, "completion", "bash")
	if o != nil || err != nil || !strings.Contains(script, "complete -o default -F __start_dscluster dscluster") {
		t.Fatalf("completion bash: ran %v, %v\n%.400s", o != nil, err, script)
	}
	o, out, err := dscluster(t, "__complete", "--")
	if o != nil || err != nil {
		t.Fatalf("__complete: ran %v, %v", o != nil, err)
	}
	for _, f := range []string{"--conf", "--bootstrapper", "--identity", "--listen", "--out-after", "--metrics"} {
		if !strings.Contains(out, f+"\t") {
			t.Errorf("completions of `dscluster --` lack %s:\n%s", f, out)
		}
	}
}

// TestUseMongoDB: --mongodb records the store in the config of a node that
// holds nothing yet, and refuses one that keeps shards in another store.
func TestUseMongoDB(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, config.FileName)
	cfg := &config.Node{Store: "volume"}
	if err := useMongoDB(cfg, path, dir); err != nil {
		t.Fatal(err)
	}
	var saved config.Node
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &saved) != nil || saved.Store != "mongodb" || cfg.Store != "mongodb" {
		t.Fatalf("config after --mongodb: store %q in memory, %q saved (read: %v)", cfg.Store, saved.Store, err)
	}

	held := t.TempDir()
	if err := os.Mkdir(filepath.Join(held, "volume"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg = &config.Node{Store: "volume"}
	err := useMongoDB(cfg, filepath.Join(held, config.FileName), held)
	if err == nil || !strings.Contains(err.Error(), "would start empty") || cfg.Store != "volume" {
		t.Fatalf("--mongodb over a volume store: %v, store %q; want a refusal", err, cfg.Store)
	}
	if _, err := os.Stat(filepath.Join(held, config.FileName)); !os.IsNotExist(err) {
		t.Fatalf("a refused --mongodb wrote the config: %v", err)
	}
}
