package dscluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/membership"
)

// openAs opens a front end of c with a new identity.
func openAs(t *testing.T, c *clustertest.Cluster) *dscluster.Datastore {
	t.Helper()
	_, key, err := config.NewPrivKey()
	if err != nil {
		t.Fatal(err)
	}
	cc := c.ClientConfig()
	cc.Identity = key
	d, err := dscluster.Open(context.Background(), cc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestClientRoles (DESIGN §6): without roles every client reads and writes;
// once a client is granted read-write, a client without a role is refused
// reads and writes, a read-only client reads but may not write, delete or
// change roles, and the errors say why.
func TestClientRoles(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{FastRaft: true})
	admin, reader, stranger := openAs(t, c), openAs(t, c), openAs(t, c)
	big, small := ds.NewKey("/roles/big"), ds.NewKey("/roles/small")
	vbig, vsmall := bytes.Repeat([]byte("b"), 300<<10), []byte("small value")
	if err := stranger.Put(ctx, big, vbig); err != nil {
		t.Fatalf("put without roles: %v", err)
	}

	grant := func(by *dscluster.Datastore, who *dscluster.Datastore, role string) error {
		return by.Member(ctx, membership.Command{Op: membership.OpGrant, ID: who.ID().String(), Role: role})
	}
	// The first grant waits for the raft group to start.
	clustertest.WaitFor(t, 20*time.Second, "the first grant", func() (bool, string) {
		err := grant(admin, admin, config.RoleReadWrite)
		return err == nil, fmt.Sprint(err)
	})
	if err := grant(admin, reader, config.RoleReadOnly); err != nil {
		t.Fatal(err)
	}
	// Every node applies the grants from the raft log.
	clustertest.WaitFor(t, 10*time.Second, "every node knows both roles", func() (bool, string) {
		for i := range c.Len() {
			if n := len(c.Node(i).Cluster().Clients); n != 2 {
				return false, fmt.Sprintf("node %d knows %d", i, n)
			}
		}
		return true, ""
	})
	_, err := stranger.Get(ctx, big)
	wantRefused := func(what string, err error, why string) {
		t.Helper()
		if !errors.Is(err, dscluster.ErrUnauthorized) || !strings.Contains(err.Error(), why) {
			t.Fatalf("%s: %v; want it refused (%s)", what, err, why)
		}
	}
	wantRefused("get by a client without a role", err, "has no role")

	if err := admin.Put(ctx, small, vsmall); err != nil {
		t.Fatalf("put by the read-write client: %v", err)
	}
	for _, k := range []ds.Key{big, small} {
		if got, err := reader.Get(ctx, k); err != nil || !bytes.Equal(got, map[ds.Key][]byte{big: vbig, small: vsmall}[k]) {
			t.Fatalf("get %s by the read-only client: %d bytes, %v", k, len(got), err)
		}
		if has, err := reader.Has(ctx, k); !has || err != nil {
			t.Fatalf("has %s by the read-only client: %v, %v", k, has, err)
		}
	}
	wantRefused("put by the read-only client", reader.Put(ctx, big, vsmall), "read-only client")
	wantRefused("delete by the read-only client", reader.Delete(ctx, big), "read-only client")
	wantRefused("grant by the read-only client", grant(reader, reader, config.RoleReadWrite), "read-only client")
	wantRefused("put by a client without a role", stranger.Put(ctx, small, vbig), "has no role")
	wantRefused("grant by a client without a role", grant(stranger, stranger, config.RoleReadWrite), "has no role")
	_, err = stranger.Has(ctx, small)
	wantRefused("has by a client without a role", err, "has no role")

	// Nothing refused was written.
	if got, err := admin.Get(ctx, big); err != nil || !bytes.Equal(got, vbig) {
		t.Fatalf("get by the read-write client: %d bytes, %v; want the first value", len(got), err)
	}
	if got, err := admin.Get(ctx, small); err != nil || !bytes.Equal(got, vsmall) {
		t.Fatalf("get by the read-write client: %d bytes, %v", len(got), err)
	}
	// The read-write client changes roles; the last one cannot go.
	if err := admin.Member(ctx, membership.Command{Op: membership.OpRevoke, ID: admin.ID().String()}); err == nil {
		t.Fatal("the last read-write client revoked itself")
	}
	if err := admin.Delete(ctx, big); err != nil {
		t.Fatalf("delete by the read-write client: %v", err)
	}
}
