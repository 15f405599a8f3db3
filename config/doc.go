// Package config holds the on-disk configuration of dscluster nodes and
// clients: the JSON files written by dscfg and dsclient init, the cluster
// secret (a libp2p private-network key), and node identities.
//
// Load functions return errors that name the file and the parse error, so a
// user can fix a config by hand. Configs are validated on load.
package config
