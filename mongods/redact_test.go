package mongods

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"mongodb://localhost:27017", "mongodb://localhost:27017"},
		{"mongodb://u:secret@h1:1,h2:2/db?authSource=admin", "mongodb://***@h1:1,h2:2/db?authSource=admin"},
		{"mongodb+srv://user:p%40ss@cluster0.example.net/", "mongodb+srv://***@cluster0.example.net/"},
		{"mongodb://h/db?x=a@b", "mongodb://h/db?x=a@b"},
		{"not a uri:secret@", "(a MongoDB URI)"},
	} {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// An unreachable database fails Open with an error that names the store
// and never the URI's password.
func TestOpenUnreachable(t *testing.T) {
	uri := "mongodb://admin:hunter2@127.0.0.1:1/shards"
	_, err := Open(context.Background(), uri, Options{Collection: "c", Timeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "mongodb shard store mongodb://***@127.0.0.1:1/shards") {
		t.Fatalf("error %q: want the store named without its password", err)
	}
	if _, err := Open(context.Background(), "mongodb://127.0.0.1:1", Options{Collection: "c"}); err == nil || !strings.Contains(err.Error(), "names no database") {
		t.Fatalf("Open without a database: %v", err)
	}
	if _, err := Open(context.Background(), "http://x", Options{Collection: "c"}); err == nil || errors.Unwrap(err) == nil {
		t.Fatalf("Open of a URI of another scheme: %v", err)
	}
}
