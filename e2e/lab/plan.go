// Package lab builds and tears down the Portico lab: a real multi-node
// Kubernetes cluster on one Linux host, made of network namespaces joined by
// a LAN bridge, with a router (FRR) and clients on and behind the LAN.
//
//	                      portico-lab-lan: bridge br0
//	         172.31.0.0/24, fd31::/64 (LAN; LoadBalancer pool .200-.250)
//	  +--------+--------+--------+-----------+
//	  |        |        |        |           |
//	router    cp      client   node-1 ...  node-N
//	 .1       .2       .3       .11         .10+N        (::1, ::2, ::3, ::11 ...)
//	  |       etcd, kube-apiserver :6443,   each: node agent, kube-proxy,
//	  |       controller-manager, scheduler bridge cbr0 with 10.244.N.0/24 and
//	  |                                     fd44:0:0:N::/64, pods on veths
//	  | 172.31.1.0/24, fd31:1::/64
//	outside (reaches the LAN only through the router)
//
// Services use 10.96.0.0/16 and fd96::/112; the kubernetes Service is
// 10.96.0.1. The router runs FRR's zebra and bgpd (AS 64512) with ECMP.
// The host reaches the API server through a forwarder on 127.0.0.1 (see
// Forward); .lab/kubeconfig points at it. Inside the lab, components use
// https://172.31.0.2:6443.
//
// Every namespace a lab creates is named <prefix><host>, where the prefix
// is portico-lab-<name>- and the name is PORTICO_LAB_NAME or, by default,
// derived from the repository's path: labs of two checkouts on one machine
// never touch each other, and Down finds and removes exactly its own
// namespaces and processes, even after a crash.
package lab

import (
	"fmt"
	"net/netip"
	"path/filepath"
)

// Family starts the name of every lab's network namespaces.
const Family = "portico-lab-"

// Addressing of the lab. The LAN uses a private IPv4 /24 and a ULA /64 so
// nothing collides with the host's own networks or documentation prefixes
// tests may want to use as "elsewhere".
var (
	LANv4      = netip.MustParsePrefix("172.31.0.0/24")
	LANv6      = netip.MustParsePrefix("fd31::/64")
	OutsideV4  = netip.MustParsePrefix("172.31.1.0/24")
	OutsideV6  = netip.MustParsePrefix("fd31:1::/64")
	ClusterV4  = netip.MustParsePrefix("10.244.0.0/16")
	ClusterV6  = netip.MustParsePrefix("fd44::/48")
	ServiceV4  = netip.MustParsePrefix("10.96.0.0/16")
	ServiceV6  = netip.MustParsePrefix("fd96::/112")
	APIService = []netip.Addr{netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("fd96::1")}
)

// RouterASN is the router's BGP autonomous system number.
const RouterASN = 64512

// APIPort is the port the API server listens on in the cp namespace.
const APIPort = 6443

// Host is one namespace on the LAN.
type Host struct {
	Name   string // short name used by `lab exec`: cp, node-1, client, router
	V4     netip.Addr
	V6     netip.Addr
	prefix string
}

// Netns is the host's network namespace name.
func (h Host) Netns() string { return h.prefix + h.Name }

// Node is a Kubernetes node: a LAN host with a pod bridge.
type Node struct {
	Host
	Index     int
	PodCIDRv4 netip.Prefix
	PodCIDRv6 netip.Prefix
}

// Gateways are the pod bridge's addresses, the default routes of pods.
func (n Node) Gateways() (netip.Addr, netip.Addr) {
	return n.PodCIDRv4.Addr().Next(), n.PodCIDRv6.Addr().Next()
}

// Plan is the lab's topology, a pure function of the node count.
type Plan struct {
	Prefix             string // of every namespace name
	Router, CP, Client Host
	Nodes              []Node
	// Outside sits behind the router on its own link.
	Outside                  Host
	RouterOutV4, RouterOutV6 netip.Addr
}

// NewPlan lays out a lab with n nodes whose namespaces start with prefix.
func NewPlan(prefix string, n int) (Plan, error) {
	if n < 1 || n > 50 {
		return Plan{}, fmt.Errorf("node count %d: want 1..50", n)
	}
	lanHost := func(name string, i int) Host {
		return Host{Name: name, V4: nth(LANv4, i), V6: nth(LANv6, i), prefix: prefix}
	}
	p := Plan{
		Prefix:      prefix,
		Router:      lanHost("router", 1),
		CP:          lanHost("cp", 2),
		Client:      lanHost("client", 3),
		Outside:     Host{Name: "outside", V4: nth(OutsideV4, 2), V6: nth(OutsideV6, 2), prefix: prefix},
		RouterOutV4: nth(OutsideV4, 1),
		RouterOutV6: nth(OutsideV6, 1),
	}
	for i := 1; i <= n; i++ {
		v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24)
		b := ClusterV6.Addr().As16()
		b[7] = byte(i) // fd44:0:0:<i>::/64
		p.Nodes = append(p.Nodes, Node{
			Host:      lanHost(fmt.Sprintf("node-%d", i), 10+i),
			Index:     i,
			PodCIDRv4: v4,
			PodCIDRv6: netip.PrefixFrom(netip.AddrFrom16(b), 64),
		})
	}
	return p, nil
}

// Hosts lists every namespace attached to the LAN.
func (p Plan) Hosts() []Host {
	hs := []Host{p.Router, p.CP, p.Client}
	for _, n := range p.Nodes {
		hs = append(hs, n.Host)
	}
	return hs
}

// Lookup finds a host of the plan by its short name.
func (p Plan) Lookup(name string) (Host, bool) {
	for _, h := range append(p.Hosts(), p.Outside) {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// APIServer is the address every node and pod reaches the API server at.
func (p Plan) APIServer() string {
	return fmt.Sprintf("https://%s", netip.AddrPortFrom(p.CP.V4, APIPort))
}

// nth is the i-th address of a prefix; the lab's host numbers are small and
// written in decimal in both families (node-1 is .11 and ::11).
func nth(p netip.Prefix, i int) netip.Addr {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		b[3] = byte(i)
		return netip.AddrFrom4(b)
	}
	// Decimal digits read as hex so that ".11" and "::11" match by eye.
	var h uint16
	for _, d := range fmt.Sprint(i) {
		h = h<<4 | uint16(d-'0')
	}
	b := p.Addr().As16()
	b[14], b[15] = byte(h>>8), byte(h)
	return netip.AddrFrom16(b)
}

// Dirs are the lab's state directories under <repo>/.lab.
type Dirs struct{ Root string }

func (d Dirs) Logs() string       { return filepath.Join(d.Root, "logs") }
func (d Dirs) Run() string        { return filepath.Join(d.Root, "run") }
func (d Dirs) PKI() string        { return filepath.Join(d.Root, "pki") }
func (d Dirs) Kubeconfig() string { return filepath.Join(d.Root, "kubeconfig") }
func (d Dirs) Data(name string) string {
	return filepath.Join(d.Root, "data", name)
}
