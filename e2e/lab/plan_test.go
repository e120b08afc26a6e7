package lab

import "testing"

func TestPlan(t *testing.T) {
	p, err := NewPlan("portico-lab-t-", 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ got, want string }{
		{p.CP.V4.String(), "172.31.0.2"},
		{p.CP.V6.String(), "fd31::2"},
		{p.Nodes[0].V4.String(), "172.31.0.11"},
		{p.Nodes[0].V6.String(), "fd31::11"},
		{p.Nodes[2].PodCIDRv4.String(), "10.244.3.0/24"},
		{p.Nodes[2].PodCIDRv6.String(), "fd44:0:0:3::/64"},
		{p.Nodes[1].Netns(), "portico-lab-t-node-2"},
		{p.Outside.V4.String(), "172.31.1.2"},
		{p.APIServer(), "https://172.31.0.2:6443"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	if h, ok := p.Lookup("outside"); !ok || h.Netns() != "portico-lab-t-outside" {
		t.Errorf("Lookup(outside) = %+v, %v", h, ok)
	}
	if _, ok := p.Lookup("node-4"); ok {
		t.Error("Lookup found node-4 in a 3-node lab")
	}
	g4, g6 := p.Nodes[0].Gateways()
	if g4.String() != "10.244.1.1" || g6.String() != "fd44:0:0:1::1" {
		t.Errorf("gateways %s %s", g4, g6)
	}
	for _, n := range []int{0, 51} {
		if _, err := NewPlan("p-", n); err == nil {
			t.Errorf("NewPlan(%d) accepted", n)
		}
	}
}

func TestOwnNamespaces(t *testing.T) {
	own := ownNamespaces("portico-lab-ab12-")
	for name, want := range map[string]bool{
		"portico-lab-ab12-lan":                   true,
		"portico-lab-ab12-node-12":               true,
		"portico-lab-ab12-pod-node-2-0a1b2c3d4e": true,
		"portico-lab-ab12-outside":               true,
		"portico-lab-ab12x-cp":                   false,
		"portico-lab-ab12-cp-2":                  false,
		"portico-lab-ab12-node-1-x":              false,
		"portico-lab-ab123-node-1":               false,
		"portico-lab-other-cp":                   false,
		"xportico-lab-ab12-cp":                   false,
	} {
		if got := own.MatchString(name); got != want {
			t.Errorf("%s: own = %v, want %v", name, got, want)
		}
	}
}
