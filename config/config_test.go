package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// validNode returns a valid node config of a 6-node 4+2 cluster.
func validNode(t *testing.T) *Node {
	t.Helper()
	var nodes []placement.Node
	var keys []string
	for i := range 6 {
		_, enc, err := NewPrivKey()
		if err != nil {
			t.Fatal(err)
		}
		sk, err := DecodePrivKey(enc)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := peer.IDFromPrivateKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		id := pid.String()
		keys = append(keys, enc)
		nodes = append(nodes, placement.Node{ID: id, Addrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", DefaultBasePort+i)}})
	}
	m, err := placement.Assign(nil, nodes, 6)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{
		Version: FormatVersion, Identity: 0, PrivKey: keys[0], Listen: nodes[0].Addrs,
		Secret: NewSecret(), Store: "flatfs",
		Cluster: Cluster{ID: "test", Policy: coding.Erasure(4, 2), SmallThreshold: DefaultSmallThreshold, Map: m},
	}
	if err := n.Validate(); err != nil {
		t.Fatalf("the sample config is invalid: %v", err)
	}
	return n
}

func validClient(t *testing.T) *Client {
	n := validNode(t)
	var nodes []string
	for _, pn := range n.Cluster.Map.Nodes {
		nodes = append(nodes, pn.Addrs[0]+"/p2p/"+pn.ID)
	}
	c := &Client{Version: FormatVersion, ClusterID: n.Cluster.ID, Secret: n.Secret, Nodes: nodes, Timeout: "10s"}
	if err := c.Validate(); err != nil {
		t.Fatalf("the sample client config is invalid: %v", err)
	}
	return c
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDoesNotParse(t *testing.T) {
	n := validNode(t)
	full, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, content, jsonErr string
	}{
		{"garbage", "\x00\x01not json at all", "invalid character"},
		{"truncated", string(full[:len(full)/2]), "unexpected EOF"},
		{"unknown field", strings.Replace(string(full), `"version":1`, `"version":1,"bogus_field":true`, 1), `unknown field "bogus_field"`},
		{"wrong type", strings.Replace(string(full), `"identity":0`, `"identity":"zero"`, 1), "cannot unmarshal string"},
		{"empty", "", "EOF"},
	}
	for _, tc := range cases {
		for _, load := range []struct {
			kind string
			f    func(string) error
		}{
			{"node", func(p string) error { _, err := LoadNode(p); return err }},
			{"client", func(p string) error { _, err := LoadClient(p); return err }},
		} {
			if load.kind == "client" && tc.name == "wrong type" {
				continue // identity is a node field
			}
			t.Run(tc.name+"/"+load.kind, func(t *testing.T) {
				content := tc.content
				if load.kind == "client" && tc.name == "unknown field" {
					content = `{"version":1,"bogus_field":true}`
				}
				p := writeFile(t, "config.json", content)
				err := load.f(p)
				if err == nil {
					t.Fatal("loaded a config that does not parse")
				}
				if errors.Is(err, ErrNoConfig) {
					t.Errorf("error %v claims the file is missing", err)
				}
				if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.jsonErr) {
					t.Errorf("error %q; want it to name %s and the JSON error %q", err, p, tc.jsonErr)
				}
			})
		}
	}
}

func TestLoadMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", FileName)
	if _, err := LoadNode(p); !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), p) {
		t.Errorf("LoadNode of a missing file: %v; want ErrNoConfig naming %s", err, p)
	}
	if _, err := LoadClient(p); !errors.Is(err, ErrNoConfig) {
		t.Errorf("LoadClient of a missing file: %v; want ErrNoConfig", err)
	}
	// A directory in place of the file is not "missing".
	dir := t.TempDir()
	if _, err := LoadNode(dir); err == nil || errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), dir) {
		t.Errorf("LoadNode of a directory: %v; want an error naming it, not ErrNoConfig", err)
	}
}

func TestLoadRefusesInvalid(t *testing.T) {
	nodeCases := []struct {
		name  string
		edit  func(*Node)
		field string
	}{
		{"secret not hex", func(n *Node) { n.Secret = "zz" + n.Secret[2:] }, "secret"},
		{"secret too short", func(n *Node) { n.Secret = n.Secret[:10] }, "secret"},
		{"listen address", func(n *Node) { n.Listen = []string{"/ip4/999.0.0.1/tcp/1"} }, "listen address"},
		{"listen empty", func(n *Node) { n.Listen = nil }, "listen"},
		{"private key", func(n *Node) { n.PrivKey = "bm90IGEga2V5" }, "private_key"},
		{"store", func(n *Node) { n.Store = "badger" }, "store"},
		{"version", func(n *Node) { n.Version = 99 }, "version"},
		{"cluster id", func(n *Node) { n.Cluster.ID = "" }, "cluster_id"},
		{"write quorum", func(n *Node) { n.Cluster.WriteQuorum = 7 }, "write_quorum"},
		// At k an acknowledged write may have no redundancy left and be
		// missed by reads that ask the first positions.
		{"write quorum at k", func(n *Node) { n.Cluster.WriteQuorum = n.Cluster.Policy.DataShards }, "write_quorum"},
		{"map missing", func(n *Node) { n.Cluster.Map = nil }, "map"},
	}
	for _, tc := range nodeCases {
		t.Run("node/"+tc.name, func(t *testing.T) {
			n := validNode(t)
			tc.edit(n)
			p := filepath.Join(t.TempDir(), FileName)
			if err := Save(p, n); err != nil {
				t.Fatal(err)
			}
			_, err := LoadNode(p)
			if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), p) {
				t.Errorf("LoadNode: %v; want an error naming the field %q and the file", err, tc.field)
			}
		})
	}
	clientCases := []struct {
		name  string
		edit  func(*Client)
		field string
	}{
		{"secret", func(c *Client) { c.Secret = "not-a-secret" }, "secret"},
		{"nodes empty", func(c *Client) { c.Nodes = nil }, "nodes is empty"},
		{"node without peer id", func(c *Client) { c.Nodes = []string{"/ip4/127.0.0.1/tcp/6735"} }, "/p2p/<peer id>"},
		{"node not a multiaddr", func(c *Client) { c.Nodes = []string{"127.0.0.1:6735"} }, "127.0.0.1:6735"},
	}
	for _, tc := range clientCases {
		t.Run("client/"+tc.name, func(t *testing.T) {
			c := validClient(t)
			tc.edit(c)
			p := filepath.Join(t.TempDir(), FileName)
			if err := Save(p, c); err != nil {
				t.Fatal(err)
			}
			_, err := LoadClient(p)
			if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), p) {
				t.Errorf("LoadClient: %v; want an error naming %q and the file", err, tc.field)
			}
		})
	}
}

// TestWriteQuorumWithoutParity: with no parity shards every shard is
// needed, so the quorum's range is the width alone; the message gives a
// range that exists.
func TestWriteQuorumWithoutParity(t *testing.T) {
	c := validNode(t).Cluster
	c.Policy = coding.Erasure(4, 0)
	for q, ok := range map[int]bool{0: true, 4: true, 3: false, 5: false} {
		c.WriteQuorum = q
		err := c.Validate()
		if ok != (err == nil) {
			t.Errorf("write_quorum %d on 4+0: %v", q, err)
		}
		if err != nil && !strings.Contains(err.Error(), "outside 4..4") {
			t.Errorf("write_quorum %d on 4+0: %v, want the range 4..4", q, err)
		}
	}
	c.WriteQuorum = 0
	if got := c.Quorum(c.Policy); got != 4 {
		t.Errorf("quorum of 4+0: %d, want 4", got)
	}
}

// TestSaveIgnoresAStaleTemporary: a .tmp file left by an interrupted
// Save, readable by all, must not give its mode to the config (which holds
// keys), nor a link there send the config elsewhere.
func TestSaveIgnoresAStaleTemporary(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, FileName)
	if err := os.WriteFile(p+".tmp", []byte("half a config"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p+".tmp", 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := Save(p, validNode(t)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config after a stale .tmp: %v, err %v; want mode 0600", st.Mode(), err)
	}
	elsewhere := filepath.Join(dir, "elsewhere")
	if err := os.Symlink(elsewhere, p+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := Save(p, validNode(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(elsewhere); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Save wrote through a link at its temporary name: %v", err)
	}
	if _, err := LoadNode(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Save left its temporary file: %v", err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	n := validNode(t)
	n.Identities = []string{n.PrivKey}
	n.Cluster.WriteQuorum = 6
	p := filepath.Join(dir, FileName)
	if err := Save(p, n); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v; want 0600 (it holds keys)", st.Mode().Perm())
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temp file left behind: %v", err)
	}
	got, err := LoadNode(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, n) {
		t.Errorf("node round trip:\n got %+v\nwant %+v", got, n)
	}

	c := validClient(t)
	cp := filepath.Join(dir, "client.json")
	if err := Save(cp, c); err != nil {
		t.Fatal(err)
	}
	gotc, err := LoadClient(cp)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotc, c) {
		t.Errorf("client round trip:\n got %+v\nwant %+v", gotc, c)
	}
	// Saving again replaces the file.
	c.Timeout = "3s"
	if err := Save(cp, c); err != nil {
		t.Fatal(err)
	}
	if gotc, err := LoadClient(cp); err != nil || gotc.Timeout != "3s" {
		t.Errorf("after second save: %+v, %v", gotc, err)
	}
}

func TestFindSecret(t *testing.T) {
	secret := NewSecret()

	t.Run("env", func(t *testing.T) {
		t.Setenv(SecretEnv, " "+secret+"\n")
		got, err := FindSecret(t.TempDir())
		if err != nil || got != secret {
			t.Errorf("FindSecret from %s = %q, %v; want %q", SecretEnv, got, err, secret)
		}
	})
	t.Run("env invalid", func(t *testing.T) {
		t.Setenv(SecretEnv, "1234")
		_, err := FindSecret(t.TempDir())
		if err == nil || !strings.Contains(err.Error(), SecretEnv) {
			t.Errorf("FindSecret with a bad %s: %v; want an error naming it", SecretEnv, err)
		}
	})
	t.Run("env wins over swarm.key", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, SwarmKeyFile), SwarmKey(NewSecret()), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(SecretEnv, secret)
		if got, err := FindSecret(dir); err != nil || got != secret {
			t.Errorf("FindSecret = %q, %v; want the env secret", got, err)
		}
	})
	t.Run("swarm.key", func(t *testing.T) {
		t.Setenv(SecretEnv, "")
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, SwarmKeyFile), SwarmKey(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := FindSecret(dir)
		if err != nil || got != secret {
			t.Errorf("FindSecret from swarm.key = %q, %v; want %q", got, err, secret)
		}
		if _, err := ParseSecret(got); err != nil {
			t.Errorf("found secret does not parse: %v", err)
		}
	})
	t.Run("swarm.key corrupt", func(t *testing.T) {
		t.Setenv(SecretEnv, "")
		dir := t.TempDir()
		p := filepath.Join(dir, SwarmKeyFile)
		if err := os.WriteFile(p, []byte("/key/swarm/psk/1.0.0/\n/base16/\nnothex\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := FindSecret(dir); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("FindSecret with a corrupt swarm.key: %v; want an error naming %s", err, p)
		}
	})
	t.Run("none", func(t *testing.T) {
		t.Setenv(SecretEnv, "")
		dir := t.TempDir()
		_, err := FindSecret(dir)
		if err == nil || !strings.Contains(err.Error(), SecretEnv) || !strings.Contains(err.Error(), SwarmKeyFile) {
			t.Errorf("FindSecret with neither: %v; want an error saying to set %s or copy %s", err, SecretEnv, SwarmKeyFile)
		}
	})
}

func TestParseSecret(t *testing.T) {
	s := NewSecret()
	if len(s) != 64 {
		t.Fatalf("NewSecret has %d characters, want 64", len(s))
	}
	psk, err := ParseSecret(s)
	if err != nil || len(psk) != 32 {
		t.Fatalf("ParseSecret: %d bytes, %v", len(psk), err)
	}
	if NewSecret() == s {
		t.Error("two NewSecret calls gave the same secret")
	}
	for _, bad := range []string{"", "abc", s[:62], s + "00", "g" + s[1:]} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) succeeded", bad)
		}
	}
}

// TestClientTimeout: a client config's timeout parses once, in Validate,
// and RequestTimeout gives it to the front end.
func TestClientTimeout(t *testing.T) {
	c := &Client{Version: FormatVersion, Secret: NewSecret(), Nodes: []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWHvcTcBwjDgbeDdoN1EhuK5hbT5T6ULWcht55XyB8QiRp"}, Timeout: "15s"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if d, err := c.RequestTimeout(); err != nil || d != 15*time.Second {
		t.Fatalf("RequestTimeout = %v, %v; want 15s", d, err)
	}
	for _, bad := range []string{"soon", "-3s"} {
		c.Timeout = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("timeout %q: Validate gave %v, want an error naming the timeout", bad, err)
		}
	}
}

// TestClientHedge: hedge_after parses in Validate and Hedge gives it to
// the front end; unset is 0 (the front end's default).
func TestClientHedge(t *testing.T) {
	c := &Client{Version: FormatVersion, Secret: NewSecret(), Nodes: []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooWHvcTcBwjDgbeDdoN1EhuK5hbT5T6ULWcht55XyB8QiRp"}}
	if d, err := c.Hedge(); err != nil || d != 0 {
		t.Fatalf("unset: Hedge = %v, %v; want 0", d, err)
	}
	c.HedgeAfter = "1.5s"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Hedge(); err != nil || d != 1500*time.Millisecond {
		t.Fatalf("Hedge = %v, %v; want 1.5s", d, err)
	}
	for _, bad := range []string{"soon", "-3s", "0s"} {
		c.HedgeAfter = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "hedge_after") {
			t.Fatalf("hedge_after %q: Validate gave %v, want an error naming it", bad, err)
		}
	}
}
