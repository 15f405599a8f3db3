// Package transport builds the libp2p hosts that dscluster nodes and front
// ends use, and a request client that pools streams per peer.
//
// Every host runs TCP only (libp2p private networks exclude QUIC), TLS 1.3
// for transport security (faster than Noise on this hardware, see
// PERF-LIMITS.md), yamux for streams, and the cluster secret as a libp2p
// private network key: a peer without the secret cannot complete a
// connection at all.
//
// Client is safe for concurrent use. A stream carries one request at a time
// and goes back to the peer's idle pool after a clean response; any error
// resets it.
package transport
