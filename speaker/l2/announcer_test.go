package l2

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/speaker"
	"github.com/portico-lb/portico/speaker/member"
)

// state builds a cluster of three nodes on 192.0.2.0/24, all live, one
// Service per address.
func state(self string, svcs []speaker.Service, advs ...*v1alpha1.L2Advertisement) *speaker.State {
	st := &speaker.State{
		Node:  self,
		Nodes: map[string]*corev1.Node{},
		Pools: map[string]*v1alpha1.AddressPool{
			"lan":  {ObjectMeta: metav1.ObjectMeta{Name: "lan", Labels: map[string]string{"tier": "lan"}}},
			"dmz":  {ObjectMeta: metav1.ObjectMeta{Name: "dmz"}},
			"lab6": {ObjectMeta: metav1.ObjectMeta{Name: "lab6"}},
		},
		Services:         svcs,
		L2Advertisements: advs,
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		st.Nodes[n] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"name": n}}}
		st.Members = append(st.Members, member.Member{Name: n, Interfaces: member.Interfaces{"eth0": {lan}}})
	}
	return st
}

func svc(name, pool string, ips ...string) speaker.Service {
	s := speaker.Service{Name: types.NamespacedName{Namespace: "default", Name: name}, Pool: pool}
	for _, ip := range ips {
		s.IPs = append(s.IPs, netip.MustParseAddr(ip))
	}
	return s
}

func adv(pools []string, selectors ...metav1.LabelSelector) *v1alpha1.L2Advertisement {
	return &v1alpha1.L2Advertisement{Spec: v1alpha1.L2AdvertisementSpec{AddressPools: pools, AddressPoolSelectors: selectors}}
}

// ownersOf returns, for each address, the nodes that announce it.
func ownersOf(mk func(self string) *speaker.State) map[netip.Addr][]string {
	local := map[string][]netip.Prefix{"eth0": {lan}}
	out := map[netip.Addr][]string{}
	for _, n := range []string{"n1", "n2", "n3"} {
		for _, an := range Owned(mk(n), local) {
			if !slices.Contains(out[an.IP], n) {
				out[an.IP] = append(out[an.IP], n)
			}
		}
	}
	return out
}

// announced lists the addresses of ownersOf's answer, sorted.
func announced(owners map[netip.Addr][]string) []string {
	var ips []string
	for ip := range owners {
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	return ips
}

func TestOwnedExactlyOne(t *testing.T) {
	var svcs []speaker.Service
	for _, ip := range []string{"192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"} {
		svcs = append(svcs, svc("s"+ip, "lan", ip))
	}
	got := ownersOf(func(self string) *speaker.State { return state(self, svcs, adv(nil)) })
	if len(got) != 5 {
		t.Fatalf("announced %d addresses, want 5: %v", len(got), got)
	}
	for ip, nodes := range got {
		if len(nodes) != 1 {
			t.Errorf("%s announced by %v, want exactly one node", ip, nodes)
		}
	}
}

func TestOwnedPoolSelection(t *testing.T) {
	svcs := []speaker.Service{svc("a", "lan", "192.0.2.10"), svc("b", "dmz", "192.0.2.20")}
	tests := []struct {
		name string
		advs []*v1alpha1.L2Advertisement
		want []string
	}{
		{"no advertisement: nothing", nil, nil},
		{"empty advertisement: every pool", []*v1alpha1.L2Advertisement{adv(nil)}, []string{"192.0.2.10", "192.0.2.20"}},
		{"by name", []*v1alpha1.L2Advertisement{adv([]string{"dmz"})}, []string{"192.0.2.20"}},
		{"by label", []*v1alpha1.L2Advertisement{adv(nil, metav1.LabelSelector{MatchLabels: map[string]string{"tier": "lan"}})}, []string{"192.0.2.10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ownersOf(func(self string) *speaker.State { return state(self, svcs, tt.advs...) })
			if ips := announced(got); !slices.Equal(ips, tt.want) {
				t.Fatalf("announced %v, want %v", ips, tt.want)
			}
		})
	}
}

func TestOwnedLocalTraffic(t *testing.T) {
	// Two Services share the address; both Local: only a node with
	// endpoints of both may own it.
	a := svc("a", "lan", "192.0.2.10")
	a.LocalTraffic, a.ReadyNodes = true, map[string]bool{"n2": true, "n3": true}
	b := svc("b", "lan", "192.0.2.10")
	b.LocalTraffic, b.ReadyNodes = true, map[string]bool{"n3": true, "n1": true}
	got := ownersOf(func(self string) *speaker.State { return state(self, []speaker.Service{a, b}, adv(nil)) })
	if owners := got[netip.MustParseAddr("192.0.2.10")]; !slices.Equal(owners, []string{"n3"}) {
		t.Fatalf("owners %v, want [n3]", owners)
	}
}

func TestOwnedNeedsNodeAndMembership(t *testing.T) {
	svcs := []speaker.Service{svc("a", "lan", "192.0.2.10")}
	// Whoever owns it with all three live...
	all := ownersOf(func(self string) *speaker.State { return state(self, svcs, adv(nil)) })
	owner := all[netip.MustParseAddr("192.0.2.10")][0]
	// ...loses it when it leaves the member list, and when its Node is gone.
	for _, drop := range []string{"member", "node"} {
		got := ownersOf(func(self string) *speaker.State {
			st := state(self, svcs, adv(nil))
			if drop == "member" {
				st.Members = slices.DeleteFunc(st.Members, func(m member.Member) bool { return m.Name == owner })
			} else {
				delete(st.Nodes, owner)
			}
			return st
		})
		owners := got[netip.MustParseAddr("192.0.2.10")]
		if len(owners) != 1 || owners[0] == owner {
			t.Errorf("without the owner's %s: owners %v, want one other than %s", drop, owners, owner)
		}
	}
}

func TestOwnedServiceSelection(t *testing.T) {
	labelled := func(name, ip string, l map[string]string) speaker.Service {
		s := svc(name, "lan", ip)
		s.Object = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Labels: l}}
		return s
	}
	edge := map[string]string{"tier": "edge"}
	svcs := []speaker.Service{
		labelled("front", "192.0.2.10", edge),
		labelled("api", "192.0.2.11", nil),
		// shares front's address: the address is announced once for both
		labelled("front-udp", "192.0.2.10", nil),
		labelled("other", "192.0.2.12", nil),
	}
	selecting := func(services, namespaces []metav1.LabelSelector) *v1alpha1.L2Advertisement {
		a := adv(nil)
		a.Name = "sel"
		a.Spec.ServiceSelectors, a.Spec.NamespaceSelectors = services, namespaces
		return a
	}
	edgeSel := []metav1.LabelSelector{{MatchLabels: edge}}
	defaultNS := []metav1.LabelSelector{{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "default"}}}
	otherNS := []metav1.LabelSelector{{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "other"}}}
	tests := []struct {
		name string
		adv  *v1alpha1.L2Advertisement
		want []string
	}{
		{"no selectors: every Service", selecting(nil, nil), []string{"192.0.2.10", "192.0.2.11", "192.0.2.12"}},
		{"service selector: the labelled Service's address", selecting(edgeSel, nil), []string{"192.0.2.10"}},
		{"namespace selector matching", selecting(nil, defaultNS), []string{"192.0.2.10", "192.0.2.11", "192.0.2.12"}},
		{"namespace selector not matching", selecting(nil, otherNS), nil},
		{"both must match", selecting(edgeSel, otherNS), nil},
		{"invalid selector: left out", selecting([]metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Bogus"}}}}, nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ownersOf(func(self string) *speaker.State {
				st := state(self, svcs, tt.adv)
				st.NamespaceLabels = map[string]map[string]string{"default": {"kubernetes.io/metadata.name": "default"}}
				return st
			})
			if ips := announced(got); !slices.Equal(ips, tt.want) {
				t.Fatalf("announced %v, want %v", ips, tt.want)
			}
		})
	}
	st := state("n1", svcs, selecting(nil, []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Bogus"}}}}))
	if errs := invalid(st); len(errs) != 1 || !strings.Contains(errs[0].Error(), `L2Advertisement "sel" is left out: namespaceSelectors[0]`) {
		t.Errorf("invalid = %v, want one naming the advertisement and the field", errs)
	}
}
