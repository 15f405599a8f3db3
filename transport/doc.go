// Package transport builds the libp2p hosts that dscluster nodes and front
// ends use, and a request client that pools streams per peer.
//
// Every host runs TCP, TLS 1.3 for transport security (faster than Noise on
// this hardware, see PERF-LIMITS.md) under a protocol ID of our own
// (GateID), and yamux for streams. The cluster secret is checked once per
// connection, in the handshake (gate.go): each side proves it holds the
// secret with an HMAC bound to the TLS session and both peer IDs, and a
// peer that does not is disconnected before any stream runs. Nothing is
// encrypted twice (a libp2p private network, which this replaces, ran a
// second cipher under TLS over every byte).
//
// Client is safe for concurrent use. A stream carries one request at a time
// and goes back to the peer's idle pool after a clean response; any error
// resets it.
package transport
