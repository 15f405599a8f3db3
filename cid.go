package dscluster

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ipfs/boxo/datastore/dshelp"
	ds "github.com/ipfs/go-datastore"
	"github.com/multiformats/go-multihash"
)

// ErrCIDMismatch is returned by Get (unless Options.SkipCIDCheck) for a value
// that does not hash to the multihash its key names: bytes a faulty or
// hostile writer stored under a block's key. They are never served.
var ErrCIDMismatch = errors.New("dscluster: the value does not hash to the multihash its key names")

// checkCID verifies val against the multihash that key names, when key is
// a block key (as kubo's blockstore writes them: the base32 of a
// multihash) of a hash function this build knows. Other keys pass.
func checkCID(key ds.Key, val []byte) error {
	want, err := dshelp.DsKeyToMultihash(key)
	if err != nil {
		return nil // not a block key
	}
	dec, err := multihash.Decode(want)
	if err != nil {
		return nil
	}
	got, err := multihash.Sum(val, dec.Code, dec.Length)
	if err != nil {
		return nil // a hash function this build does not have
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("get %s: %w (%s of the %d bytes read is %x)", key, ErrCIDMismatch, dec.Name, len(val), got)
	}
	return nil
}
