// Package testpeer gives tests stable libp2p peer IDs.
package testpeer

import (
	"bytes"
	"crypto/sha256"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ID returns the peer ID of the Ed25519 key derived from seed: the same
// seed always gives the same ID.
func ID(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	key, _, err := crypto.GenerateEd25519Key(bytes.NewReader(sum[:]))
	if err != nil {
		panic(err) // cannot happen: the reader holds 32 bytes
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		panic(err)
	}
	return id.String()
}
