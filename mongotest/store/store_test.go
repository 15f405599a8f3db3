// Package store tests the MongoDB shard store (mongods) against FerretDB,
// alone and under a cluster.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dstest "github.com/ipfs/go-datastore/test"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/filedrive-team/go-ds-cluster/mongods"
	"github.com/filedrive-team/go-ds-cluster/mongotest/ferret"
)

// server starts a FerretDB in the test's folder, stopped at its end.
func server(t *testing.T) *ferret.Server {
	t.Helper()
	return serverIn(t, t.TempDir())
}

// memServer is server with its files in memory (tmpfs) where the machine
// has it: the conformance suite's 300,000 writes would each wait for a
// disk flush.
func memServer(t *testing.T) *ferret.Server {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "mongods-test-")
	if err != nil {
		return server(t)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return serverIn(t, dir)
}

func serverIn(t *testing.T, dir string) *ferret.Server {
	t.Helper()
	s, err := ferret.Start(filepath.Join(dir, "ferretdb"), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// realURI is the MongoDB the store's tests use instead of FerretDB, when
// MONGODB_TEST_URI names one (ending in /).
var realURI = os.Getenv("MONGODB_TEST_URI")

// uri is where a test's store lives: the real MongoDB, or a FerretDB of
// its own (started by memory). A test's collection is its own.
func uri(t *testing.T, memory bool) string {
	t.Helper()
	if realURI != "" {
		return realURI
	}
	if memory {
		return memServer(t).URI()
	}
	return server(t).URI()
}

// open opens a store in database shards at uri, closed at the test's end.
func open(t *testing.T, uri, collection string) *mongods.Datastore {
	t.Helper()
	collection += fmt.Sprintf("_%d", time.Now().UnixNano())
	d, err := mongods.Open(context.Background(), uri+"shards", mongods.Options{Collection: collection, CheckEvery: 100 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if realURI != "" { // leave no collection behind
			dropCollections(t, uri, collection)
		}
		d.Close()
	})
	return d
}

// dropCollections drops a test's collections on a real MongoDB.
func dropCollections(t *testing.T, uri, collection string) {
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Disconnect(context.Background())
	for _, name := range []string{collection, collection + "_parts"} {
		if err := c.Database("shards").Collection(name).Drop(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

func TestSubtestAll(t *testing.T) {
	dstest.SubtestAll(t, open(t, uri(t, true), "conformance"))
}

// countParts counts the documents in the collection of d's large values'
// parts.
func countParts(t *testing.T, uri string, d *mongods.Datastore) int64 {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	n, err := c.Database("shards").Collection(d.Collection()+"_parts").CountDocuments(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Values past a document's size go in parts; replacing and deleting them
// leaves no part behind, and a reader gets whole values only.
func TestLargeValues(t *testing.T) {
	u := uri(t, false)
	d := open(t, u, "large")
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 20<<20+17)
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	k := ds.NewKey("/big")
	if err := d.Put(ctx, k, big); err != nil {
		t.Fatal(err)
	}
	if n := countParts(t, u, d); n != 3 {
		t.Fatalf("%d parts for %d bytes, want 3 of at most 8 MiB", n, len(big))
	}
	got, err := d.Get(ctx, k)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("get of the large value: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, big), err)
	}
	if size, err := d.GetSize(ctx, k); err != nil || size != len(big) {
		t.Fatalf("GetSize = %d, %v; want %d", size, err, len(big))
	}
	// Overwritten by another large value, then by a small one.
	big2 := append(bytes.Clone(big[:9<<20]), 'x')
	if err := d.Put(ctx, k, big2); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Get(ctx, k); err != nil || !bytes.Equal(got, big2) {
		t.Fatalf("get after a large overwrite: %d bytes, err %v", len(got), err)
	}
	if n := countParts(t, u, d); n != 2 {
		t.Fatalf("%d parts after the overwrite, want the new value's 2", n)
	}
	if err := d.Put(ctx, k, []byte("small")); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Get(ctx, k); err != nil || string(got) != "small" {
		t.Fatalf("get after a small overwrite: %q, %v", got, err)
	}
	if n := countParts(t, u, d); n != 0 {
		t.Fatalf("%d parts left after a small overwrite", n)
	}
	if err := d.Put(ctx, k, big); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(ctx, k); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get after delete: %v, want ds.ErrNotFound", err)
	}
	if n := countParts(t, u, d); n != 0 {
		t.Fatalf("%d parts left after delete", n)
	}
}

// A database that stops fails the store's operations at once, with an
// error that names the store, and Err says so; once it is back, Err
// clears and what was written before reads back.
func TestDatabaseStops(t *testing.T) {
	if realURI != "" {
		t.Skip("stops the database: FerretDB only")
	}
	s := server(t)
	d := open(t, s.URI(), "stops")
	ctx := context.Background()
	k := ds.NewKey("/kept")
	if err := d.Put(ctx, k, []byte("before")); err != nil {
		t.Fatal(err)
	}
	dir, addr := s.Dir(), s.Addr()
	s.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for d.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if d.Err() == nil {
		t.Fatal("Err is nil 10 s after the database stopped")
	}
	start := time.Now()
	err := d.Put(ctx, ds.NewKey("/during"), []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "mongodb shard store mongodb://"+addr) {
		t.Fatalf("put with the database stopped: %v; want an error naming the store", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("put with the database stopped took %s: want it refused at once", took)
	}
	if _, err := d.Get(ctx, k); err == nil || errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("get with the database stopped: %v; want a store error, not a value or not found", err)
	}
	t.Logf("refused: %v", err)

	s2, err := ferret.Start(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s2.Stop)
	deadline = time.Now().Add(15 * time.Second)
	for d.Err() != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := d.Err(); err != nil {
		t.Fatalf("Err 15 s after the database came back: %v", err)
	}
	if got, err := d.Get(ctx, k); err != nil || string(got) != "before" {
		t.Fatalf("get after the restart: %q, %v", got, err)
	}
	if err := d.Put(ctx, ds.NewKey("/after"), []byte("y")); err != nil {
		t.Fatalf("put after the restart: %v", err)
	}
}
