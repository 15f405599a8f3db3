// Package e2e holds process-level end-to-end tests of go-ds-cluster: they
// build the real dscfg, dscluster and dsclient binaries, run the seed
// README's "Getting Started" on loopback, kill nodes with SIGKILL and compare
// the bytes read back. The package has no non-test code; the tests are
// skipped under `go test -short`.
package e2e
