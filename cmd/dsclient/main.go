// Command dsclient puts files into a go-ds-cluster and gets them back.
//
//	dsclient --conf=DIR init --bootstrapper=MULTIADDR
//	dsclient --conf=DIR add FILE
//	dsclient --conf=DIR get CID OUTFILE
//	dsclient --conf=DIR status [--json] [--wait]
//	dsclient --conf=DIR node drain PEER-ID
//	dsclient --conf=DIR node remove PEER-ID
//	dsclient --conf=DIR node admit PEER-ID
//	dsclient --conf=DIR id
//	dsclient --conf=DIR client grant PEER-ID --role=read-write|read-only
//	dsclient --conf=DIR client revoke PEER-ID
//	dsclient --conf=DIR client list
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	dscluster "github.com/filedrive-team/go-ds-cluster"
	"github.com/filedrive-team/go-ds-cluster/config"
	"github.com/filedrive-team/go-ds-cluster/dagfile"
	"github.com/filedrive-team/go-ds-cluster/membership"
	"github.com/filedrive-team/go-ds-cluster/node"
	"github.com/filedrive-team/go-ds-cluster/placement"
	"github.com/filedrive-team/go-ds-cluster/repair"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var g globals
	err := newRoot(&g).ExecuteContext(ctx)
	g.stop()
	stop()
	if err != nil {
		// One line: errors from several nodes are joined with newlines.
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		fmt.Fprintln(os.Stderr, "dsclient:", msg)
		os.Exit(1)
	}
}

// globals are the flags every command takes, before or after its name.
type globals struct {
	conf     string
	logLevel string
	timeout  time.Duration
	cancel   context.CancelFunc // of the --timeout context
}

// setup applies the global flags once they are parsed, before a command
// runs.
func (g *globals) setup(cmd *cobra.Command, _ []string) error {
	// The command line parsed: from here on an error is not a usage
	// mistake, and prints no usage.
	cmd.SilenceUsage = true
	if err := logging.SetLogLevel("*", g.logLevel); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	if g.timeout > 0 {
		ctx, cancel := context.WithTimeout(cmd.Context(), g.timeout)
		cmd.SetContext(ctx)
		g.cancel = cancel
	}
	return nil
}

func (g *globals) stop() {
	if g.cancel != nil {
		g.cancel()
	}
}

// newRoot returns the dsclient command, its global flags kept in g.
func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "dsclient",
		Short: "dsclient talks to a go-ds-cluster",
		Long: `dsclient talks to a go-ds-cluster.

--conf may also name a client config file (such as clusterds.json).
The cluster secret for init comes from $DSCLUSTER_SECRET or DIR/swarm.key.`,
		Args:              unknownCommand,
		PersistentPreRunE: g.setup,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Usage()
			return errors.New("missing command")
		},
		SilenceErrors: true, // main prints them, on one line
	}
	fs := root.PersistentFlags()
	fs.StringVar(&g.conf, "conf", ".dsclient", "client config directory (or a client config file)")
	fs.StringVar(&g.logLevel, "log-level", "error", "log level: debug, info, warn, error")
	fs.DurationVar(&g.timeout, "timeout", 0, "overall time limit (0: none)")
	// Named q as well as -q: the flag package took --q too.
	fs.BoolVarP(&quiet, "q", "q", false, "draw no progress bars")
	root.AddCommand(
		newInitCmd(g), newAddCmd(g), newGetCmd(g), newStatusCmd(g),
		newNodeCmd(g), newIDCmd(g), newClientCmd(g), newBenchCmd(g),
	)
	return root
}

// unknownCommand refuses an argument that names no command (cobra's own
// error for it spans several lines).
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return fmt.Errorf("unknown command %q (did you mean %s?)", args[0], strings.Join(s, " or "))
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// noArgs refuses positional arguments to the command name.
func noArgs(name string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("%s: unexpected arguments %q", name, args)
		}
		return nil
	}
}

func configPath(conf string) string {
	if st, err := os.Stat(conf); err == nil && !st.IsDir() {
		return conf
	}
	return filepath.Join(conf, config.FileName)
}

func open(ctx context.Context, conf string) (*dscluster.Datastore, error) {
	return openWith(ctx, conf, dscluster.Options{})
}

// openWith opens the cluster with opts.
func openWith(ctx context.Context, conf string, opts dscluster.Options) (*dscluster.Datastore, error) {
	cfg, err := loadClient(conf)
	if err != nil {
		return nil, err
	}
	return dscluster.Open(ctx, cfg, &opts)
}

// loadClient loads the client config conf names, saying how to make one
// when there is none.
func loadClient(conf string) (*config.Client, error) {
	cfg, err := config.LoadClient(configPath(conf))
	if errors.Is(err, config.ErrNoConfig) {
		return nil, fmt.Errorf("%w; run `dsclient --conf=%s init --bootstrapper=MULTIADDR` first", err, conf)
	}
	return cfg, err
}

func newInitCmd(g *globals) *cobra.Command {
	var boot string
	cmd := &cobra.Command{
		Use:   "init --bootstrapper=MULTIADDR",
		Short: "fetch the cluster info and write DIR/config.json",
		Args:  noArgs("init"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmdInit(cmd.Context(), g.conf, boot)
		},
	}
	cmd.Flags().StringVar(&boot, "bootstrapper", "", "multiaddr of any cluster node, ending in /p2p/<peer id>")
	return cmd
}

func cmdInit(ctx context.Context, conf, boot string) error {
	if boot == "" {
		return errors.New("init: --bootstrapper is required")
	}
	// --conf may name the config file itself (clusterds.json), as for the
	// other commands; then swarm.key is looked for beside it.
	path, dir := filepath.Join(conf, config.FileName), conf
	if st, err := os.Stat(conf); (err == nil && !st.IsDir()) || (err != nil && strings.HasSuffix(conf, ".json")) {
		path, dir = conf, filepath.Dir(conf)
	}
	secret, err := config.FindSecret(dir)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := node.FetchCluster(fctx, boot, secret)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	cc := &config.Client{Version: config.FormatVersion, ClusterID: c.ID, Secret: secret, Timeout: "30s"}
	// A client keeps its identity across inits, as dscfg client does
	// (roles are granted to it), and its request timeouts.
	if _, err := config.KeepIdentity(path, cc); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for _, n := range c.Map.Nodes {
		for _, a := range n.Addrs {
			cc.Nodes = append(cc.Nodes, a+"/p2p/"+n.ID)
		}
	}
	if err := config.Save(path, cc); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: cluster %s, %d nodes, policy %s\n", path, c.ID, len(c.Map.Nodes), c.Policy)
	if len(c.Clients) > 0 {
		id, _ := clientID(cc)
		fmt.Fprintf(os.Stderr, "the cluster enforces client roles: a read-write client runs `dsclient client grant %s --role=...` for this one\n", id)
	}
	return nil
}

// clientID is the peer ID of a client config's identity.
func clientID(cc *config.Client) (peer.ID, error) {
	if cc.Identity == "" {
		return "", errors.New("this client config has no identity (it takes a new one each run); run `dsclient init` again, or `dscfg client` for a kubo config, to write one")
	}
	id, err := config.PeerIDOf(cc.Identity)
	if err != nil {
		return "", fmt.Errorf("identity: %w", err)
	}
	return id, nil
}

func newIDCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "print this client's peer ID, the one a role is granted to",
		Args:  noArgs("id"),
		RunE:  func(*cobra.Command, []string) error { return cmdID(g.conf) },
	}
}

func cmdID(conf string) error {
	cc, err := loadClient(conf)
	if err != nil {
		return err
	}
	id, err := clientID(cc)
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}

const clientUse = "usage: dsclient client grant PEER-ID --role=read-write|read-only | dsclient client revoke PEER-ID | dsclient client list"

func newClientCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client",
		Short: "grant, revoke and list client roles",
		// Without a known subcommand: the usage, as an error.
		RunE: func(*cobra.Command, []string) error { return errors.New(clientUse) },
	}
	var role string
	grant := &cobra.Command{
		Use: "grant PEER-ID --role=read-write|read-only",
		Short: "give a client the role read-write or read-only (the first grant " +
			"starts enforcing roles: peers without one are refused)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New(clientUse)
			}
			if len(args) > 1 {
				return fmt.Errorf("client grant: unexpected arguments %q", args[1:])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := config.CheckRole(role); err != nil {
				return fmt.Errorf("client grant: --role: %w", err)
			}
			return memberCommand(cmd.Context(), g.conf, membership.Command{Op: membership.OpGrant, ID: args[0], Role: role},
				fmt.Sprintf("granted %s the role %s; peers without a role are refused", args[0], role))
		},
	}
	grant.Flags().StringVar(&role, "role", "", "read-write or read-only")
	revoke := &cobra.Command{
		Use:   "revoke PEER-ID",
		Short: "take a client's role away (the last read-write one stays)",
		Args:  argCount(1, clientUse),
		RunE: func(cmd *cobra.Command, args []string) error {
			return memberCommand(cmd.Context(), g.conf, membership.Command{Op: membership.OpRevoke, ID: args[0]},
				fmt.Sprintf("revoked the role of %s", args[0]))
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "the clients with a role",
		Args:  argCount(0, clientUse),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmdClientList(cmd.Context(), g.conf)
		},
	}
	cmd.AddCommand(grant, revoke, list)
	return cmd
}

// argCount wants n positional arguments; else the error is msg.
func argCount(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return errors.New(msg)
		}
		return nil
	}
}

func cmdClientList(ctx context.Context, conf string) error {
	d, err := open(ctx, conf)
	if err != nil {
		return err
	}
	defer d.Close()
	c := d.Cluster()
	if len(c.Clients) == 0 {
		fmt.Fprintln(os.Stderr, "no client has a role: roles are not enforced, anyone with the cluster secret reads and writes")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tROLE")
	for _, r := range c.Clients {
		fmt.Fprintf(tw, "%s\t%s\n", r.ID, r.Role)
	}
	return tw.Flush()
}

// addFlags are the flags of add, those of ipfs add.
type addFlags struct {
	cidVersion int
	rawLeaves  string
	chunker    string
	recursive  bool
	onlyHash   bool
}

func newAddCmd(g *globals) *cobra.Command {
	var f addFlags
	cmd := &cobra.Command{
		Use:   "add [flags] FILE|-r DIR",
		Short: "store a file (or folder) as a UnixFS DAG, as ipfs add; print its CID last",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("add: want exactly one FILE, got %d (%q)", len(args), args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdAdd(cmd.Context(), g.conf, args[0], f)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&f.cidVersion, "cid-version", 0, "CID version (0 or 1), as ipfs add")
	fs.StringVar(&f.rawLeaves, "raw-leaves", "", "use raw blocks for leaves: true or false (default: false for CIDv0, true for CIDv1)")
	fs.StringVar(&f.chunker, "chunker", "size-262144", "chunking algorithm, as ipfs add")
	// -Q prints only the CID, and draws no progress bar (as the global -q).
	fs.BoolVarP(&quiet, "quiet", "Q", false, "print only the CID")
	fs.BoolVarP(&f.recursive, "recursive", "r", false, "add a folder and everything in it")
	fs.BoolVarP(&f.onlyHash, "only-hash", "n", false, "compute the CID without storing anything")
	return cmd
}

func cmdAdd(ctx context.Context, conf, file string, f addFlags) error {
	opts := dagfile.AddOptions{CidVersion: f.cidVersion, Chunker: f.chunker}
	switch f.rawLeaves {
	case "":
	case "true", "false":
		b := f.rawLeaves == "true"
		opts.RawLeaves = &b
	default:
		return fmt.Errorf("add: --raw-leaves=%q: want true or false", f.rawLeaves)
	}
	st, err := os.Lstat(file)
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	link := st.Mode()&os.ModeSymlink != 0
	if !link && !st.IsDir() && !st.Mode().IsRegular() {
		// A FIFO would be read forever; kubo refuses these too.
		return fmt.Errorf("add: unrecognized file type for %s: %s", file, st.Mode().Type())
	}
	if st.IsDir() && !f.recursive {
		return fmt.Errorf("add: %s is a directory (use -r)", file)
	}
	var store ds.Batching
	if f.onlyHash {
		store = dssync.MutexWrap(ds.NewMapDatastore())
	} else {
		d, err := open(ctx, conf)
		if err != nil {
			return err
		}
		defer d.Close()
		store = d
	}
	start := time.Now()
	var c cid.Cid
	switch {
	case link:
		c, err = dagfile.AddSymlink(ctx, store, file, opts) // as ipfs add: the link, not its target
	case st.IsDir():
		c, err = dagfile.AddDir(ctx, store, file, opts)
	default:
		c, err = addFile(ctx, store, file, opts)
	}
	if err != nil {
		return fmt.Errorf("add %s: %w", file, err)
	}
	if !quiet {
		fmt.Fprintf(os.Stderr, "added %s in %s\n", file, time.Since(start).Round(time.Millisecond))
	}
	fmt.Println(c)
	return nil
}

func addFile(ctx context.Context, store ds.Batching, path string, opts dagfile.AddOptions) (cid.Cid, error) {
	f, err := os.Open(path)
	if err != nil {
		return cid.Undef, err
	}
	defer f.Close()
	var size int64 = -1
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	bar := newBar(size, "adding", true)
	c, err := dagfile.Add(ctx, store, io.TeeReader(f, bar), opts)
	if err == nil {
		_ = bar.Finish()
	}
	return c, err
}

func newGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get CID OUTFILE",
		Short: `write the file with root CID to OUTFILE ("-" for stdout)`,
		Args:  argCount(2, "get: want CID OUTFILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdGet(cmd.Context(), g.conf, args)
		},
	}
}

func cmdGet(ctx context.Context, conf string, args []string) error {
	c, err := cid.Decode(args[0])
	if err != nil {
		return fmt.Errorf("get: %q is not a CID: %w", args[0], err)
	}
	d, err := open(ctx, conf)
	if err != nil {
		return err
	}
	defer d.Close()
	if args[1] == "-" {
		_, err := dagfile.Cat(ctx, d, c, os.Stdout)
		return err
	}
	// Write to a temporary file first: a failed get leaves no partial file.
	tmp, err := createTemp(filepath.Dir(args[1]), ".dsclient-get-")
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer os.Remove(tmp.Name())
	start := time.Now()
	bar := newBar(-1, "getting", true)
	n, err := dagfile.Cat(ctx, d, c, io.MultiWriter(tmp, bar))
	_ = bar.Finish()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", c, err)
	}
	if err := os.Rename(tmp.Name(), args[1]); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d bytes in %s\n", args[1], n, time.Since(start).Round(time.Millisecond))
	return nil
}

// createTemp is os.CreateTemp with the mode the umask leaves of 0666, as
// any new file (and ipfs get's output) gets, rather than 0600.
func createTemp(dir, prefix string) (*os.File, error) {
	for tries := 0; ; tries++ {
		name := filepath.Join(dir, fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), rand.Uint32()))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, os.ErrExist) && tries < 100 {
			continue
		}
		return f, err
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON, wait bool
	cmd := &cobra.Command{
		Use: "status [--json] [--wait]",
		// The use line names the flags.
		DisableFlagsInUseLine: true,
		Short:                 "members and their states, slot coverage, repair (degraded keys, backlog, rate, ETA)",
		Args:                  noArgs("status"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmdStatus(cmd.Context(), g.conf, asJSON, wait)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&wait, "wait", false, "repeat every second until no key is degraded and the repair backlog is empty")
	return cmd
}

func cmdStatus(ctx context.Context, conf string, asJSON, wait bool) error {
	var bar *progressbar.ProgressBar // with --wait: the repair backlog's
	for {
		out, err := clusterStatus(ctx, conf)
		if err != nil {
			return err
		}
		if !wait || out.settled() {
			if bar != nil {
				_ = bar.Finish()
			}
			return printStatus(out, asJSON)
		}
		if out.Repair != nil {
			r := out.Repair
			if bar == nil {
				bar = newBar(int64(max(r.Backlog, 1)), "repair backlog", false)
			}
			bar.Describe(fmt.Sprintf("repair: %d degraded keys, backlog %d shards (%s), %s/s", r.Degraded, r.Backlog, humanBytes(r.BacklogBytes), humanBytes(int64(r.Rate))))
			if int64(r.Backlog) > bar.GetMax64() {
				bar.ChangeMax64(int64(r.Backlog))
			}
			// Short of the end until the cluster settles: a bar that
			// reaches its max finishes, and draws no more.
			_ = bar.Set64(min(bar.GetMax64()-int64(r.Backlog), bar.GetMax64()-1))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

type nodeOut struct {
	Index     int          `json:"index"` // position in the map's node list, -1 when it owns no slots
	Peer      string       `json:"peer"`
	Addrs     []string     `json:"addrs"`
	Zone      string       `json:"zone,omitempty"`
	State     string       `json:"state"`
	Reachable bool         `json:"reachable"`
	Error     string       `json:"error,omitempty"`
	Status    *node.Status `json:"status,omitempty"`
}

type statusOut struct {
	Cluster        string        `json:"cluster"`
	Policy         string        `json:"policy"`
	Epoch          uint64        `json:"epoch"`
	Rebalancing    bool          `json:"rebalancing"` // a target map is being copied to
	Leader         string        `json:"leader,omitempty"`
	Nodes          []nodeOut     `json:"nodes"`
	Slots          int           `json:"slots"`
	SlotsReadable  int           `json:"slots_readable"`
	SlotsRedundant int           `json:"slots_fully_redundant"`
	Repair         *repair.Stats `json:"repair,omitempty"` // from the raft leader
	GCHeldBy       string        `json:"gc_held_by,omitempty"`
	// Clients are the client roles; empty: roles are not enforced.
	Clients     []config.ClientRole `json:"clients,omitempty"`
	readableErr error
}

// settled is true when the leader's last complete pass planned for the
// current map found nothing degraded and left no backlog.
func (o *statusOut) settled() bool {
	return o.Repair != nil && !o.Rebalancing && o.Repair.Settled(o.Epoch)
}

func clusterStatus(ctx context.Context, conf string) (*statusOut, error) {
	d, err := open(ctx, conf)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, sts := d.StatusOf(sctx)
	up := make([]bool, len(c.Map.Nodes))
	out := &statusOut{Cluster: c.ID, Policy: c.Policy.String(), Epoch: c.Map.Epoch, Slots: placement.NumSlots, Rebalancing: c.Target != nil,
		GCHeldBy: d.GCHold(), Clients: c.Clients}
	for _, s := range sts {
		no := nodeOut{Index: s.Index, Peer: s.Peer, Addrs: s.Addrs, Zone: s.Zone, State: s.State, Reachable: s.Err == nil}
		if s.Err != nil {
			no.Error = s.Err.Error()
		} else {
			var st node.Status
			if err := json.Unmarshal(s.Status, &st); err == nil {
				no.Status = &st
				if st.Leader != "" {
					out.Leader = st.Leader
				}
				if st.IsLeader && st.Repair != nil {
					out.Repair = st.Repair
				}
			}
			if s.Index >= 0 {
				up[s.Index] = true
			}
		}
		out.Nodes = append(out.Nodes, no)
	}
	w := c.Policy.Width()
	for s := 0; s < placement.NumSlots; s++ {
		n := 0
		for _, o := range c.Map.Owners(uint16(s))[:w] {
			if up[o] {
				n++
			}
		}
		if n >= c.Policy.DataShards {
			out.SlotsReadable++
		}
		if n == w {
			out.SlotsRedundant++
		}
	}
	if out.SlotsReadable < out.Slots {
		out.readableErr = fmt.Errorf("status: %d slots cannot be read: more than %d nodes are unreachable", out.Slots-out.SlotsReadable, c.Policy.ParityShards)
	}
	return out, nil
}

func printStatus(out *statusOut, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return out.readableErr
	}
	writeStatus(os.Stdout, out, time.Now())
	return out.readableErr
}

// writeStatus writes the text form of out as of now: members that are
// down or out first, and repair figures that say when they were taken.
func writeStatus(w io.Writer, out *statusOut, now time.Time) {
	fmt.Fprintf(w, "cluster %s  policy %s  epoch %d", out.Cluster, out.Policy, out.Epoch)
	if out.Rebalancing {
		fmt.Fprint(w, "  (rebalancing)")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPEER\tADDRESS\tSTATE\tREACHABLE\tRAFT\tKEYS\tSHARD BYTES")
	nodes := slices.Clone(out.Nodes)
	slices.SortStableFunc(nodes, func(a, b nodeOut) int { return cmp.Compare(stateRank(a.State), stateRank(b.State)) })
	for _, n := range nodes {
		reach, keys, bytes := "yes", "-", "-"
		if !n.Reachable {
			reach = "no"
		} else if n.Status != nil {
			keys = fmt.Sprint(n.Status.Keys)
			bytes = fmt.Sprint(n.Status.ShardBytes)
		}
		addr := ""
		if len(n.Addrs) > 0 {
			addr = n.Addrs[0]
		}
		idx := "-"
		if n.Index >= 0 {
			idx = fmt.Sprint(n.Index)
		}
		role := "-"
		if n.Peer == out.Leader {
			role = "leader"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", idx, n.Peer, addr, n.State, reach, role, keys, bytes)
	}
	tw.Flush()
	for _, n := range out.Nodes {
		if n.Status != nil && n.Status.StoreError != "" {
			fmt.Fprintf(w, "node %s: shard store failed, it takes no writes and answers no heartbeat: %s\n", n.Peer, n.Status.StoreError)
		}
	}
	fmt.Fprintf(w, "slots readable: %d/%d  fully redundant: %d/%d\n", out.SlotsReadable, out.Slots, out.SlotsRedundant, out.Slots)
	if out.GCHeldBy != "" {
		fmt.Fprintf(w, "garbage collection keeps tombstones: %s\n", out.GCHeldBy)
	}
	if len(out.Clients) == 0 {
		fmt.Fprintln(w, "client roles: not enforced (anyone with the cluster secret reads and writes)")
	} else {
		fmt.Fprintf(w, "client roles: enforced, %d clients have one (dsclient client list)\n", len(out.Clients))
	}
	if r := out.Repair; r != nil {
		// The figures are those of the leader's last complete pass: say
		// when it ran, so that "0 degraded" just after a node died is not
		// read as "nothing to repair".
		when := "no pass has finished yet"
		if !r.Finished.IsZero() {
			when = fmt.Sprintf("last pass %s ago, for map epoch %d", now.Sub(r.Finished).Round(time.Second), r.Epoch)
		}
		if r.Started.After(r.Finished) {
			when += "; a pass is running"
		}
		if !r.Finished.IsZero() && r.Epoch != out.Epoch {
			fmt.Fprintf(w, "repair: no pass since the map changed (the last one planned for epoch %d, the map is at %d)\n", r.Epoch, out.Epoch)
		}
		fmt.Fprintf(w, "repair (%s): %d keys, %d degraded, %d lost; backlog %d shards (%s)", when, r.Keys, r.Degraded, r.Lost, r.Backlog, humanBytes(r.BacklogBytes))
		if r.Backlog > 0 && r.Rate > 0 {
			fmt.Fprintf(w, " at %s/s, eta %s", humanBytes(int64(r.Rate)), (time.Duration(r.ETA) * time.Second).String())
		}
		fmt.Fprintf(w, "; repaired %d shards, %s moved in total\n", r.Done, humanBytes(r.BytesMoved))
		if out.SlotsRedundant < out.Slots && r.Degraded == 0 && r.Backlog == 0 {
			fmt.Fprintf(w, "repair: %d slots are below full redundancy since that pass (a node is down or new); the next pass counts their keys\n", out.Slots-out.SlotsRedundant)
		}
	} else {
		fmt.Fprintln(w, "repair: no raft leader answered")
	}
}

// stateRank orders members for status: those that need a look first.
func stateRank(state string) int {
	switch state {
	case membership.Down, membership.Out:
		return 0
	case membership.Draining, membership.Joining:
		return 1
	}
	return 2
}

// memberCommand opens the cluster, sends cmd and, once it is applied,
// prints done.
func memberCommand(ctx context.Context, conf string, cmd membership.Command, done string) error {
	d, err := open(ctx, conf)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Member(ctx, cmd); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, done)
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

const nodeUse = "usage: dsclient node drain PEER-ID [--no-wait] | dsclient node remove PEER-ID | dsclient node admit PEER-ID"

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "drain, remove or admit a node",
		// Without a known subcommand: the usage, as an error.
		RunE: func(*cobra.Command, []string) error { return errors.New(nodeUse) },
	}
	var noWait bool
	drain := &cobra.Command{
		Use: "drain PEER-ID [--no-wait]",
		// The use line names the flags.
		DisableFlagsInUseLine: true,
		Short:                 "move a node's data to the others, then remove it from the cluster",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New(nodeUse)
			}
			if len(args) > 1 {
				return fmt.Errorf("node drain: unexpected arguments %q", args[1:])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdDrain(cmd.Context(), g.conf, args[0], noWait)
		},
	}
	drain.Flags().BoolVar(&noWait, "no-wait", false, "return once the drain is recorded, without waiting for the data to move")
	remove := &cobra.Command{
		Use:   "remove PEER-ID",
		Short: "give up on an out node (its machine is gone); its data was rebuilt",
		Args:  argCount(1, nodeUse),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The cluster stops waiting for an out member to come back
			// (garbage collection keeps tombstones while a member is out).
			return memberCommand(cmd.Context(), g.conf, membership.Command{Op: membership.OpRemove, ID: args[0]},
				fmt.Sprintf("removed %s: it may not join again under this identity; a wiped machine joins as a new node", args[0]))
		},
	}
	admit := &cobra.Command{
		Use:   "admit PEER-ID",
		Short: "let a new node join a cluster that enforces client roles",
		Args:  argCount(1, nodeUse),
		RunE: func(cmd *cobra.Command, args []string) error {
			return memberCommand(cmd.Context(), g.conf, membership.Command{Op: membership.OpAdmit, ID: args[0]},
				fmt.Sprintf("admitted %s: it may now join (start it again with --bootstrapper)", args[0]))
		},
	}
	cmd.AddCommand(drain, remove, admit)
	return cmd
}

func cmdDrain(ctx context.Context, conf, id string, noWait bool) error {
	d, err := open(ctx, conf)
	if err != nil {
		return err
	}
	err = d.Member(ctx, membership.Command{Op: membership.OpDrain, ID: id})
	d.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "draining %s: its slots move to the other nodes, then it is removed\n", id)
	if noWait {
		return nil
	}
	start := time.Now()
	bar := newBar(-1, "draining", false)
	for {
		out, err := clusterStatus(ctx, conf)
		if err != nil {
			return err
		}
		state := "removed"
		for _, n := range out.Nodes {
			if n.Peer == id {
				state = n.State
			}
		}
		if state == "removed" {
			_ = bar.Finish()
			fmt.Fprintf(os.Stderr, "%s drained and removed in %s; it can be stopped\n", id, time.Since(start).Round(time.Second))
			return nil
		}
		backlog := 0
		if out.Repair != nil {
			backlog = out.Repair.Backlog
		}
		bar.Describe(fmt.Sprintf("%s: %s, rebalancing %v, repair backlog %d shards", id, state, out.Rebalancing, backlog))
		_ = bar.Add(1) // a spinner: seconds waited
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
