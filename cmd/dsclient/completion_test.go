package main

import (
	"bytes"
	"strings"
	"testing"
)

// runOut runs dsclient's command tree on args and returns its stdout.
func runOut(t *testing.T, args ...string) string {
	t.Helper()
	var g globals
	root := newRoot(&g)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("dsclient %q: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

// TestCompletion: `dsclient completion bash|zsh|fish` writes a script that
// registers completion for dsclient and asks dsclient itself (its hidden
// __complete command) for the words, and that command offers the
// subcommands and their flags. The bash script end to end, run by bash, is
// e2e's TestShellCompletion.
func TestCompletion(t *testing.T) {
	for shell, wants := range map[string][]string{
		"bash": {"# bash completion V2 for dsclient", "__start_dsclient()", "__complete", "complete -o default -F __start_dsclient dsclient"},
		"zsh":  {"#compdef dsclient", "__complete"},
		"fish": {"complete -c dsclient ", "__complete"},
	} {
		script := runOut(t, "completion", shell)
		for _, want := range wants {
			if !strings.Contains(script, want) {
				t.Errorf("completion %s lacks %q:\n%.600s", shell, want, script)
			}
		}
	}

	words := func(args ...string) []string {
		var ws []string
		for _, l := range strings.Split(runOut(t, append([]string{"__complete"}, args...)...), "\n") {
			if w, _, _ := strings.Cut(l, "\t"); w != "" && !strings.HasPrefix(w, ":") {
				ws = append(ws, w)
			}
		}
		return ws
	}
	got := strings.Join(words(""), " ")
	if want := "add bench client completion get help id init node status"; got != want {
		t.Errorf("completions of `dsclient `: %q, want %q", got, want)
	}
	got = strings.Join(words("--conf=dir", "node", ""), " ")
	if want := "admit drain remove"; got != want {
		t.Errorf("completions of `dsclient --conf=dir node `: %q, want %q", got, want)
	}
	got = strings.Join(words("add", "file", "--"), " ")
	for _, want := range []string{"--quiet", "--recursive", "--only-hash", "--cid-version", "--raw-leaves", "--chunker", "--conf", "--timeout"} {
		if !strings.Contains(got+" ", want+" ") {
			t.Errorf("completions of `dsclient add file --` lack %s: %s", want, got)
		}
	}
}
