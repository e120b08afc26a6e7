package lab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
)

// run executes a command and returns its error with the command's output,
// which is where ip(8) and friends explain what went wrong.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// inNS runs a command inside a lab namespace.
func inNS(ctx context.Context, netns string, name string, args ...string) error {
	return run(ctx, "ip", append([]string{"netns", "exec", netns, name}, args...)...)
}

// ipIn runs `ip ARGS` inside a namespace (ip -n avoids a fork of netns exec).
func ipIn(ctx context.Context, netns string, args ...string) error {
	return run(ctx, "ip", append([]string{"-n", netns}, args...)...)
}

func sysctl(ctx context.Context, netns string, kv ...string) error {
	for _, s := range kv {
		if err := inNS(ctx, netns, "sysctl", "-qw", s); err != nil {
			return err
		}
	}
	return nil
}

// Namespaces lists the network namespaces of the lab with the given
// prefix, including pod namespaces its node agents made, and nothing else.
func Namespaces(ctx context.Context, prefix string) ([]string, error) {
	own := ownNamespaces(prefix)
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && own.MatchString(f[0]) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// ownNamespaces matches the names of exactly one lab's namespaces: its
// hosts and its pods, and not those of a lab whose name merely starts the
// same way.
func ownNamespaces(prefix string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.QuoteMeta(prefix) + `(lan|cp|client|router|outside|node-[0-9]+|pod-node-[0-9]+-[0-9a-f]+)$`)
}

func addNS(ctx context.Context, name string) error {
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	// No DAD: addresses must work the moment the lab says it is up. No RAs:
	// every route is configured explicitly.
	return sysctl(ctx, name,
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
		"net.ipv4.ping_group_range=0 2147483647")
}

func addAddrs(ctx context.Context, netns, dev string, addrs ...netip.Prefix) error {
	for _, a := range addrs {
		args := []string{"addr", "add", a.String(), "dev", dev}
		if a.Addr().Is6() {
			args = append(args, "nodad")
		}
		if err := ipIn(ctx, netns, args...); err != nil {
			return err
		}
	}
	return nil
}

// buildNetwork creates every namespace and link of the plan.
func buildNetwork(ctx context.Context, p Plan) error {
	lan := p.Prefix + "lan"
	if err := addNS(ctx, lan); err != nil {
		return err
	}
	for _, step := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "br0", "up"},
	} {
		if err := ipIn(ctx, lan, step...); err != nil {
			return err
		}
	}
	// The bridge only switches: keep netfilter out of its path.
	_ = sysctl(ctx, lan, "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0")

	for _, h := range p.Hosts() {
		if err := addNS(ctx, h.Netns()); err != nil {
			return err
		}
		peer := "v-" + h.Name
		if err := ipIn(ctx, lan, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", h.Netns()); err != nil {
			return err
		}
		if err := ipIn(ctx, lan, "link", "set", peer, "master", "br0", "up"); err != nil {
			return err
		}
		for _, step := range [][]string{{"link", "set", "lo", "up"}, {"link", "set", "eth0", "up"}} {
			if err := ipIn(ctx, h.Netns(), step...); err != nil {
				return err
			}
		}
		if err := addAddrs(ctx, h.Netns(), "eth0",
			netip.PrefixFrom(h.V4, LANv4.Bits()), netip.PrefixFrom(h.V6, LANv6.Bits())); err != nil {
			return err
		}
		if h.Name == p.Router.Name {
			continue
		}
		// Everything on the LAN reaches the world behind the router.
		for _, gw := range []netip.Addr{p.Router.V4, p.Router.V6} {
			if err := ipIn(ctx, h.Netns(), "route", "add", "default", "via", gw.String()); err != nil {
				return err
			}
		}
	}

	if err := buildRouter(ctx, p); err != nil {
		return err
	}
	for _, n := range p.Nodes {
		if err := buildNode(ctx, p, n); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	// The control plane answers pods directly, without NAT.
	for _, n := range p.Nodes {
		for _, r := range [][2]string{{n.PodCIDRv4.String(), n.V4.String()}, {n.PodCIDRv6.String(), n.V6.String()}} {
			if err := ipIn(ctx, p.CP.Netns(), "route", "add", r[0], "via", r[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildRouter links the router to the outside namespace, which has no other
// way to the LAN.
func buildRouter(ctx context.Context, p Plan) error {
	r, o := p.Router.Netns(), p.Outside.Netns()
	if err := addNS(ctx, o); err != nil {
		return err
	}
	if err := sysctl(ctx, r, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
		return err
	}
	if err := ipIn(ctx, r, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", o); err != nil {
		return err
	}
	for _, s := range [][]string{{r, "lo"}, {r, "eth1"}, {o, "lo"}, {o, "eth0"}} {
		if err := ipIn(ctx, s[0], "link", "set", s[1], "up"); err != nil {
			return err
		}
	}
	if err := addAddrs(ctx, r, "eth1",
		netip.PrefixFrom(p.RouterOutV4, OutsideV4.Bits()), netip.PrefixFrom(p.RouterOutV6, OutsideV6.Bits())); err != nil {
		return err
	}
	if err := addAddrs(ctx, o, "eth0",
		netip.PrefixFrom(p.Outside.V4, OutsideV4.Bits()), netip.PrefixFrom(p.Outside.V6, OutsideV6.Bits())); err != nil {
		return err
	}
	for _, gw := range []netip.Addr{p.RouterOutV4, p.RouterOutV6} {
		if err := ipIn(ctx, o, "route", "add", "default", "via", gw.String()); err != nil {
			return err
		}
	}
	return nil
}

// buildNode gives a node its pod bridge and routes to every other node's pods.
func buildNode(ctx context.Context, p Plan, n Node) error {
	ns := n.Netns()
	if err := sysctl(ctx, ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
		return err
	}
	// kube-proxy's service NAT must see traffic between pods on one bridge.
	_ = sysctl(ctx, ns, "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1")
	for _, step := range [][]string{
		{"link", "add", "cbr0", "type", "bridge"},
		{"link", "set", "cbr0", "up"},
	} {
		if err := ipIn(ctx, ns, step...); err != nil {
			return err
		}
	}
	g4, g6 := n.Gateways()
	if err := addAddrs(ctx, ns, "cbr0",
		netip.PrefixFrom(g4, n.PodCIDRv4.Bits()), netip.PrefixFrom(g6, n.PodCIDRv6.Bits())); err != nil {
		return err
	}
	// Pods leaving the cluster network borrow the node's address, as with
	// a CNI's ipMasq: the LAN and the world behind the router have no
	// routes to pod CIDRs. Replies to Service traffic are not new
	// connections, so this never rewrites them.
	rules := fmt.Sprintf(`table inet portico-lab {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %s ip daddr != %s masquerade
		ip6 saddr %s ip6 daddr != %s masquerade
	}
}
`, n.PodCIDRv4, ClusterV4, n.PodCIDRv6, ClusterV6)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pod egress masquerade: %w: %s", err, out)
	}
	for _, o := range p.Nodes {
		if o.Index == n.Index {
			continue
		}
		for _, r := range [][2]string{{o.PodCIDRv4.String(), o.V4.String()}, {o.PodCIDRv6.String(), o.V6.String()}} {
			if err := ipIn(ctx, ns, "route", "add", r[0], "via", r[1]); err != nil {
				return err
			}
		}
	}
	return nil
}
