package ipfsplugin

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	kuboconfig "github.com/ipfs/kubo/config"
)

// ClientConfigFile is the client config the clusterds profile names,
// relative to the repo root.
const ClientConfigFile = "clusterds.json"

// Spec is the datastore spec of the clusterds profile: the cluster at
// /blocks, leveldb for everything else (the seed README's layout).
func Spec() map[string]any {
	return map[string]any{
		"type": "mount",
		"mounts": []any{
			map[string]any{
				"mountpoint": "/blocks",
				"type":       "measure",
				"prefix":     "clusterds.datastore",
				"child":      map[string]any{"type": TypeName, "cfg": ClientConfigFile},
			},
			map[string]any{
				"mountpoint": "/",
				"type":       "measure",
				"prefix":     "leveldb.datastore",
				"child":      map[string]any{"type": "levelds", "path": "datastore", "compression": "none"},
			},
		},
	}
}

// Profile is the "clusterds" init profile.
var Profile = kuboconfig.Profile{
	Description: `Stores blocks in a go-ds-cluster named by $IPFS_PATH/clusterds.json (write it with "dscfg client" before "ipfs init").`,
	InitOnly:    true,
	Transform: func(c *kuboconfig.Config) error {
		if err := clientConfigPresent(); err != nil {
			return err
		}
		c.Datastore.Spec = Spec()
		return nil
	},
}

// clientConfigPresent refuses the profile before ipfs init writes
// anything when the repo holds no client config: init would otherwise
// write the repo's config, fail to open the datastore, and leave a repo
// that a second init refuses. The repo is $IPFS_PATH (or kubo's default);
// with --repo-dir, which the profile cannot see, the datastore's own
// error says the same when it opens.
func clientConfigPresent() error {
	for _, a := range os.Args {
		if strings.HasPrefix(a, "--repo-dir") {
			return nil
		}
	}
	root, err := kuboconfig.PathRoot()
	if err != nil {
		return nil
	}
	p := filepath.Join(root, ClientConfigFile)
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("clusterds profile: %s: %w; write it first with `dscfg client --cluster=BOOTSTRAP-DIR %s` (or copy a client config there), then run ipfs init again", p, err, p)
	}
	return nil
}
