package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestProgressOnlyOnATerminal: off a terminal (here a pipe) the bars of
// add, get, status --wait and node drain draw nothing, and bench says in
// one line what it runs.
func TestProgressOnlyOnATerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	defer func() { os.Stderr = stderr }()

	bar := newBar(1<<20, "adding", true)
	if _, err := bar.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	_ = bar.Finish()
	spin := newBar(-1, "getting", true)
	_ = spin.Add(12345)
	_ = spin.Finish()
	if p := progressBar(isTerminal(os.Stderr), "cluster put 256KiB c16"); p != nil {
		t.Fatal("bench draws a bar on a pipe")
	}
	w.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := "running cluster put 256KiB c16\n"; string(got) != want {
		t.Fatalf("stderr on a pipe: %q, want only %q", got, want)
	}
	if strings.Contains(string(got), "adding") {
		t.Fatal("a bar was drawn")
	}
}
