package ipfsplugin

import (
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
		c.Datastore.Spec = Spec()
		return nil
	},
}
