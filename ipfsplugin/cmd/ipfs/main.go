// Command ipfs is kubo with the clusterds datastore plugin preloaded and a
// "clusterds" init profile:
//
//	ipfs init --profile clusterds
//
// mounts the cluster named by $IPFS_PATH/clusterds.json at /blocks and
// leveldb at /, as the go-ds-cluster README's plugin section shows.
package main

import (
	"os"

	"github.com/ipfs/kubo/cmd/ipfs/kubo"
	kuboconfig "github.com/ipfs/kubo/config"
	"github.com/ipfs/kubo/plugin/loader"

	"github.com/filedrive-team/go-ds-cluster/ipfsplugin"
)

func main() {
	kuboconfig.Profiles["clusterds"] = ipfsplugin.Profile
	os.Exit(kubo.Start(kubo.BuildEnv(func(l *loader.PluginLoader) error {
		for _, p := range ipfsplugin.Plugins {
			if err := l.Load(p); err != nil {
				return err
			}
		}
		return nil
	})))
}
