package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/boxo/datastore/dshelp"
	ds "github.com/ipfs/go-datastore"
	"github.com/multiformats/go-multihash"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
)

// TestCIDCheck: a read-write client stores bytes under another block's key
// (as kubo's blockstore names blocks). A front end refuses them with
// ErrCIDMismatch; the true block reads back; keys that name no multihash
// are not checked. With SkipCIDCheck the bytes come back: the writer's
// checksums alone cannot tell. Forged bytes that a failed write left over a
// true block count as a corrupt value: the block is read instead.
func TestCIDCheck(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{RepairInterval: time.Hour})
	block := func(b []byte) ds.Key {
		h, err := multihash.Sum(b, multihash.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		return dshelp.MultihashToDsKey(h)
	}
	good := bytes.Repeat([]byte("block"), 10_000)
	goodKey := block(good)
	forged := block([]byte("the block whose key is stolen"))
	plainKey := ds.NewKey("/not/a/block")
	w := c.Client(&dscluster.Options{SkipCIDCheck: true})
	for k, v := range map[ds.Key][]byte{goodKey: good, forged: []byte("other bytes"), plainKey: []byte("anything")} {
		if err := w.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	d := c.Client(nil)
	if got, err := d.Get(ctx, goodKey); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("get of a true block: %d bytes, %v", len(got), err)
	}
	if got, err := d.Get(ctx, forged); !errors.Is(err, dscluster.ErrCIDMismatch) || got != nil {
		t.Fatalf("get of other bytes under a block's key: %q, %v; want ErrCIDMismatch", got, err)
	}
	if got, err := d.Get(ctx, plainKey); err != nil || string(got) != "anything" {
		t.Fatalf("get of a key that names no multihash: %q, %v", got, err)
	}
	if got, err := w.Get(ctx, forged); err != nil || string(got) != "other bytes" {
		t.Fatalf("with SkipCIDCheck: %q, %v; want the bytes stored", got, err)
	}
	// Other bytes written over a true block by a write that failed its
	// quorum (it reached 4 positions of 6, enough to decode): those are
	// refused, and the block the nodes keep beside them is served.
	o := c.Owners(goodKey.String())
	hostile := c.Client(&dscluster.Options{SkipCIDCheck: true, Down: []int{o[4], o[5]}})
	if err := hostile.Put(ctx, goodKey, bytes.Repeat([]byte("forged"), 10_000)); !errors.Is(err, dscluster.ErrQuorum) {
		t.Fatalf("forged overwrite reaching 4 positions: %v, want a quorum error", err)
	}
	if got, err := w.Get(ctx, goodKey); err != nil || !bytes.HasPrefix(got, []byte("forged")) {
		t.Fatalf("without the check the forged bytes are the newest readable: %.12q, %v", got, err)
	}
	if got, err := d.Get(ctx, goodKey); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("get of a true block under a failed forged overwrite: %.12q, %v; want the block", got, err)
	}
	// The kubo plugin's switch: skip_cid_check in the client config.
	cfg := c.ClientConfig()
	cfg.SkipCIDCheck = true
	p, err := dscluster.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got, err := p.Get(ctx, forged); err != nil || string(got) != "other bytes" {
		t.Fatalf("with skip_cid_check in the client config: %q, %v; want the bytes stored", got, err)
	}
}

// BenchmarkCIDCheck_256K: what the CID check adds to a Get of a 256 KiB
// block (CIDv0: SHA-256), beside the whole in-process get of
// BenchmarkClusterGetVolume_4x2x256K.
func BenchmarkCIDCheck_256K(b *testing.B) {
	val := bytes.Repeat([]byte("cid"), 256<<10/3)
	h, err := multihash.Sum(val, multihash.SHA2_256, -1)
	if err != nil {
		b.Fatal(err)
	}
	key := dshelp.MultihashToDsKey(h)
	b.SetBytes(int64(len(val)))
	for b.Loop() {
		if err := dscluster.CheckCID(key, val); err != nil {
			b.Fatal(err)
		}
	}
}
