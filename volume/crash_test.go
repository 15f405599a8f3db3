package volume

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	bolt "go.etcd.io/bbolt"
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
	if err == nil {
		err = s.DB().Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(sideBucket)
			return err
		})
	}
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
				v := valueFor(k, 1, crashMax)
				var err error
				if g%2 == 0 {
					err = s.Put(context.Background(), ds.NewKey(k), v)
				} else {
					// As a node does: an index entry commits with the record.
					err = s.CommitWith(context.Background(), ds.NewKey(k), v, nil, func(tx *bolt.Tx, _ Loc) ([]Loc, error) {
						return nil, tx.Bucket(sideBucket).Put([]byte(k), []byte(strconv.Itoa(len(v))))
					})
				}
				if err != nil {
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
		// Entries written with CommitWith and their records committed together:
		// every entry has its record, and every acknowledged one is there.
		entries := 0
		err = s.DB().View(func(tx *bolt.Tx) error {
			return tx.Bucket(sideBucket).ForEach(func(k, v []byte) error {
				entries++
				got, err := s.Get(ctx, ds.NewKey(string(k)))
				if err != nil || strconv.Itoa(len(got)) != string(v) {
					return fmt.Errorf("entry %s (%s bytes) without its record: %d bytes, %v", k, v, len(got), err)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, k := range acked {
			if g := k[strings.Index(k, "/g")+2] - '0'; g%2 == 1 {
				if err := s.DB().View(func(tx *bolt.Tx) error {
					if tx.Bucket(sideBucket).Get([]byte(k)) == nil {
						return fmt.Errorf("acknowledged %s has no entry", k)
					}
					return nil
				}); err != nil {
					t.Fatalf("run %d: %v", run, err)
				}
			}
		}
		if entries == 0 {
			t.Fatalf("run %d: no CommitWith entries at all", run)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: %d acknowledged so far, %d keys present, %d with entries", run, len(acked), present, entries)
	}
}
