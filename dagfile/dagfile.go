// Package dagfile stores files in a go-datastore as UnixFS DAGs, the way
// kubo's `ipfs add` does, and reads them back by CID.
//
// Blocks are stored under kubo's block keys ("/CIQ…", the base32 of the
// multihash) without the "/blocks" prefix, which is how kubo's /blocks
// mount addresses the datastore: a file added here can be read by a kubo
// daemon using the clusterds plugin, and the other way round.
package dagfile

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
)

// AddOptions mirror `ipfs add` flags. The zero value is kubo's default:
// CIDv0, 256 KiB fixed-size chunks, balanced layout, 174 links per node.
type AddOptions struct {
	CidVersion int    // 0 or 1
	RawLeaves  *bool  // default: false for CIDv0, true for CIDv1 (as kubo)
	Chunker    string // default "size-262144"
}

// DAGService returns a DAG service over d with kubo's block keys.
func DAGService(d ds.Batching) ipld.DAGService {
	bs := blockstore.NewBlockstore(d, blockstore.NoPrefix())
	return merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
}

// Add imports r as a UnixFS file into d and returns the root CID.
func Add(ctx context.Context, d ds.Batching, r io.Reader, opts AddOptions) (cid.Cid, error) {
	dserv := DAGService(d)
	return AddTo(ctx, dserv, r, opts)
}

// AddTo imports r into dserv; see Add.
func AddTo(ctx context.Context, dserv ipld.DAGService, r io.Reader, opts AddOptions) (cid.Cid, error) {
	chunk := opts.Chunker
	if chunk == "" {
		chunk = "size-262144"
	}
	spl, err := chunker.FromString(r, chunk)
	if err != nil {
		return cid.Undef, fmt.Errorf("chunker %q: %w", chunk, err)
	}
	var prefix cid.Prefix
	raw := false
	switch opts.CidVersion {
	case 0:
		prefix = merkledag.V0CidPrefix()
	case 1:
		prefix = merkledag.V1CidPrefix()
		raw = true
	default:
		return cid.Undef, fmt.Errorf("cid version %d: want 0 or 1", opts.CidVersion)
	}
	if opts.RawLeaves != nil {
		raw = *opts.RawLeaves
	}
	// Batch the blocks so they are written in parallel.
	batch := ipld.NewBufferedDAG(ctx, dserv, ipld.MaxNodesBatchOption(64))
	params := helpers.DagBuilderParams{
		Maxlinks:   helpers.DefaultLinksPerBlock,
		RawLeaves:  raw,
		CidBuilder: prefix,
		Dagserv:    batch,
	}
	db, err := params.New(spl)
	if err != nil {
		return cid.Undef, err
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		return cid.Undef, fmt.Errorf("import: %w", err)
	}
	if err := batch.Commit(); err != nil {
		return cid.Undef, fmt.Errorf("store blocks: %w", err)
	}
	return nd.Cid(), nil
}

// Cat writes the file with root c to w.
func Cat(ctx context.Context, d ds.Batching, c cid.Cid, w io.Writer) (int64, error) {
	// boxo's readers replace a datastore error with a generic one; keep the
	// first real cause so the user learns why a block could not be read.
	rec := &errRecorder{Batching: d}
	dserv := DAGService(rec)
	nd, err := dserv.Get(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", c, rec.cause(err))
	}
	r, err := uio.NewDagReader(ctx, nd, dserv)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", c, rec.cause(err))
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return n, fmt.Errorf("read %s: %w", c, rec.cause(err))
	}
	return n, nil
}

type errRecorder struct {
	ds.Batching
	mu    sync.Mutex
	first error
}

func (r *errRecorder) Get(ctx context.Context, k ds.Key) ([]byte, error) {
	v, err := r.Batching.Get(ctx, k)
	if err != nil {
		r.mu.Lock()
		if r.first == nil {
			r.first = err
		}
		r.mu.Unlock()
	}
	return v, err
}

func (r *errRecorder) cause(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first != nil {
		return r.first
	}
	return err
}
