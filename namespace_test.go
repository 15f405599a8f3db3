package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// keysUnder lists, sorted, the keys d's Query returns under prefix.
func keysUnder(t *testing.T, d *dscluster.Datastore, prefix string) []string {
	t.Helper()
	keys := queryKeys(t, d, dsq.Query{Prefix: prefix, KeysOnly: true})
	slices.Sort(keys)
	return keys
}

// TestNamespacesKeepKeysApart: front ends with different namespaces on one
// cluster store the same key apart, never see, list or delete each other's
// keys, and each reports the disk its own keys take. A front end without
// a namespace sees them all under their stored names.
func TestNamespacesKeepKeysApart(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	a := c.Client(&dscluster.Options{Namespace: "alice"})
	b := c.Client(&dscluster.Options{Namespace: "bob"})
	root := c.Client(nil)

	shared := ds.NewKey("/blocks/SHARED")
	va, vb := bytes.Repeat([]byte("a"), 100<<10), []byte("bob's")
	if err := a.Put(ctx, shared, va); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, shared, vb); err != nil {
		t.Fatal(err)
	}
	batch, _ := a.Batch(ctx)
	for _, k := range []string{"/blocks/A1", "/other/A2"} {
		if err := batch.Put(ctx, ds.NewKey(k), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		d    *dscluster.Datastore
		want []byte
	}{{a, va}, {b, vb}} {
		got, err := x.d.Get(ctx, shared)
		if err != nil || !bytes.Equal(got, x.want) {
			t.Fatalf("Get %s: %d bytes, %v; want %d bytes, its own", shared, len(got), err, len(x.want))
		}
	}
	if _, err := b.Get(ctx, ds.NewKey("/blocks/A1")); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("bob reads alice's key: %v", err)
	}
	if has, err := b.Has(ctx, ds.NewKey("/other/A2")); has || err != nil {
		t.Fatalf("bob's Has of alice's key: %v, %v", has, err)
	}
	if got, want := keysUnder(t, a, ""), []string{"/blocks/A1", "/blocks/SHARED", "/other/A2"}; !slices.Equal(got, want) {
		t.Fatalf("alice's Query: %v, want %v", got, want)
	}
	if got, want := keysUnder(t, a, "/blocks"), []string{"/blocks/A1", "/blocks/SHARED"}; !slices.Equal(got, want) {
		t.Fatalf("alice's Query of /blocks: %v, want %v", got, want)
	}
	if got, want := keysUnder(t, b, ""), []string{"/blocks/SHARED"}; !slices.Equal(got, want) {
		t.Fatalf("bob's Query: %v, want %v", got, want)
	}
	if got := keysUnder(t, root, "/ns"); len(got) != 4 || !strings.HasPrefix(got[0], "/ns/alice/") || got[3] != "/ns/bob/blocks/SHARED" {
		t.Fatalf("the root front end's Query of /ns: %v", got)
	}

	// Disk: alice's 100 KiB value takes its 4+2 shards, bob's few bytes
	// their replicas.
	usageA, err := a.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	usageB, err := b.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if usageA < 150<<10 || usageA > 160<<10 || usageB == 0 || usageB > 1<<10 {
		t.Fatalf("disk usage: alice %d (want about 1.5 x 100 KiB), bob %d (want a few replicas of 5 bytes)", usageA, usageB)
	}

	// Bob deletes his copy: alice's stays.
	if err := b.Delete(ctx, shared); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, shared); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("bob's Get after his delete: %v", err)
	}
	if got, err := a.Get(ctx, shared); err != nil || !bytes.Equal(got, va) {
		t.Fatalf("alice's Get after bob's delete: %d bytes, %v", len(got), err)
	}
	if _, err := dscluster.New(nil, nil, &dscluster.Options{Namespace: "a/b"}); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("a namespace with a slash: %v, want refused", err)
	}
}
