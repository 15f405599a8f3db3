package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

// TestParseArgs: flags are taken wherever they stand among the positional
// arguments (`add FILE -Q` used to fail: FILE stopped the flag parsing and
// -Q counted as a second file), and "--" ends them.
func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		pos   []string
		quiet bool
		cid   int
	}{
		{[]string{"-Q", "file"}, []string{"file"}, true, 0},
		{[]string{"file", "-Q"}, []string{"file"}, true, 0},
		{[]string{"file", "--cid-version=1", "-Q"}, []string{"file"}, true, 1},
		{[]string{"--cid-version", "1", "a", "b"}, []string{"a", "b"}, false, 1},
		{[]string{"a", "--", "-Q"}, []string{"a", "-Q"}, false, 0},
		{[]string{"--", "-Q"}, []string{"-Q"}, false, 0},
		{nil, nil, false, 0},
	} {
		fs := flag.NewFlagSet("add", flag.ContinueOnError)
		quiet := fs.Bool("Q", false, "")
		cid := fs.Int("cid-version", 0, "")
		pos, err := parseArgs(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *quiet != tc.quiet || *cid != tc.cid {
			t.Errorf("%q: %q quiet %v cid %d, %v; want %q quiet %v cid %d", tc.args, pos, *quiet, *cid, err, tc.pos, tc.quiet, tc.cid)
		}
	}
	fs := flag.NewFlagSet("add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := parseArgs(fs, []string{"file", "--nope"}); err == nil {
		t.Error("an unknown flag after the file: no error")
	}
}
