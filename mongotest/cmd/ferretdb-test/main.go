// Command ferretdb-test runs an embedded FerretDB (SQLite backend) as a
// stand-in for mongod in process-level tests and benchmarks.
//
//	ferretdb-test --dir /tmp/ferret --listen 127.0.0.1:27017
//
// It prints "ferretdb listening on mongodb://ADDR/" once the server accepts
// connections and stops cleanly on SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/filedrive-team/go-ds-cluster/mongotest/ferret"
)

func main() {
	dir := flag.String("dir", "", "data directory for the SQLite databases (required; created if missing)")
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (port 0 picks a free port)")
	flag.Parse()

	if *dir == "" {
		fmt.Fprintln(os.Stderr, "ferretdb-test: --dir is required")
		os.Exit(2)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	s, err := ferret.Start(*dir, *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb-test:", err)
		os.Exit(1)
	}
	fmt.Printf("ferretdb listening on %s\n", s.URI())

	<-sigs
	s.Stop()
}
