package config

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/filedrive-team/go-ds-cluster/coding"
	"github.com/filedrive-team/go-ds-cluster/placement"
)

// FileName is the config file inside a --conf directory.
const FileName = "config.json"

// SwarmKeyFile is the cluster secret file inside a --conf directory, in the
// same format as an IPFS private network's swarm.key.
const SwarmKeyFile = "swarm.key"

// SecretEnv names the environment variable that may carry the cluster secret
// (64 hex characters) for a node or client that has no config yet.
const SecretEnv = "DSCLUSTER_SECRET"

// FormatVersion is written in every config file.
const FormatVersion = 1

// Defaults.
const (
	DefaultDataShards     = 4
	DefaultParityShards   = 2
	DefaultBasePort       = 6735
	DefaultSmallThreshold = 16 << 10
	DefaultStore          = "volume"
)

// ErrNoConfig is returned when a config file does not exist.
var ErrNoConfig = errors.New("config: no config file")

// Cluster is what every member learns about the cluster: identity of the
// cluster, the storage policy and the slot map.
type Cluster struct {
	ID string `json:"cluster_id"`
	// Policy is the erasure policy for values of SmallThreshold bytes and
	// more; smaller values are replicated ParityShards+1 times.
	Policy         coding.Policy `json:"policy"`
	SmallThreshold int           `json:"small_threshold"`
	// WriteQuorum is the number of shards that must be stored before a Put
	// is acknowledged; 0 means DataShards+1 (capped at the policy width).
	WriteQuorum int            `json:"write_quorum,omitempty"`
	Map         *placement.Map `json:"map"`
	// MapSince is when Map became the map (Unix nanoseconds, the time of
	// the raft command that set it); 0 when unknown (a description from an
	// older version). Repair rolls a failed write back only when the map
	// has not changed since it was written (see package repair).
	MapSince int64 `json:"map_since,omitempty"`
	// Members are every node the cluster knows, with its membership state
	// (package membership). Empty in a config written by dscfg: the nodes of
	// the map are then all members and up.
	Members []Member `json:"members,omitempty"`
	// Unfilled marks, one bit per slot position (slot*Width+pos), the
	// positions whose owner changed since a repair pass last found every
	// key at full redundancy (membership.OpFilled). Such an owner may lack
	// writes acknowledged before it took the position over: what it says
	// it holds, or does not, proves nothing about newer versions
	// (Vouches). Nil: every owner holds what it should.
	Unfilled []byte `json:"unfilled,omitempty"`
	// Target is the map a rebalance is moving to: its new owners already
	// accept shards, and it replaces Map once they hold them. Nil when no
	// rebalance is under way.
	Target *placement.Map `json:"target,omitempty"`
	// Clients are the client peers granted a role (DESIGN §6). While it is
	// empty roles are not enforced: anyone with the cluster secret reads
	// and writes, as in the seed. Once a client is granted one, a peer that
	// is neither a member nor listed here is refused, and a read-only
	// client may not write.
	Clients []ClientRole `json:"clients,omitempty"`
	// Admitted are the peer IDs of new nodes that a member or read-write
	// client let join while roles are enforced (dsclient node admit); a
	// join takes its ID off the list.
	Admitted []string `json:"admitted,omitempty"`
}

// Client roles.
const (
	RoleReadWrite = "read-write" // reads, writes, deletes, membership and role commands
	RoleReadOnly  = "read-only"  // reads, lists and status only
)

// ClientRole is one client peer's role.
type ClientRole struct {
	ID   string `json:"id"` // libp2p peer ID
	Role string `json:"role"`
}

// CheckRole reports whether role names a client role.
func CheckRole(role string) error {
	switch role {
	case RoleReadWrite, RoleReadOnly:
		return nil
	}
	return fmt.Errorf("role %q is unknown (want %s or %s)", role, RoleReadWrite, RoleReadOnly)
}

// ClientRole returns the role of client peer id, if it has one.
func (c *Cluster) ClientRole(id string) (string, bool) {
	for _, r := range c.Clients {
		if r.ID == id {
			return r.Role, true
		}
	}
	return "", false
}

// Member is one node and its membership state.
type Member struct {
	placement.Node
	// State is joining, up, down, out, draining or removed (package
	// membership defines them and their transitions).
	State string `json:"state"`
	// Since is when State was set, in Unix nanoseconds of the raft leader
	// that set it.
	Since int64 `json:"since,omitempty"`
	// Leaving is set by a drain and stays set while the member is down, so
	// a missed heartbeat does not cancel the drain.
	Leaving bool `json:"leaving,omitempty"`
	// Stale marks a member removed while out: its folder may still hold
	// shards of values deleted since, so it may not join again under this
	// identity (a wiped machine joins with a new one).
	Stale bool `json:"stale,omitempty"`
}

// Member returns the member with the given peer ID.
func (c *Cluster) Member(id string) (*Member, bool) {
	for i := range c.Members {
		if c.Members[i].ID == id {
			return &c.Members[i], true
		}
	}
	return nil, false
}

// Clone returns a deep copy of c.
func (c *Cluster) Clone() *Cluster {
	d := *c
	d.Map = c.Map.Clone()
	d.Target = c.Target.Clone()
	d.Unfilled = slices.Clone(c.Unfilled)
	d.Members = make([]Member, len(c.Members))
	for i, m := range c.Members {
		d.Members[i] = m
		d.Members[i].Addrs = append([]string(nil), m.Addrs...)
	}
	if c.Members == nil {
		d.Members = nil
	}
	if c.Clients != nil {
		d.Clients = append([]ClientRole(nil), c.Clients...)
	}
	if c.Admitted != nil {
		d.Admitted = append([]string(nil), c.Admitted...)
	}
	return &d
}

// Vouches reports whether the owner of position pos of slot in the map
// holds every write it should: it owned the position when each write was
// made, or repair has filled it since (Unfilled). Only such an owner's
// answer shows which versions of a key reached that position.
func (c *Cluster) Vouches(slot uint16, pos int) bool {
	if c.Unfilled == nil {
		return true
	}
	bit := int(slot)*c.Map.Width + pos
	return bit/8 < len(c.Unfilled) && c.Unfilled[bit/8]&(1<<(bit%8)) == 0
}

// MarkUnfilled marks the positions whose owner differs between maps
// before and after (Unfilled), keeping those marked already.
func (c *Cluster) MarkUnfilled(before, after *placement.Map) {
	if n := (placement.NumSlots*after.Width + 7) / 8; len(c.Unfilled) != n {
		c.Unfilled = make([]byte, n) // a map's width never changes
	}
	for slot := range uint16(placement.NumSlots) {
		was, now := before.Owners(slot), after.Owners(slot)
		for pos := range now {
			if pos >= len(was) || before.Nodes[was[pos]].ID != after.Nodes[now[pos]].ID {
				bit := int(slot)*after.Width + pos
				c.Unfilled[bit/8] |= 1 << (bit % 8)
			}
		}
	}
}

// MarkFilled clears the unfilled marks of the slots in the bitset slots
// (nil: of every slot), and drops Unfilled once none is left.
func (c *Cluster) MarkFilled(slots []byte) {
	if c.Unfilled == nil {
		return
	}
	if slots != nil {
		for slot := range placement.NumSlots {
			if slot/8 >= len(slots) || slots[slot/8]&(1<<(slot%8)) == 0 {
				continue
			}
			for pos := range c.Map.Width {
				if bit := slot*c.Map.Width + pos; bit/8 < len(c.Unfilled) {
					c.Unfilled[bit/8] &^= 1 << (bit % 8)
				}
			}
		}
		for _, b := range c.Unfilled {
			if b != 0 {
				return
			}
		}
	}
	c.Unfilled = nil
}

// Owns reports whether node id holds position pos of slot in the map or in
// the rebalance target: such a node accepts and serves that shard.
func (c *Cluster) Owns(id string, slot uint16, pos int) bool {
	for _, m := range []*placement.Map{c.Map, c.Target} {
		if m == nil {
			continue
		}
		owners := m.Owners(slot)
		if pos < len(owners) && int(owners[pos]) < len(m.Nodes) && m.Nodes[owners[pos]].ID == id {
			return true
		}
	}
	return false
}

// Validate checks the cluster description.
func (c *Cluster) Validate() error {
	if c.ID == "" {
		return errors.New("cluster_id is empty")
	}
	if err := c.Policy.Validate(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if c.Policy.Kind != coding.KindErasure {
		return fmt.Errorf("policy %s: the cluster policy must be erasure k+m", c.Policy)
	}
	if c.SmallThreshold < 0 {
		return fmt.Errorf("small_threshold %d is negative", c.SmallThreshold)
	}
	// Below k+1 an acknowledged write may be unreadable (fewer than k
	// shards) or missed by reads, which ask the first positions first and
	// rely on two write quorums sharing k positions. Without parity every
	// shard is needed: the quorum is the width (Quorum).
	if lo, hi := min(c.Policy.DataShards+1, c.Policy.Width()), c.Policy.Width(); c.WriteQuorum != 0 && (c.WriteQuorum < lo || c.WriteQuorum > hi) {
		return fmt.Errorf("write_quorum %d is outside %d..%d (0: %d) for policy %s",
			c.WriteQuorum, lo, hi, lo, c.Policy)
	}
	if c.Map == nil {
		return errors.New("map is missing")
	}
	if err := c.Map.Validate(); err != nil {
		return fmt.Errorf("map: %w", err)
	}
	if c.Map.Width < c.Policy.Width() {
		return fmt.Errorf("map width %d is smaller than policy %s needs", c.Map.Width, c.Policy)
	}
	if c.Target != nil {
		if err := c.Target.Validate(); err != nil {
			return fmt.Errorf("target map: %w", err)
		}
		if c.Target.Width != c.Map.Width {
			return fmt.Errorf("target map width %d differs from the map's %d", c.Target.Width, c.Map.Width)
		}
	}
	if n := (placement.NumSlots*c.Map.Width + 7) / 8; c.Unfilled != nil && len(c.Unfilled) != n {
		return fmt.Errorf("unfilled positions: %d bytes, want %d for map width %d", len(c.Unfilled), n, c.Map.Width)
	}
	seen := make(map[string]bool, len(c.Members))
	for _, m := range c.Members {
		if m.ID == "" || seen[m.ID] {
			return fmt.Errorf("members: empty or repeated peer id %q", m.ID)
		}
		seen[m.ID] = true
	}
	clients := make(map[string]bool, len(c.Clients))
	for _, r := range c.Clients {
		if _, err := peer.Decode(r.ID); err != nil || clients[r.ID] || seen[r.ID] {
			return fmt.Errorf("clients: peer id %q is not valid, repeated or a member's", r.ID)
		}
		clients[r.ID] = true
		if err := CheckRole(r.Role); err != nil {
			return fmt.Errorf("clients: %s: %w", r.ID, err)
		}
	}
	return nil
}

// Quorum is the effective write quorum for a policy of this cluster.
func (c *Cluster) Quorum(p coding.Policy) int {
	q := c.WriteQuorum
	if q == 0 || p.Kind == coding.KindReplica {
		q = p.DataShards + 1
	}
	if q > p.Width() {
		q = p.Width()
	}
	return q
}

// Node is a dscluster node's config.json.
type Node struct {
	Version  int `json:"version"`
	Identity int `json:"identity"`
	// PrivKey is the node's libp2p private key (base64 of its protobuf).
	PrivKey string   `json:"private_key"`
	Listen  []string `json:"listen"`
	// Secret is the cluster secret, 64 hex characters (transport checks it
	// in every connection's handshake).
	Secret string `json:"secret"`
	// Store names the shard store backend: "volume" (append-only volume
	// files, group commit), "flatfs" (one file per shard, go-ds-flatfs) or
	// "mongodb" (a MongoDB collection; dscluster --mongodb gives the URI).
	Store string `json:"store"`
	// Zone and Weight are this node's failure domain and capacity weight,
	// sent when it joins a running cluster (dscluster --zone, --weight).
	Zone   string `json:"zone,omitempty"`
	Weight int    `json:"weight,omitempty"`
	// Identities holds the private keys of every node of the initial
	// cluster; only the bootstrapper's config has it, to hand identities to
	// nodes started with --identity.
	Identities []string `json:"identities,omitempty"`
	Cluster    Cluster  `json:"cluster"`
}

// Validate checks a node config.
func (n *Node) Validate() error {
	if n.Version != FormatVersion {
		return fmt.Errorf("version %d is not supported (want %d)", n.Version, FormatVersion)
	}
	if _, err := DecodePrivKey(n.PrivKey); err != nil {
		return fmt.Errorf("private_key: %w", err)
	}
	if _, err := ParseSecret(n.Secret); err != nil {
		return fmt.Errorf("secret: %w", err)
	}
	if len(n.Listen) == 0 {
		return errors.New("listen is empty")
	}
	for _, a := range n.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return fmt.Errorf("listen address %q: %w", a, err)
		}
	}
	switch n.Store {
	case "flatfs", "volume", "mongodb":
	default:
		return fmt.Errorf("store %q is unknown (want volume, flatfs or mongodb)", n.Store)
	}
	return n.Cluster.Validate()
}

// Client is a front end's config: dsclient's config.json, or the
// clusterds.json that the kubo plugin reads.
type Client struct {
	Version   int    `json:"version"`
	ClusterID string `json:"cluster_id"`
	// Secret is the cluster secret, 64 hex characters (transport checks it
	// in every connection's handshake).
	Secret string `json:"secret"`
	// Nodes lists server multiaddrs ending in /p2p/<peer id>. The client asks
	// any of them for the current cluster map at open.
	Nodes []string `json:"nodes"`
	// Timeout bounds one request to one node, as a Go duration ("10s").
	Timeout string `json:"timeout,omitempty"`
	// HedgeAfter is how long a read waits for a node before it asks the
	// next ones, and after which a node is treated as slow, as a Go
	// duration ("250ms", the default; raise it for slow links).
	HedgeAfter string `json:"hedge_after,omitempty"`
	// Identity is the client's libp2p private key (base64 of its protobuf),
	// the peer ID a role is granted to (dsclient id prints it). Empty: a
	// new identity each run, which only a cluster without roles accepts.
	Identity string `json:"identity,omitempty"`
	// Namespace keeps the keys of this client apart from those of clients
	// with another namespace (or none) on the same cluster, so that
	// several kubo nodes can share it: they do not see, list or collect
	// each other's blocks. 1 to 64 characters of A-Z, a-z, 0-9, '.', '_'
	// and '-'. Empty: no namespace.
	Namespace string `json:"namespace,omitempty"`
	// SkipCIDCheck turns off the check of blocks read against their CIDs
	// (dscluster.Options.SkipCIDCheck), for a kubo whose blockstore checks
	// them already (Datastore.HashOnRead). Default false: checked.
	SkipCIDCheck bool `json:"skip_cid_check,omitempty"`
}

// CheckNamespace reports a namespace name Client.Namespace does not allow.
func CheckNamespace(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("namespace %.64q…: longer than 64 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("namespace %q: %q is not allowed (use A-Z, a-z, 0-9, '.', '_' and '-')", name, r)
		}
	}
	if name == "." || name == ".." {
		return fmt.Errorf("namespace %q is not allowed", name)
	}
	return nil
}

// Validate checks a client config.
func (c *Client) Validate() error {
	if c.Version != FormatVersion {
		return fmt.Errorf("version %d is not supported (want %d)", c.Version, FormatVersion)
	}
	if _, err := ParseSecret(c.Secret); err != nil {
		return fmt.Errorf("secret: %w", err)
	}
	if len(c.Nodes) == 0 {
		return errors.New("nodes is empty: list at least one server multiaddr ending in /p2p/<peer id>")
	}
	if _, err := c.RequestTimeout(); err != nil {
		return err
	}
	if _, err := c.Hedge(); err != nil {
		return err
	}
	if err := CheckNamespace(c.Namespace); err != nil {
		return err
	}
	if c.Identity != "" {
		if _, err := DecodePrivKey(c.Identity); err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	for _, a := range c.Nodes {
		if _, err := ParseAddrInfo(a); err != nil {
			return fmt.Errorf("node %q: %w", a, err)
		}
	}
	return nil
}

// RequestTimeout is Timeout parsed; 0 when it is not set.
func (c *Client) RequestTimeout() (time.Duration, error) {
	if c.Timeout == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.Timeout)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("timeout %q: want a positive Go duration such as 30s", c.Timeout)
	}
	return d, nil
}

// Hedge parses HedgeAfter (0 when unset: the front end's default).
func (c *Client) Hedge() (time.Duration, error) {
	if c.HedgeAfter == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.HedgeAfter)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("hedge_after %q: want a positive Go duration such as 250ms", c.HedgeAfter)
	}
	return d, nil
}

// ParseAddrInfo parses a multiaddr that ends in /p2p/<peer id>.
func ParseAddrInfo(s string) (*peer.AddrInfo, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, err
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return nil, fmt.Errorf("%s: want a multiaddr ending in /p2p/<peer id>: %w", s, err)
	}
	return ai, nil
}

// LoadNode reads and validates a node config file.
func LoadNode(path string) (*Node, error) {
	var n Node
	if err := load(path, &n); err != nil {
		return nil, err
	}
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &n, nil
}

// LoadClient reads and validates a client config file.
func LoadClient(path string) (*Client, error) {
	var c Client
	if err := load(path, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// KeepIdentity prepares cc, a client config about to be written at path:
// it takes the identity, request timeouts and namespace of the client config already
// there (client roles are granted to the identity, so writing the file
// again must not lock its user out), and makes a new identity when there
// is none. The file there is read without validating it (a template's
// placeholders do not validate); one that is not a client config is an
// error, as it is not to be written over. kept reports an identity taken
// from the file.
func KeepIdentity(path string, cc *Client) (kept bool, err error) {
	var prior Client
	err = load(path, &prior)
	switch {
	case errors.Is(err, ErrNoConfig):
	case err != nil:
		return false, fmt.Errorf("%w; it is not a client config: remove it or name another file", err)
	default:
		cc.Identity, cc.HedgeAfter, cc.Namespace = prior.Identity, prior.HedgeAfter, prior.Namespace
		if prior.Timeout != "" {
			cc.Timeout = prior.Timeout
		}
	}
	if cc.Identity != "" {
		return true, nil
	}
	if _, cc.Identity, err = NewPrivKey(); err != nil {
		return false, fmt.Errorf("identity: %w", err)
	}
	return false, nil
}

func load(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNoConfig, path)
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config %s does not parse: %w", path, err)
	}
	return nil
}

// Save writes v as indented JSON to path atomically (WritePrivate).
func Save(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WritePrivate(path, append(b, '\n'))
}

// WritePrivate writes data to path atomically (temporary file + rename),
// with mode 0600: configs and swarm.key hold keys.
func WritePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// A fresh file: one left over from an interrupted Save keeps its mode
	// (and a link there its target) if written through, and the file
	// holds keys. Synced before the rename, and the folder after it, so a
	// crash leaves the old config or the new one, never an empty file.
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		_ = d.Close()
		if err != nil {
			return fmt.Errorf("write %s: sync its folder: %w", path, err)
		}
	}
	return nil
}

// NewSecret returns a fresh random cluster secret (64 hex characters).
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// ParseSecret decodes a hex cluster secret into a libp2p PSK.
func ParseSecret(s string) (pnet.PSK, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("cluster secret is not hex: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("cluster secret has %d bytes, want 32", len(b))
	}
	return pnet.PSK(b), nil
}

// SwarmKey formats a secret in the swarm.key file format.
func SwarmKey(secret string) []byte {
	return []byte("/key/swarm/psk/1.0.0/\n/base16/\n" + secret + "\n")
}

// FindSecret looks for the cluster secret of a member that has no config
// yet: the DSCLUSTER_SECRET environment variable, then DIR/swarm.key.
func FindSecret(dir string) (string, error) {
	if s := os.Getenv(SecretEnv); s != "" {
		if _, err := ParseSecret(s); err != nil {
			return "", fmt.Errorf("%s: %w", SecretEnv, err)
		}
		return strings.TrimSpace(s), nil
	}
	path := filepath.Join(dir, SwarmKeyFile)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("no cluster secret: set %s or copy the bootstrapper's %s into %s", SecretEnv, SwarmKeyFile, dir)
		}
		return "", err
	}
	defer f.Close()
	psk, err := pnet.DecodeV1PSK(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(psk), nil
}

// NewPrivKey generates an Ed25519 libp2p identity, encoded for a config.
func NewPrivKey() (crypto.PrivKey, string, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	b, err := crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, "", err
	}
	return sk, crypto.ConfigEncodeKey(b), nil
}

// DecodePrivKey decodes a config's private key.
func DecodePrivKey(s string) (crypto.PrivKey, error) {
	b, err := crypto.ConfigDecodeKey(s)
	if err != nil {
		return nil, err
	}
	return crypto.UnmarshalPrivateKey(b)
}

// PeerIDOf is the peer ID of a config's private key.
func PeerIDOf(s string) (peer.ID, error) {
	key, err := DecodePrivKey(s)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(key)
}
