package mongods

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
)

// The store is named by scheme, hosts and database: never a password,
// wherever the URI hides it, nor the URI's options.
func TestStoreNameHasNoCredentials(t *testing.T) {
	for _, c := range []struct{ uri, want string }{
		{"mongodb://127.0.0.1:1/shards", "mongodb://127.0.0.1:1/shards"},
		{"mongodb://u:hunter2@127.0.0.1:1,127.0.0.1:2/shards?authSource=admin", "mongodb://127.0.0.1:1,127.0.0.1:2/shards"},
		{"mongodb://u:hun?ter2@127.0.0.1:1/shards", "mongodb://127.0.0.1:1/shards"},
		{"mongodb://127.0.0.1:1/shards?tlsCertificateKeyFilePassword=hunter2", "mongodb://127.0.0.1:1/shards"},
	} {
		d, err := Open(context.Background(), c.uri, Options{Collection: "c", Timeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatalf("Open(%q): %v", c.uri, err)
		}
		// The database is not there: the store starts down, and says why.
		if err := d.Err(); err == nil || !strings.Contains(err.Error(), "mongodb shard store "+c.want+" (database shards, collection c)") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Err of %q: %v; want the store named %s and no password", c.uri, err, c.want)
		}
		err = d.Put(context.Background(), ds.NewKey("/k"), []byte("v"))
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("put to %q: %v; want a refusal without the password", c.uri, err)
		}
		d.Close()
	}
	for _, uri := range []string{"mongodb://u:pa/ss@h/db", "http://u:hunter2@x"} {
		_, err := Open(context.Background(), uri, Options{Collection: "c"})
		if err == nil || strings.Contains(err.Error(), "pa/ss") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q): %v; want an error that does not quote the URI", uri, err)
		}
	}
	if _, err := Open(context.Background(), "mongodb://127.0.0.1:1", Options{Collection: "c"}); err == nil || !strings.Contains(err.Error(), "names no database") {
		t.Fatalf("Open without a database: %v", err)
	}
}

// Only a ping takes the store down: an operation's failure, even one that
// looks like a lost connection, has it ping now; a caller's cancellation
// does not.
func TestOperationFailureNudgesPing(t *testing.T) {
	d := &Datastore{nudge: make(chan struct{}, 1), where: "test"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = d.fail(ctx, "get", context.DeadlineExceeded)
	_ = d.fail(context.Background(), "put", errors.New("E11000 duplicate key"))
	select {
	case <-d.nudge:
		t.Fatal("a cancelled call or a duplicate key asked for a ping")
	default:
	}
	err := d.fail(context.Background(), "get", context.DeadlineExceeded)
	if !strings.Contains(err.Error(), "mongodb shard store test: get: ") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fail: %v", err)
	}
	select {
	case <-d.nudge:
	default:
		t.Fatal("a timeout did not ask for a ping")
	}
	if d.Err() != nil {
		t.Fatal("an operation's failure set Err")
	}
}
