package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestServiceAnnouncementName(t *testing.T) {
	long := strings.Repeat("n", 250)
	for _, tc := range []struct {
		service, node, protocol string
		want                    string // "" for a hashed name
	}{
		{"web", "node-1", ProtocolLayer2, "web-node-1-layer2"},
		{"web", "node-1.example.com", ProtocolBGP, "web-node-1.example.com-bgp"},
		{"web", long, ProtocolLayer2, ""},
		{"web", long + "x", ProtocolLayer2, ""},
		{"web", "Node_1", ProtocolLayer2, ""},
	} {
		got := ServiceAnnouncementName(tc.service, tc.node, tc.protocol)
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("%s/%s/%s: %q is not a valid name: %v", tc.service, tc.node, tc.protocol, got, errs)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("%s/%s/%s: %q, want %q", tc.service, tc.node, tc.protocol, got, tc.want)
		}
		if tc.want == "" && !strings.HasPrefix(got, "web-") {
			t.Errorf("%s/%s/%s: %q does not start with the Service's name", tc.service, tc.node, tc.protocol, got)
		}
	}
	// Long names that differ only past the cut still differ.
	a := ServiceAnnouncementName("web", long, ProtocolLayer2)
	b := ServiceAnnouncementName("web", long+"x", ProtocolLayer2)
	c := ServiceAnnouncementName("web", long, ProtocolBGP)
	if a == b || a == c {
		t.Errorf("names collide: %q %q %q", a, b, c)
	}
}
