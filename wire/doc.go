// Package wire defines the versioned request/response protocol spoken between
// a front end and a dscluster node over a libp2p stream.
//
// # Framing
//
// Every message is a frame: a 4-byte big-endian body length followed by the
// body. The body starts with the protocol version (Version) and the message
// type. A frame whose length exceeds MaxFrame, whose version is unknown, or
// whose fields are truncated is rejected with an error wrapping ErrMalformed;
// decoders never panic on any input.
//
// A stream carries any number of request/response pairs, one at a time: the
// client writes one request frame and reads exactly one response frame before
// sending the next. Streams are therefore reusable and pooled per peer.
//
// # Retry rule
//
// Every response carries a Status. The rule for retrying a request is:
//
//   - StatusOK, StatusNotFound: final.
//   - StatusStaleEpoch: the node did nothing; refresh the cluster map and retry.
//   - StatusBadRequest, StatusTooLarge, StatusUnauthorized: the node did
//     nothing; retrying the same request gives the same answer.
//   - StatusUnavailable: the node did nothing and cannot now (a membership
//     request while raft elects a leader); retry the same request shortly.
//   - StatusCorrupt: the node's copy is unreadable; read elsewhere.
//   - StatusInternal or a broken stream: the node may or may not have applied
//     the request. Shard writes are idempotent (a node refuses a version
//     older than its newest, and a shard it holds already is a no-op), so
//     retrying a Put is always safe.
//
// Slices in decoded messages alias the frame buffer they were decoded from.
package wire
