package e2e

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/config"
)

// TestProcessHungNode: a node that stops answering without closing its
// connections (SIGSTOP: the kernel keeps them open, nothing comes back, as
// with a stuck disk) must not hold reads or writes for the request
// timeout. The front end's timeout is a minute; every Get and Put here
// must finish within 20 s, which only the hedge (ask the next positions,
// or return with the write quorum, after HedgeAfter) makes possible.
func TestProcessHungNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 6 node processes; skipped with -short")
	}
	c := startClusterN(t, 6)
	cc, err := config.LoadClient(filepath.Join(c.client, config.FileName))
	if err != nil {
		t.Fatal(err)
	}
	d, err := dscluster.Open(context.Background(), cc, &dscluster.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	keys, vals := values(11, 60)
	putValues(t, d, keys, vals)
	checkValues(t, d, keys, vals) // every node has a live connection now

	const x = 2
	pid := c.nodes[x].cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	bounded := func(what string, f func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := f(ctx); err != nil {
			t.Fatalf("%s with node %d hung: %v", what, x, err)
		}
	}
	for i, k := range keys {
		bounded("get "+k.String(), func(ctx context.Context) error {
			got, err := d.Get(ctx, k)
			if err == nil && !bytes.Equal(got, vals[i]) {
				err = fmt.Errorf("%d bytes, not the %d put", len(got), len(vals[i]))
			}
			return err
		})
	}
	more, moreVals := values(12, 10)
	for i, k := range more {
		bounded("put "+k.String(), func(ctx context.Context) error { return d.Put(ctx, k, moreVals[i]) })
		bounded("has "+k.String(), func(ctx context.Context) error {
			has, err := d.Has(ctx, k)
			if err == nil && !has {
				err = ds.ErrNotFound
			}
			return err
		})
	}

	// Woken up, the node serves again and the cluster reads everything.
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	checkValues(t, d, append(keys, more...), append(vals, moreVals...))
}
