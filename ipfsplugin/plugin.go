// Package ipfsplugin is the kubo datastore plugin of type "clusterds": it
// mounts a go-ds-cluster as a kubo datastore (normally at /blocks).
//
// The datastore spec names a client config file, written by
// `dscfg client clusterds.json`; a relative path is taken from the repo
// root:
//
//	{"type": "clusterds", "cfg": "clusterds.json"}
//
// Opening the datastore connects to the cluster and fails, with the reason,
// when the config is missing or no node answers: kubo must not start
// against a cluster it cannot reach.
//
// It lives in its own Go module so that kubo's large dependency tree stays
// out of the core packages' build.
package ipfsplugin

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ipfs/kubo/plugin"
	"github.com/ipfs/kubo/repo"
	"github.com/ipfs/kubo/repo/fsrepo"
	"github.com/prometheus/client_golang/prometheus"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/config"
)

// Plugins is the list kubo's plugin loader reads (the seed README's
// preload_list line names this package).
var Plugins = []plugin.Plugin{&Plugin{}}

// TypeName is the datastore type in kubo's Datastore.Spec.
const TypeName = "clusterds"

// OpenTimeout bounds connecting to the cluster when kubo opens the repo.
var OpenTimeout = 30 * time.Second

// Plugin is the clusterds datastore plugin.
type Plugin struct{}

var _ plugin.PluginDatastore = (*Plugin)(nil)

// Name implements plugin.Plugin.
func (*Plugin) Name() string { return "ds-clusterds" }

// Version implements plugin.Plugin.
func (*Plugin) Version() string { return "0.1.0" }

// Init implements plugin.Plugin.
func (*Plugin) Init(*plugin.Environment) error { return nil }

// DatastoreTypeName implements plugin.PluginDatastore.
func (*Plugin) DatastoreTypeName() string { return TypeName }

// DatastoreConfigParser implements plugin.PluginDatastore.
func (*Plugin) DatastoreConfigParser() fsrepo.ConfigFromMap {
	return func(params map[string]any) (fsrepo.DatastoreConfig, error) {
		cfg, ok := params["cfg"].(string)
		if !ok || cfg == "" {
			return nil, errors.New(`clusterds: the datastore spec needs "cfg": the path of the client config (dscfg client clusterds.json)`)
		}
		return &datastoreConfig{cfg: cfg}, nil
	}
}

type datastoreConfig struct {
	cfg string
}

// DiskSpec holds only what identifies the datastore: kubo compares it with
// the repo's datastore_spec file as an exact string.
func (c *datastoreConfig) DiskSpec() fsrepo.DiskSpec {
	return map[string]any{"type": TypeName, "cfg": c.cfg}
}

// Create connects to the cluster the client config describes.
func (c *datastoreConfig) Create(repoPath string) (repo.Datastore, error) {
	p := c.cfg
	if !filepath.IsAbs(p) {
		p = filepath.Join(repoPath, p)
	}
	cc, err := config.LoadClient(p)
	if err != nil {
		return nil, fmt.Errorf("clusterds: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), OpenTimeout)
	defer cancel()
	// kubo serves the default registry at /debug/metrics/prometheus.
	d, err := dscluster.Open(ctx, cc, &dscluster.Options{Metrics: prometheus.DefaultRegisterer})
	if err != nil {
		return nil, fmt.Errorf("clusterds: %s: %w", p, err)
	}
	return d, nil
}
