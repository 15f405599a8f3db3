package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// parsed is what a command line came to: the command that would run, its
// positional arguments and flags, and the global flags.
type parsed struct {
	cmd    *cobra.Command // nil when none ran
	pos    []string
	g      globals
	quiet  bool
	stdout string
	err    error
}

// parse runs dsclient's real command tree on args, with each command's
// work replaced by noting what it was given. The commands that only say
// how to use them (the root without a command, node, client) keep theirs.
func parse(t *testing.T, args ...string) parsed {
	t.Helper()
	var p parsed
	root := newRoot(&p.g)
	var stub func(c *cobra.Command)
	stub = func(c *cobra.Command) {
		if c.RunE != nil && !c.HasSubCommands() {
			c.RunE = func(c *cobra.Command, a []string) error {
				p.cmd, p.pos = c, a
				return nil
			}
		}
		for _, s := range c.Commands() {
			stub(s)
		}
	}
	stub(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	p.err = root.Execute()
	p.g.stop()
	p.quiet, p.stdout = quiet, out.String()
	return p
}

func (p parsed) name() string {
	if p.cmd == nil {
		return ""
	}
	return p.cmd.CommandPath()
}

func (p parsed) flag(t *testing.T, name string) string {
	t.Helper()
	f := p.cmd.Flags().Lookup(name)
	if f == nil {
		t.Fatalf("%s has no flag --%s", p.name(), name)
	}
	return f.Value.String()
}

// TestParseArgs: flags are taken wherever they stand among the positional
// arguments (`add FILE -Q` used to fail: FILE stopped the flag parsing and
// -Q counted as a second file), "--" ends them, and the global flags go
// before the command as the README has them (or after it).
func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		cmd   string
		pos   []string
		quiet bool
		flags map[string]string
	}{
		{[]string{"add", "-Q", "file"}, "dsclient add", []string{"file"}, true, nil},
		{[]string{"add", "file", "-Q"}, "dsclient add", []string{"file"}, true, map[string]string{"quiet": "true"}},
		{[]string{"add", "file", "--cid-version=1", "-Q"}, "dsclient add", []string{"file"}, true, map[string]string{"cid-version": "1"}},
		{[]string{"add", "--cid-version", "1", "file", "--raw-leaves=false"}, "dsclient add", []string{"file"}, false,
			map[string]string{"cid-version": "1", "raw-leaves": "false", "chunker": "size-262144"}},
		// The arguments e2e's TestIPFSAddCIDs gives ipfs add and dsclient add alike.
		{[]string{"add", "-n", "-Q", "--cid-version=1", "--raw-leaves=true", "-r", "dir"}, "dsclient add", []string{"dir"}, true,
			map[string]string{"only-hash": "true", "recursive": "true", "cid-version": "1", "raw-leaves": "true"}},
		{[]string{"add", "-rn", "dir"}, "dsclient add", []string{"dir"}, false, map[string]string{"only-hash": "true", "recursive": "true"}},
		{[]string{"add", "--", "-Q"}, "dsclient add", []string{"-Q"}, false, map[string]string{"quiet": "false"}},
		{[]string{"add", "--chunker=size-1024", "--", "--cid-version=1"}, "dsclient add", []string{"--cid-version=1"}, false,
			map[string]string{"chunker": "size-1024", "cid-version": "0"}},
		{[]string{"-q", "add", "file"}, "dsclient add", []string{"file"}, true, nil},
		{[]string{"--q", "add", "file"}, "dsclient add", []string{"file"}, true, nil},
		{[]string{"add", "file", "-q"}, "dsclient add", []string{"file"}, true, nil},
		{[]string{"get", "bafkqaaa", "-"}, "dsclient get", []string{"bafkqaaa", "-"}, false, nil},
		{[]string{"status", "--wait", "--json"}, "dsclient status", nil, false, map[string]string{"wait": "true", "json": "true"}},
		{[]string{"status"}, "dsclient status", nil, false, map[string]string{"wait": "false", "json": "false"}},
		{[]string{"init", "--bootstrapper=/ip4/127.0.0.1/tcp/6735/p2p/12D3KooW"}, "dsclient init", nil, false,
			map[string]string{"bootstrapper": "/ip4/127.0.0.1/tcp/6735/p2p/12D3KooW"}},
		{[]string{"init", "--bootstrapper", "/ip4/127.0.0.1/tcp/6735"}, "dsclient init", nil, false,
			map[string]string{"bootstrapper": "/ip4/127.0.0.1/tcp/6735"}},
		{[]string{"id"}, "dsclient id", nil, false, nil},
		{[]string{"node", "drain", "12D3KooW", "--no-wait"}, "dsclient node drain", []string{"12D3KooW"}, false, map[string]string{"no-wait": "true"}},
		{[]string{"node", "drain", "--no-wait", "12D3KooW"}, "dsclient node drain", []string{"12D3KooW"}, false, map[string]string{"no-wait": "true"}},
		{[]string{"node", "drain", "12D3KooW"}, "dsclient node drain", []string{"12D3KooW"}, false, map[string]string{"no-wait": "false"}},
		{[]string{"node", "remove", "12D3KooW"}, "dsclient node remove", []string{"12D3KooW"}, false, nil},
		{[]string{"node", "admit", "12D3KooW"}, "dsclient node admit", []string{"12D3KooW"}, false, nil},
		{[]string{"client", "grant", "12D3KooW", "--role=read-write"}, "dsclient client grant", []string{"12D3KooW"}, false, map[string]string{"role": "read-write"}},
		{[]string{"client", "grant", "--role", "read-only", "12D3KooW"}, "dsclient client grant", []string{"12D3KooW"}, false, map[string]string{"role": "read-only"}},
		{[]string{"client", "revoke", "12D3KooW"}, "dsclient client revoke", []string{"12D3KooW"}, false, nil},
		{[]string{"client", "list"}, "dsclient client list", nil, false, nil},
		// scripts/bench.sh, with the defaults of the flags it leaves out.
		{[]string{"bench", "--suite=standard", "--duration=2s", "--baseline-dir=/tmp/b", "--report=bench/results", "--stop-pids=12,34", "--ceiling"},
			"dsclient bench", nil, false, map[string]string{"suite": "standard", "duration": "2s", "baseline-dir": "/tmp/b", "report": "bench/results",
				"stop-pids": "12,34", "ceiling": "true", "workload": "put,get", "size": "256KiB", "count": "0", "concurrency": "16", "degraded": "-1",
				"no-baseline": "false", "json": "false", "policy": "", "cpuprofile": ""}},
		// scripts/vs-seaweedfs.sh
		{[]string{"bench", "--workload=put,get", "--size=256KiB", "--concurrency=16", "--count=3000", "--no-baseline"}, "dsclient bench", nil, false,
			map[string]string{"workload": "put,get", "count": "3000", "no-baseline": "true", "duration": "10s"}},
	} {
		p := parse(t, tc.args...)
		if p.err != nil || p.name() != tc.cmd || !slices.Equal(p.pos, tc.pos) || p.quiet != tc.quiet {
			t.Errorf("%q: ran %q with %q, quiet %v, err %v; want %q with %q, quiet %v", tc.args, p.name(), p.pos, p.quiet, p.err, tc.cmd, tc.pos, tc.quiet)
			continue
		}
		for name, want := range tc.flags {
			if got := p.flag(t, name); got != want {
				t.Errorf("%q: --%s=%q, want %q", tc.args, name, got, want)
			}
		}
		if p.g.conf != ".dsclient" || p.g.logLevel != "error" || p.g.timeout != 0 {
			t.Errorf("%q: global flags %+v, want the defaults", tc.args, p.g)
		}
	}
}

// TestParseGlobalFlags: --conf=DIR, --timeout, --log-level and -q, before
// the command as the README writes them, after it, or between its
// arguments.
func TestParseGlobalFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--conf=/srv/client", "--timeout=60s", "--log-level=info", "-q", "get", "bafkqaaa", "out"},
		{"--conf", "/srv/client", "--timeout", "60s", "--log-level", "info", "--q", "get", "bafkqaaa", "out"},
		{"get", "bafkqaaa", "--conf=/srv/client", "out", "-q", "--timeout=1m", "--log-level=info"},
		{"-q", "--conf=/srv/client", "get", "--timeout=60s", "--log-level=info", "bafkqaaa", "out"},
	} {
		p := parse(t, args...)
		if p.err != nil || p.name() != "dsclient get" || !slices.Equal(p.pos, []string{"bafkqaaa", "out"}) {
			t.Errorf("%q: ran %q with %q, err %v; want get with [bafkqaaa out]", args, p.name(), p.pos, p.err)
			continue
		}
		if p.g.conf != "/srv/client" || p.g.timeout != time.Minute || p.g.logLevel != "info" || !p.quiet {
			t.Errorf("%q: conf %q timeout %s log level %q quiet %v", args, p.g.conf, p.g.timeout, p.g.logLevel, p.quiet)
		}
	}
	// --conf=DIR before the subcommand, as the README has it.
	p := parse(t, "--conf=[client-cfg-dir]", "node", "drain", "12D3KooW...")
	if p.err != nil || p.name() != "dsclient node drain" || p.g.conf != "[client-cfg-dir]" || !slices.Equal(p.pos, []string{"12D3KooW..."}) {
		t.Errorf("--conf before node drain: ran %q with %q, conf %q, err %v", p.name(), p.pos, p.g.conf, p.err)
	}
	if p := parse(t, "--log-level=nonsense", "id"); p.err == nil || !strings.Contains(p.err.Error(), "--log-level") {
		t.Errorf("a bad --log-level: %v", p.err)
	}
}

// TestParseErrors: what is not a command line is refused with the errors
// the hand-written parsing gave, and -h prints help without an error.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"--conf=x"}, "missing command"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"ad", "file"}, `unknown command "ad" (did you mean add?)`},
		{[]string{"add"}, "add: want exactly one FILE, got 0"},
		{[]string{"add", "a", "b"}, `add: want exactly one FILE, got 2 (["a" "b"])`},
		{[]string{"add", "a", "--", "-Q"}, `add: want exactly one FILE, got 2 (["a" "-Q"])`},
		{[]string{"add", "file", "--nope"}, "unknown flag: --nope"},
		{[]string{"add", "file", "--cid-version=x"}, `invalid argument "x" for "--cid-version"`},
		{[]string{"get", "bafkqaaa"}, "get: want CID OUTFILE"},
		{[]string{"id", "extra"}, `id: unexpected arguments ["extra"]`},
		{[]string{"status", "--wait=maybe"}, `invalid argument "maybe"`},
		{[]string{"node"}, "usage: dsclient node drain PEER-ID"},
		{[]string{"node", "frob", "12D3KooW"}, "usage: dsclient node drain PEER-ID"},
		{[]string{"node", "drain"}, "usage: dsclient node drain PEER-ID"},
		{[]string{"node", "drain", "a", "b"}, `node drain: unexpected arguments ["b"]`},
		{[]string{"node", "remove"}, "usage: dsclient node drain PEER-ID"},
		{[]string{"client"}, "usage: dsclient client grant PEER-ID"},
		{[]string{"client", "grant"}, "usage: dsclient client grant PEER-ID"},
		{[]string{"client", "grant", "a", "b", "--role=read-only"}, `client grant: unexpected arguments ["b"]`},
		{[]string{"client", "list", "x"}, "usage: dsclient client grant PEER-ID"},
		{[]string{"--timeout=soon", "id"}, `invalid argument "soon" for "--timeout"`},
	} {
		p := parse(t, tc.args...)
		if p.err == nil || !strings.Contains(p.err.Error(), tc.want) {
			t.Errorf("%q: err %v, want one containing %q", tc.args, p.err, tc.want)
		}
		if p.cmd != nil {
			t.Errorf("%q: %s ran", tc.args, p.name())
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"add", "file", "-h"}, {"node", "--help"}, {"help", "client", "grant"}} {
		p := parse(t, args...)
		if p.err != nil || p.cmd != nil || !strings.Contains(p.stdout, "Usage:") {
			t.Errorf("%q: err %v, ran %q, stdout %q; want the help and no error", args, p.err, p.name(), p.stdout)
		}
	}
}
