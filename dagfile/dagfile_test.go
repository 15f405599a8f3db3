package dagfile_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/filedrive-team/go-ds-cluster/clustertest"
	"github.com/filedrive-team/go-ds-cluster/dagfile"
)

// TestKnownCIDs pins CIDs that kubo's `ipfs add` gives for well-known
// inputs, with its defaults (CIDv0, 256 KiB chunks, no raw leaves).
func TestKnownCIDs(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ in, want string }{
		{"", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"},
		{"hello world\n", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"},
	} {
		d := dssync.MutexWrap(ds.NewMapDatastore())
		c, err := dagfile.Add(ctx, d, strings.NewReader(tc.in), dagfile.AddOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c.String() != tc.want {
			t.Errorf("add %q: CID %s, kubo gives %s", tc.in, c, tc.want)
		}
		// kubo's /blocks mount sees keys without the /blocks prefix.
		keys, err := d.Query(ctx, queryAll)
		if err != nil {
			t.Fatal(err)
		}
		for r := range keys.Next() {
			if strings.HasPrefix(r.Key, "/blocks") || !strings.HasPrefix(r.Key, "/CIQ") {
				t.Errorf("block key %q, want kubo's /CIQ… form", r.Key)
			}
		}
	}
}

// TestRoundTripThroughCluster stores a multi-block file in a 6-node cluster
// and reads it back, with two nodes stopped.
func TestRoundTripThroughCluster(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, clustertest.Options{})
	d := c.Client(nil)
	data := make([]byte, 3<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, opts := range []dagfile.AddOptions{{}, {CidVersion: 1}} {
		root, err := dagfile.Add(ctx, d, bytes.NewReader(data), opts)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := dagfile.Cat(ctx, d, root, &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("cat %s: %d bytes differ from the %d added", root, out.Len(), len(data))
		}
	}
	root, err := dagfile.Add(ctx, d, bytes.NewReader(data), dagfile.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	c.Stop(3)
	var out bytes.Buffer
	if _, err := dagfile.Cat(ctx, d, root, &out); err != nil {
		t.Fatalf("cat with 2 nodes stopped: %v", err)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatal("cat with 2 nodes stopped: bytes differ")
	}
}

var queryAll = dsq.Query{KeysOnly: true}

// TestAddDirRefusesSpecialFiles: a FIFO in a folder is refused, as kubo
// refuses it; AddDir used to open it and wait forever for a writer.
func TestAddDirRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := dagfile.AddDir(ctx, dssync.MutexWrap(ds.NewMapDatastore()), dir, dagfile.AddOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unrecognized file type") {
			t.Fatalf("add of a folder with a FIFO: %v; want unrecognized file type", err)
		}
	case <-ctx.Done():
		t.Fatal("add of a folder with a FIFO still running after 10 s")
	}
}

// TestCatIdentityCID: an identity CID holds its block in the CID, as kubo
// reads it: bafkqaaa is the empty raw block, and an inlined "hello" is
// read back without the datastore holding anything. Cat used to look the
// block up and say "key not found".
func TestCatIdentityCID(t *testing.T) {
	ctx := context.Background()
	empty := dssync.MutexWrap(ds.NewMapDatastore())
	// Multihash code 0x00 is the identity hash.
	hello, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: 0x00, MhLength: -1}.Sum([]byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cid, want string }{
		{"bafkqaaa", ""},
		{hello.String(), "hello"},
	} {
		c, err := cid.Decode(tc.cid)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if n, err := dagfile.Cat(ctx, empty, c, &out); err != nil || out.String() != tc.want || n != int64(len(tc.want)) {
			t.Fatalf("cat %s: %q (%d bytes), %v; want %q", tc.cid, out.String(), n, err, tc.want)
		}
	}
}
