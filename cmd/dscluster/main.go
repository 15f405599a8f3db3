// Command dscluster runs a go-ds-cluster storage node.
//
//	dscluster --conf=DIR                                   # config in DIR
//	dscluster --conf=DIR --bootstrapper=ADDR --identity=I  # fetch it first
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	logging "github.com/ipfs/go-log/v2"

	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/node"
)

var log = logging.Logger("dscluster")

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dscluster:", err)
		os.Exit(1)
	}
}

func run() error {
	conf := flag.String("conf", ".dscluster", "config and data directory of this node")
	boot := flag.String("bootstrapper", "", "multiaddr of the bootstrapper node; used to fetch this node's config when DIR has none")
	identity := flag.Int("identity", -1, "which of the bootstrap config's node identities this node takes (with --bootstrapper)")
	data := flag.String("data", "", "data directory for shards and index (default: DIR)")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "Usage: dscluster --conf=DIR [--bootstrapper=MULTIADDR --identity=I]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if err := logging.SetLogLevel("*", *logLevel); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	// flatfs logs a harmless error at close when its usage file is late.
	_ = logging.SetLogLevel("flatfs", "fatal")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	path := filepath.Join(*conf, config.FileName)
	cfg, err := config.LoadNode(path)
	if errors.Is(err, config.ErrNoConfig) && *boot != "" {
		cfg, err = fetchConfig(ctx, *conf, *boot, *identity, path)
	} else if errors.Is(err, config.ErrNoConfig) {
		return fmt.Errorf("%w; generate one with `dscfg cluster`, or pass --bootstrapper and --identity to fetch it", err)
	}
	if err != nil {
		return err
	}
	dataDir := *data
	if dataDir == "" {
		dataDir = *conf
	}
	n, err := node.Start(ctx, node.Options{Dir: dataDir, Config: cfg})
	if err != nil {
		return err
	}
	for _, a := range n.Addrs() {
		log.Infof("listening on %s/p2p/%s", a, n.ID())
	}
	log.Infow("dscluster ready", "identity", cfg.Identity, "peer", n.ID().String(), "cluster", cfg.Cluster.ID)
	<-ctx.Done()
	log.Infow("shutting down")
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	case <-time.After(30 * time.Second):
		return errors.New("shutdown: timed out after 30s")
	}
	log.Infow("stopped")
	return nil
}

func fetchConfig(ctx context.Context, dir, boot string, identity int, path string) (*config.Node, error) {
	if identity < 0 {
		return nil, errors.New("--bootstrapper needs --identity=I: which node of the bootstrap config this is")
	}
	secret, err := config.FindSecret(dir)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg, err := node.FetchNodeConfig(fctx, boot, identity, secret)
	if err != nil {
		return nil, fmt.Errorf("fetch config for identity %d: %w", identity, err)
	}
	if err := config.Save(path, cfg); err != nil {
		return nil, err
	}
	log.Infow("fetched config from the bootstrapper", "identity", identity, "path", path)
	return cfg, nil
}
