package dscluster

import (
	"context"
	"errors"
	"fmt"

	ds "github.com/ipfs/go-datastore"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/transport"
)

// Put stores value under key. It returns once the write quorum of shards is
// durable; see the package doc.
func (d *Datastore) Put(ctx context.Context, key ds.Key, value []byte) (err error) {
	defer d.track("put")(&err)
	w, err := d.putWrite(d.inner(key), value)
	if err != nil {
		return err
	}
	d.writeAll(ctx, []*write{w})
	return w.err
}

// putWrite checks a put of value under key and returns its write.
func (d *Datastore) putWrite(key string, value []byte) (*write, error) {
	if len(key) > coding.MaxKeyLen {
		return nil, fmt.Errorf("put %.64s…: %w (%d bytes, limit %d)", key, ErrKeyTooLong, len(key), coding.MaxKeyLen)
	}
	if len(value) > MaxValueSize {
		return nil, fmt.Errorf("put %s: %w (%d bytes, limit %d)", key, ErrValueTooLarge, len(value), MaxValueSize)
	}
	return &write{op: "put", key: key, encode: func(v *view, ver coding.Version) ([]*coding.Shard, error) {
		return coding.Encode(key, value, v.policyFor(len(value)), ver)
	}}, nil
}

// absentEverywhere reports whether every position of key's slot either
// answers within HedgeAfter that it holds no entry of key or was surely
// not reached (down, or its dial failed). The positions Get judges absence
// by may have lost their shards while others hold the value, which repair
// would bring back after a delete that wrote nothing; so a position that
// holds an entry, is marked slow, or was reached and did not answer in
// time, makes the delete write its tombstone.
func (d *Datastore) absentEverywhere(ctx context.Context, key string) bool {
	v := d.view.Load()
	owners := v.owners(key)
	ctx, cancel := context.WithTimeout(ctx, d.opts.HedgeAfter)
	defer cancel()
	ans := askAll(v.c.Policy.Width(), func(pos int) headerAnswer {
		if d.client.Slow(v.peers[owners[pos]]) {
			return headerAnswer{state: fetchFailed, err: errSlow}
		}
		return d.askHeaderOf(transport.SkipUnreachable(ctx), v, key, owners, pos)
	})
	for _, a := range ans {
		notReached := errors.Is(a.err, errDown) || errors.Is(a.err, transport.ErrUnreachable) || errors.Is(a.err, transport.ErrDialFailed)
		if a.state != fetchNotFound && !(a.state == fetchFailed && notReached) {
			return false
		}
	}
	return true
}

// Delete removes key by writing a tombstone version to every shard position.
// Deleting a missing key is not an error. A key whose newest entry is a
// tombstone is deleted again: that may be a failed delete's, and this one
// must be durable once acknowledged. A key Get would find absent still gets
// a tombstone when a position holds an entry of it (absentEverywhere).
func (d *Datastore) Delete(ctx context.Context, key ds.Key) (err error) {
	defer d.track("delete")(&err)
	k := d.inner(key)
	if len(k) > coding.MaxKeyLen {
		return nil // such a key cannot have been stored
	}
	le, found, err := d.probe(ctx, k, false) // its own tombstone is newer
	var ue *UnavailableError
	switch {
	case errors.As(err, &ue) && ue.Found > 0:
		// Shards of failed writes, none readable: the tombstone hides them.
	case err != nil:
		return opError("delete", k, err)
	case !found && !le.Tombstone && d.absentEverywhere(ctx, k):
		return nil // no entry: nothing was ever acknowledged under key
	}
	w := &write{op: "delete", key: k, encode: func(v *view, ver coding.Version) ([]*coding.Shard, error) {
		return coding.Tombstone(k, v.c.Policy, ver), nil
	}}
	d.writeAll(ctx, []*write{w})
	return w.err
}
