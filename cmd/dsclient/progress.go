package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// quiet is set by the global -q flag: no progress bars.
var quiet bool

// newBar returns a progress bar on stderr, or one that draws nothing when
// stderr is not a terminal or -q is set. max < 0: a count with no end
// (a spinner); bytes: the count is bytes (shown with units and a rate).
func newBar(max int64, what string, bytes bool) *progressbar.ProgressBar {
	w := io.Writer(os.Stderr)
	if quiet || !isTerminal(os.Stderr) {
		w = io.Discard
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(bytes),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(w, "\n") }),
		progressbar.OptionFullWidth(),
	)
}

// isTerminal reports whether f is a terminal (progress is drawn only there).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
