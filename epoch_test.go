package dscluster_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/transport"
	"github.com/filedrive-team/go-ds-cluster/wire"
)

// TestStaleEpochRefreshes: DESIGN §3.5. A node refuses a request made with
// an older map epoch and says so; a front end holding the older map
// refreshes it from the nodes and its Put and Get go through.
func TestStaleEpochRefreshes(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{Epoch: 7})
	psk, err := config.ParseSecret(c.Secret)
	if err != nil {
		t.Fatal(err)
	}
	h, err := transport.NewHost(transport.HostConfig{Secret: psk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })

	old := *c.Info
	oldMap := *c.Info.Map
	oldMap.Epoch = 6
	old.Map = &oldMap
	d, err := dscluster.New(h, &old, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The node's own answer to the old epoch.
	cl := transport.NewClient(h, 0)
	resp, err := cl.Do(ctx, c.Node(0).ID(), &wire.Request{Op: wire.OpStatus, Epoch: 6})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != wire.StatusStaleEpoch || resp.Epoch != 7 || !strings.Contains(resp.Message, "epoch 6") || !strings.Contains(resp.Message, "epoch 7") {
		t.Fatalf("request at epoch 6 to a node at 7: %s %q (epoch %d), want stale epoch naming both", resp.Status, resp.Message, resp.Epoch)
	}

	k := ds.NewKey("/epoch/value")
	val := bytes.Repeat([]byte("e"), 100<<10)
	if err := d.Put(ctx, k, val); err != nil {
		t.Fatalf("put with a stale map: %v", err)
	}
	if got := d.Cluster().Map.Epoch; got != 7 {
		t.Fatalf("front end epoch after the refusal: %d, want 7", got)
	}
	got, err := d.Get(ctx, k)
	if err != nil || !bytes.Equal(got, val) {
		t.Fatalf("get after refresh: %d bytes, %v", len(got), err)
	}
}
