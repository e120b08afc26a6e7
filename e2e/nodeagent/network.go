package nodeagent

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipam hands out pod addresses: host number i gives the i-th address of
// both pod CIDRs, so a pod's IPv4 and IPv6 addresses read alike.
type ipam struct {
	v4, v6 netip.Prefix
	used   map[int]bool
	next   int
}

func (m *ipam) alloc() (int, error) {
	size := 1 << (32 - m.v4.Bits())
	for range size {
		m.next++
		if m.next >= size-1 { // skip network (0), gateway (1), broadcast
			m.next = 2
		}
		if !m.used[m.next] {
			m.used[m.next] = true
			return m.next, nil
		}
	}
	return 0, fmt.Errorf("pod CIDR %s is full", m.v4)
}

func (m *ipam) release(i int) { delete(m.used, i) }

func nthAddr(p netip.Prefix, i int) netip.Addr {
	b := p.Addr().AsSlice()
	for j := len(b) - 1; i > 0 && j >= 0; j-- {
		s := int(b[j]) + i
		b[j] = byte(s)
		i = s >> 8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// podNetwork creates a network namespace named netns with eth0 on the
// node's bridge, addresses i of each pod CIDR, and default routes through
// the bridge.
func (a *Agent) podNetwork(ctx context.Context, netns, hostVeth string, i int) ([]netip.Addr, error) {
	_ = ipCmd(ctx, "netns", "del", netns) // a leftover from a crash
	v4, v6 := nthAddr(a.cfg.PodCIDRs[0], i), nthAddr(a.cfg.PodCIDRs[1], i)
	g4, g6 := nthAddr(a.cfg.PodCIDRs[0], 1), nthAddr(a.cfg.PodCIDRs[1], 1)
	steps := [][]string{
		{"netns", "add", netns},
		{"link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", netns},
		{"link", "set", hostVeth, "master", a.cfg.Bridge, "up"},
		{"-n", netns, "link", "set", "lo", "up"},
		{"-n", netns, "addr", "add", netip.PrefixFrom(v4, a.cfg.PodCIDRs[0].Bits()).String(), "dev", "eth0"},
		{"-n", netns, "addr", "add", netip.PrefixFrom(v6, a.cfg.PodCIDRs[1].Bits()).String(), "dev", "eth0", "nodad"},
		{"-n", netns, "link", "set", "eth0", "up"},
		{"-n", netns, "route", "add", "default", "via", g4.String()},
		{"-n", netns, "route", "add", "default", "via", g6.String()},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			_ = ipCmd(context.Background(), "netns", "del", netns)
			return nil, err
		}
	}
	return []netip.Addr{v4, v6}, nil
}
