package volume

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

const (
	crashDirEnv = "VOLUME_CRASH_DIR"
	crashRunEnv = "VOLUME_CRASH_RUN"
	crashMax    = 70 << 10
)

// TestHelperWriter is the child of TestCrash. It writes until killed and
// prints "ACK <key>" after each Put returns.
func TestHelperWriter(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestCrash")
	}
	run := os.Getenv(crashRunEnv)
	s, err := Open(dir, &Options{MaxVolumeSize: 4 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				k := fmt.Sprintf("/r%s/g%d/%06d", run, g, i)
				if err := s.Put(context.Background(), ds.NewKey(k), valueFor(k, 1, crashMax)); err != nil {
					fmt.Fprintln(os.Stderr, "put:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "ACK %s\n", k)
				out.Flush()
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir := t.TempDir()
	ctx := context.Background()
	var acked []string
	for run := 0; run < 3; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s=%d", crashRunEnv, run))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n, killed := 0, false
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "ACK ") {
				continue
			}
			acked = append(acked, strings.TrimPrefix(line, "ACK "))
			if n++; n == 300 && !killed {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL by PID
					t.Fatal(err)
				}
				killed = true
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("run %d: child exited after %d acks; stderr:\n%s", run, n, stderr.String())
		}

		s := openT(t, dir, nil)
		for _, k := range acked {
			mustEqual(t, s, k, valueFor(k, 1, crashMax))
		}
		// Every key the store holds, acknowledged or not, has the right bytes.
		res, err := s.Query(ctx, dsq.Query{})
		if err != nil {
			t.Fatal(err)
		}
		present := 0
		for r := range res.Next() {
			if r.Error != nil {
				t.Fatalf("run %d: query: %v", run, r.Error)
			}
			if !bytes.Equal(r.Value, valueFor(r.Key, 1, crashMax)) {
				t.Fatalf("run %d: key %s holds wrong bytes", run, r.Key)
			}
			present++
		}
		if err := s.Check(ctx); err != nil {
			t.Fatalf("run %d: Check: %v", run, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: %d acknowledged so far, %d keys present", run, len(acked), present)
	}
}
