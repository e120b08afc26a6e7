package bgp

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/speaker"
)

func protocolState() *speaker.State {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"rack": "a"}}}
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "2001:db8::11"},
		{Type: corev1.NodeInternalIP, Address: "192.0.2.11"},
	}
	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"}, Spec: v1alpha1.BGPPeerSpec{
		MyASN: 64513, PeerASN: 64512, PeerAddress: "192.0.2.1",
		PasswordSecret: &v1alpha1.SecretKeyRef{Name: "bgp"},
	}}
	agg := int32(24)
	return &speaker.State{
		Node:  "node-1",
		Nodes: map[string]*corev1.Node{"node-1": node},
		Pools: map[string]*v1alpha1.AddressPool{"lab": {ObjectMeta: metav1.ObjectMeta{Name: "lab"}}},
		Services: []speaker.Service{
			{Name: types.NamespacedName{Namespace: "ns", Name: "web"}, Pool: "lab", IPs: []netip.Addr{netip.MustParseAddr("198.51.100.7")}},
			{Name: types.NamespacedName{Namespace: "ns", Name: "v6"}, Pool: "lab", IPs: []netip.Addr{netip.MustParseAddr("2001:db8:1::7")}},
			{Name: types.NamespacedName{Namespace: "ns", Name: "local"}, Pool: "lab", LocalTraffic: true, IPs: []netip.Addr{netip.MustParseAddr("198.51.100.9")}},
		},
		BGPPeers:          []*v1alpha1.BGPPeer{peer},
		BGPAdvertisements: []*v1alpha1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "all"}, Spec: v1alpha1.BGPAdvertisementSpec{AggregationLength: &agg}}},
	}
}

// TestProtocolInput: the State becomes Compute's Input — the node's IPv4
// address as router ID, the password from its Secret, Services as they are
// — and the Announcements name the peers each address goes to.
func TestProtocolInput(t *testing.T) {
	var asked []v1alpha1.SecretKeyRef
	p := NewProtocol(nil, func(_ context.Context, ref v1alpha1.SecretKeyRef) (string, error) {
		asked = append(asked, ref)
		return "s3cret", nil
	})
	st := protocolState()
	in, problems := p.input(context.Background(), st)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	if in.Node.RouterID != netip.MustParseAddr("192.0.2.11") || in.Node.Labels["rack"] != "a" {
		t.Errorf("node = %+v", in.Node)
	}
	want := v1alpha1.SecretKeyRef{Name: "bgp", Namespace: "portico-system", Key: "password"}
	if len(asked) != 1 || asked[0] != want {
		t.Errorf("password read from %v, want %v", asked, want)
	}
	if len(in.Peers) != 1 || in.Peers[0].Password != "s3cret" {
		t.Errorf("peers = %+v", in.Peers)
	}
	plan := Compute(in)
	got := announcements(in, plan)
	// web's /24 goes to the router; the IPv6 Service has no IPv6 session;
	// the Local Service has no ready endpoint here.
	if len(got) != 1 || got[0].Service.Name != "web" || got[0].Service.Namespace != "ns" ||
		!slices.Equal(got[0].Via, []string{"router"}) || got[0].Protocol != speaker.ProtocolBGP {
		t.Fatalf("announcements = %+v", got)
	}
	if paths := plan.Paths["router"]; len(paths) != 1 || paths[0].Prefix != netip.MustParsePrefix("198.51.100.0/24") {
		t.Fatalf("paths = %+v", paths)
	}
}

// TestProtocolPasswordWhileAPIAway: a password read once is kept while the
// API server cannot be reached; one never read is a clear problem and the
// session is left out.
func TestProtocolPasswordWhileAPIAway(t *testing.T) {
	fail := false
	p := NewProtocol(nil, func(context.Context, v1alpha1.SecretKeyRef) (string, error) {
		if fail {
			return "", errors.New("connection refused")
		}
		return "s3cret", nil
	})
	st := protocolState()
	if _, problems := p.input(context.Background(), st); len(problems) != 0 {
		t.Fatal(problems)
	}
	fail = true
	in, problems := p.input(context.Background(), st)
	if len(problems) != 0 || len(in.Peers) != 1 || in.Peers[0].Password != "s3cret" {
		t.Fatalf("with the API away: peers %+v, problems %v", in.Peers, problems)
	}

	fresh := NewProtocol(nil, func(context.Context, v1alpha1.SecretKeyRef) (string, error) {
		return "", errors.New(`secrets "bgp" not found`)
	})
	in, problems = fresh.input(context.Background(), st)
	if len(in.Peers) != 0 || len(problems) != 1 || !strings.Contains(problems[0].Error(), `BGPPeer "router": passwordSecret portico-system/bgp key "password"`) {
		t.Fatalf("peers %+v, problems %v", in.Peers, problems)
	}
}
