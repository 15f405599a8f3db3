package ferret_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/filedrive-team/go-ds-cluster/mongotest/ferret"
)

type blobDoc struct {
	ID   string `bson:"_id"`
	Data []byte `bson:"data"`
}

func randBytes(t *testing.T, n int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func connect(t *testing.T, uri string, selTimeout time.Duration) *mongo.Client {
	t.Helper()
	opts := options.Client().ApplyURI(uri).SetServerSelectionTimeout(selTimeout)
	c, err := mongo.Connect(opts)
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	return c
}

func journaled() *options.CollectionOptionsBuilder {
	j := true
	return options.Collection().SetWriteConcern(&writeconcern.WriteConcern{W: 1, Journal: &j})
}

func readBlob(ctx context.Context, t *testing.T, coll *mongo.Collection, id string, want []byte) {
	t.Helper()
	var got blobDoc
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
		t.Fatalf("find %s: %v", id, err)
	}
	if !bytes.Equal(got.Data, want) {
		t.Fatalf("doc %s: got %d bytes, want %d bytes (content differs)", id, len(got.Data), len(want))
	}
}

func TestServerRoundTripAndRestart(t *testing.T) {
	dir := t.TempDir()

	t0 := time.Now()
	s, err := ferret.Start(dir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started %s in %v (dir %s)", s.URI(), time.Since(t0), s.Dir())
	addr := s.Addr()
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	client := connect(t, s.URI(), 5*time.Second)
	coll := client.Database("mongotest").Collection("blobs", journaled())

	big := randBytes(t, 15<<20, 1)
	small := randBytes(t, 64<<10, 2)

	t1 := time.Now()
	if _, err := coll.InsertOne(ctx, blobDoc{ID: "big", Data: big}); err != nil {
		t.Fatalf("insert 15 MiB: %v", err)
	}
	t.Logf("insert of one 15 MiB document (journaled): %v", time.Since(t1))

	if _, err := coll.InsertOne(ctx, blobDoc{ID: "small", Data: small}); err != nil {
		t.Fatalf("insert 64 KiB: %v", err)
	}

	t2 := time.Now()
	readBlob(ctx, t, coll, "big", big)
	t.Logf("read of the 15 MiB document: %v", time.Since(t2))
	readBlob(ctx, t, coll, "small", small)

	many := client.Database("mongotest").Collection("many", journaled())
	t3 := time.Now()
	for i := 0; i < 1000; i++ {
		if _, err := many.InsertOne(ctx, blobDoc{ID: fmt.Sprintf("k%04d", i), Data: small}); err != nil {
			t.Fatalf("insert %d of 1000: %v", i, err)
		}
	}
	el := time.Since(t3)
	t.Logf("1000 sequential inserts of 64 KiB (journaled): %v (%.0f inserts/s, %.1f MiB/s)",
		el, 1000/el.Seconds(), 1000*64.0/1024/el.Seconds())

	// Stop while the client still holds pooled connections: FerretDB gives
	// open connections a grace period before closing them.
	t4 := time.Now()
	s.Stop()
	stopped = true
	t.Logf("stop with a connected client: %v", time.Since(t4))
	_ = client.Disconnect(context.Background())

	// With the server down an insert must fail quickly.
	down := connect(t, "mongodb://"+addr+"/", 500*time.Millisecond)
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	t5 := time.Now()
	_, err = down.Database("mongotest").Collection("blobs", journaled()).
		InsertOne(dctx, blobDoc{ID: "after-stop", Data: small})
	dcancel()
	_ = down.Disconnect(context.Background())
	if err == nil {
		t.Fatal("insert succeeded after Stop")
	}
	t.Logf("insert after stop failed in %v: %v", time.Since(t5), err)

	// Restart on the same address and directory: data must be persisted.
	t6 := time.Now()
	s2, err := ferret.Start(dir, addr)
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	defer s2.Stop()
	if s2.Addr() != addr {
		t.Fatalf("restart bound %s, want %s", s2.Addr(), addr)
	}
	t.Logf("restarted in %v", time.Since(t6))

	client2 := connect(t, s2.URI(), 5*time.Second)
	defer func() { _ = client2.Disconnect(context.Background()) }()
	coll2 := client2.Database("mongotest").Collection("blobs")
	readBlob(ctx, t, coll2, "big", big)
	readBlob(ctx, t, coll2, "small", small)
	n, err := client2.Database("mongotest").Collection("many").CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1000 {
		t.Fatalf("many: %d documents after restart, want 1000", n)
	}
}

func TestStartBadAddr(t *testing.T) {
	s, err := ferret.Start(t.TempDir(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	// The port is taken: a second server on it must fail with an error.
	if s2, err := ferret.Start(t.TempDir(), s.Addr()); err == nil {
		s2.Stop()
		t.Fatalf("second Start on busy %s succeeded", s.Addr())
	} else {
		t.Logf("busy port: %v", err)
	}
	t0 := time.Now()
	s.Stop()
	stopped = true
	t.Logf("stop without connected clients: %v", time.Since(t0))
}
