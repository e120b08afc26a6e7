package bgp

import (
	"context"
	"errors"
	"fmt"
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

// TestProtocolPassword: a password is read at most every passwordTTL; one
// read before is kept while the API server cannot be reached, but not
// once the Secret is gone; one never read is a clear problem and the
// session is left out.
func TestProtocolPassword(t *testing.T) {
	var reads int
	var fail error
	p := NewProtocol(nil, func(ctx context.Context, _ v1alpha1.SecretKeyRef) (string, error) {
		reads++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("password read without a deadline")
		}
		return "s3cret", fail
	})
	st := protocolState()
	peers := func() ([]Peer, []error) {
		in, problems := p.input(context.Background(), st)
		return in.Peers, problems
	}
	age := func() {
		for k, v := range p.last {
			v.read = v.read.Add(-2 * passwordTTL)
			p.last[k] = v
		}
	}
	if _, problems := peers(); len(problems) != 0 || reads != 1 {
		t.Fatalf("first read: %d reads, problems %v", reads, problems)
	}
	if _, _ = peers(); reads != 1 {
		t.Fatalf("read again within the TTL: %d reads", reads)
	}

	age()
	fail = errors.New("connection refused")
	if ps, problems := peers(); len(problems) != 0 || len(ps) != 1 || ps[0].Password != "s3cret" || reads != 2 {
		t.Fatalf("with the API away: %d reads, peers %+v, problems %v", reads, ps, problems)
	}

	age()
	fail = fmt.Errorf("secrets \"bgp\" not found: %w", ErrNoPassword)
	ps, problems := peers()
	if len(ps) != 0 || len(problems) != 1 || !strings.Contains(problems[0].Error(), `BGPPeer "router": passwordSecret portico-system/bgp key "password"`) {
		t.Fatalf("with the Secret gone: peers %+v, problems %v", ps, problems)
	}
}

// TestProtocolPeers: a BGPPeer that selects the node and whose password
// cannot be read is reported with the problem and an idle session; one
// that selects other nodes is not reported; once the password is there,
// the problem goes.
func TestProtocolPeers(t *testing.T) {
	ann := NewAnnouncer(Options{})
	defer ann.Close(context.Background())
	missing := true
	p := NewProtocol(ann, func(_ context.Context, ref v1alpha1.SecretKeyRef) (string, error) {
		if missing {
			return "", fmt.Errorf("secret %q: %w", ref.Name, ErrNoPassword)
		}
		return "s3cret", nil
	})
	st := protocolState()
	st.BGPPeers[0].Generation = 4
	other := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}, Spec: v1alpha1.BGPPeerSpec{
		MyASN: 64513, PeerASN: 64512, PeerAddress: "192.0.2.2",
		NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "b"}}},
	}}
	st.BGPPeers = append(st.BGPPeers, other)
	if _, err := p.Announce(context.Background(), st); err == nil {
		t.Fatal("no error for the missing password")
	}
	got := p.Peers()
	if len(got) != 1 || got[0].Name != "router" || got[0].State != "idle" || got[0].Up || got[0].Generation != 4 || !strings.Contains(got[0].Problem, "no such Secret") {
		t.Fatalf("peers = %+v, want router idle with the password problem", got)
	}
	missing = false
	if _, err := p.Announce(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	got = p.Peers()
	if len(got) != 1 || got[0].Name != "router" || got[0].Problem != "" || got[0].State == "" {
		t.Fatalf("peers = %+v, want router without a problem", got)
	}
}

// TestProtocolInputServiceSelection: the Services' labels and their
// namespaces' reach Compute, so an advertisement's serviceSelectors pick
// among a pool's Services; one with an invalid selector is left out and
// reported.
func TestProtocolInputServiceSelection(t *testing.T) {
	p := NewProtocol(nil, func(context.Context, v1alpha1.SecretKeyRef) (string, error) { return "", nil })
	st := protocolState()
	st.Services[0].Object = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"tier": "edge"}}}
	st.NamespaceLabels = map[string]map[string]string{"ns": {"team": "a"}}
	st.BGPAdvertisements = []*v1alpha1.BGPAdvertisement{
		{ObjectMeta: metav1.ObjectMeta{Name: "edge"}, Spec: v1alpha1.BGPAdvertisementSpec{
			ServiceSelectors:   []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}},
			NamespaceSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"team": "a"}}},
			Communities:        []v1alpha1.Community{"65000:100"},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: v1alpha1.BGPAdvertisementSpec{
			ServiceSelectors: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Bogus"}}}},
		}},
	}
	in, problems := p.input(context.Background(), st)
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), `BGPAdvertisement "broken": serviceSelectors[0]`) {
		t.Errorf("problems = %v, want one about broken's serviceSelectors", problems)
	}
	if in.Services[0].Labels["tier"] != "edge" || in.Services[0].NamespaceLabels["team"] != "a" {
		t.Errorf("service = %+v, want its labels and its namespace's", in.Services[0])
	}
	paths := Compute(in).Paths["router"]
	if len(paths) != 1 || paths[0].String() != "198.51.100.7/32 communities=[65000:100]" {
		t.Errorf("paths = %v, want web's address alone with edge's community", paths)
	}
}
