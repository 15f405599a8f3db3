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
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
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

// DAGService returns a DAG service over d with kubo's block keys. As in
// kubo, blocks of identity CIDs (whose multihash is the data itself, such
// as bafkqaaa, the empty file) are read from the CID and never stored.
func DAGService(d ds.Batching) ipld.DAGService {
	bs := blockstore.NewIdStore(blockstore.NewBlockstore(d, blockstore.NoPrefix()))
	return merkledag.NewDAGService(blockservice.New(bs, offline.Exchange(bs)))
}

// Add imports r as a UnixFS file into d and returns the root CID.
func Add(ctx context.Context, d ds.Batching, r io.Reader, opts AddOptions) (cid.Cid, error) {
	dserv := DAGService(d)
	return AddTo(ctx, dserv, r, opts)
}

// AddTo imports r into dserv; see Add.
func AddTo(ctx context.Context, dserv ipld.DAGService, r io.Reader, opts AddOptions) (cid.Cid, error) {
	// Batch the blocks so they are written in parallel.
	batch := ipld.NewBufferedDAG(ctx, dserv, ipld.MaxNodesBatchOption(64))
	nd, err := layout(batch, r, opts)
	if err != nil {
		return cid.Undef, err
	}
	if err := batch.Commit(); err != nil {
		return cid.Undef, fmt.Errorf("store blocks: %w", err)
	}
	return nd.Cid(), nil
}

// cidPrefix returns the CID prefix and raw-leaves setting of opts.
func cidPrefix(opts AddOptions) (cid.Prefix, bool, error) {
	var prefix cid.Prefix
	raw := false
	switch opts.CidVersion {
	case 0:
		prefix = merkledag.V0CidPrefix()
	case 1:
		prefix = merkledag.V1CidPrefix()
		raw = true
	default:
		return prefix, false, fmt.Errorf("cid version %d: want 0 or 1", opts.CidVersion)
	}
	if opts.RawLeaves != nil {
		raw = *opts.RawLeaves
	}
	return prefix, raw, nil
}

// layout chunks r and builds a balanced UnixFS file DAG in dserv.
func layout(dserv ipld.DAGService, r io.Reader, opts AddOptions) (ipld.Node, error) {
	chunk := opts.Chunker
	if chunk == "" {
		chunk = "size-262144"
	}
	spl, err := chunker.FromString(r, chunk)
	if err != nil {
		return nil, fmt.Errorf("chunker %q: %w", chunk, err)
	}
	prefix, raw, err := cidPrefix(opts)
	if err != nil {
		return nil, err
	}
	params := helpers.DagBuilderParams{
		Maxlinks:   helpers.DefaultLinksPerBlock,
		RawLeaves:  raw,
		CidBuilder: prefix,
		Dagserv:    dserv,
	}
	db, err := params.New(spl)
	if err != nil {
		return nil, err
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return nd, nil
}

// AddSymlink imports the symbolic link at path as a UnixFS symlink node
// holding its target, as `ipfs add` does (the link is not followed).
func AddSymlink(ctx context.Context, d ds.Batching, path string, opts AddOptions) (cid.Cid, error) {
	nd, err := addSymlink(ctx, DAGService(d), path, opts)
	if err != nil {
		return cid.Undef, err
	}
	return nd.Cid(), nil
}

func addSymlink(ctx context.Context, dserv ipld.DAGService, path string, opts AddOptions) (ipld.Node, error) {
	target, err := os.Readlink(path)
	if err != nil {
		return nil, err
	}
	data, err := unixfs.SymlinkData(target)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	prefix, _, err := cidPrefix(opts)
	if err != nil {
		return nil, err
	}
	nd := merkledag.NodeWithData(data)
	if err := nd.SetCidBuilder(prefix); err != nil {
		return nil, err
	}
	if err := dserv.Add(ctx, nd); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nd, nil
}

// AddDir imports the folder at path recursively, as `ipfs add -r` does with
// its defaults: files as in Add, folders as UnixFS directories (HAMT-sharded
// past boxo's threshold, as kubo), symlinks as in AddSymlink, hidden
// entries (names starting with a dot) skipped. Any other kind of file (a
// FIFO, a socket, a device) is refused, as kubo refuses it: reading a FIFO
// would wait forever. It returns the root folder's CID.
func AddDir(ctx context.Context, d ds.Batching, path string, opts AddOptions) (cid.Cid, error) {
	dserv := DAGService(d)
	batch := ipld.NewBufferedDAG(ctx, dserv, ipld.MaxNodesBatchOption(64))
	nd, err := addDir(ctx, batch, path, opts)
	if err != nil {
		return cid.Undef, err
	}
	if err := batch.Commit(); err != nil {
		return cid.Undef, fmt.Errorf("store blocks: %w", err)
	}
	return nd.Cid(), nil
}

func addDir(ctx context.Context, dserv ipld.DAGService, path string, opts AddOptions) (ipld.Node, error) {
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	dir, err := uio.NewDirectory(dserv)
	if err != nil {
		return nil, err
	}
	prefix, _, err := cidPrefix(opts)
	if err != nil {
		return nil, err
	}
	dir.SetCidBuilder(prefix)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		child := filepath.Join(path, name)
		var nd ipld.Node
		switch t := e.Type(); {
		case t.IsDir():
			nd, err = addDir(ctx, dserv, child, opts)
		case t&fs.ModeSymlink != 0:
			nd, err = addSymlink(ctx, dserv, child, opts)
		case t.IsRegular():
			nd, err = addFile(ctx, dserv, child, opts)
		default:
			err = fmt.Errorf("unrecognized file type for %s: %s", child, t)
		}
		if err != nil {
			return nil, err
		}
		if err := dir.AddChild(ctx, name, nd); err != nil {
			return nil, fmt.Errorf("%s: %w", child, err)
		}
	}
	nd, err := dir.GetNode()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := dserv.Add(ctx, nd); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nd, nil
}

func addFile(ctx context.Context, dserv ipld.DAGService, path string, opts AddOptions) (ipld.Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	nd, err := layout(dserv, f, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nd, nil
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
