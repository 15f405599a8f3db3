package chaos

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
)

// Netns puts each node in a network namespace of its own, joined to the
// host by a veth pair on a bridge, so that a node can be cut off from
// every other node and client by taking its link down: its packets are
// dropped, as in a real partition, not refused. It needs root and
// iproute2 (ip). Close removes everything it made.
type Netns struct {
	name   string // prefix of every namespace and link
	subnet string // "10.231.N": the host is .1, node i is .(10+i)
	nodes  []int
}

// NewNetns creates the bridge. The names and the /24 are drawn at random,
// so that runs side by side do not meet.
func NewNetns() (*Netns, error) {
	n := &Netns{name: fmt.Sprintf("dsc%04d", rand.IntN(10000)), subnet: fmt.Sprintf("10.231.%d", 1+rand.IntN(250))}
	if err := ipCmd("link", "add", n.bridge(), "type", "bridge"); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"addr", "add", n.subnet + ".1/24", "dev", n.bridge()},
		{"link", "set", n.bridge(), "up"},
	} {
		if err := ipCmd(args...); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

func (n *Netns) bridge() string    { return n.name + "br" }
func (n *Netns) ns(i int) string   { return fmt.Sprintf("%sn%d", n.name, i) }
func (n *Netns) link(i int) string { return fmt.Sprintf("%sv%d", n.name, i) }

// IP is node i's address.
func (n *Netns) IP(i int) string { return fmt.Sprintf("%s.%d", n.subnet, 10+i) }

// Add makes node i's namespace and link.
func (n *Netns) Add(i int) error {
	if 10+i > 254 {
		return fmt.Errorf("chaos: netns: node %d does not fit the /24", i)
	}
	peer := n.link(i) + "p"
	n.nodes = append(n.nodes, i)
	for _, args := range [][]string{
		{"netns", "add", n.ns(i)},
		{"link", "add", n.link(i), "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", n.ns(i)},
		{"link", "set", n.link(i), "master", n.bridge()},
		{"link", "set", n.link(i), "up"},
		{"-n", n.ns(i), "addr", "add", n.IP(i) + "/24", "dev", peer},
		{"-n", n.ns(i), "link", "set", peer, "up"},
		{"-n", n.ns(i), "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return err
		}
	}
	return nil
}

// Command is a command that runs in node i's namespace (ip netns exec
// execs it, so its PID is the program's).
func (n *Netns) Command(i int, path string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.ns(i), path}, args...)...)
}

// Cut takes node i's link down; Mend brings it up.
func (n *Netns) Cut(i int) error  { return ipCmd("link", "set", n.link(i), "down") }
func (n *Netns) Mend(i int) error { return ipCmd("link", "set", n.link(i), "up") }

// Close deletes every namespace and link it made.
func (n *Netns) Close() {
	for _, i := range n.nodes {
		_ = ipCmd("link", "del", n.link(i))
		_ = ipCmd("netns", "del", n.ns(i))
	}
	_ = ipCmd("link", "del", n.bridge())
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
