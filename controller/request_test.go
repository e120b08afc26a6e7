package controller

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/lbservice"
	"github.com/portico-lb/portico/pools"
)

func TestRequest(t *testing.T) {
	ip := netip.MustParseAddr
	cases := []struct {
		name    string
		ann     map[string]string
		lbIP    string
		fams    []corev1.IPFamily
		policy  corev1.IPFamilyPolicy
		etp     corev1.ServiceExternalTrafficPolicy
		want    func(r pools.Service) bool
		wantErr string
	}{
		{name: "plain", want: func(r pools.Service) bool {
			return r.Pool == "" && len(r.IPs) == 0 && r.SharingKey == "" && r.Policy == pools.SingleStack && !r.Local
		}},
		{name: "portico annotations", ann: map[string]string{lbservice.AnnotationPool: "p", lbservice.AnnotationIPs: "192.0.2.1, 2001:db8::1", lbservice.AnnotationSharing: "k"},
			want: func(r pools.Service) bool {
				return r.Pool == "p" && slices.Equal(r.IPs, []netip.Addr{ip("192.0.2.1"), ip("2001:db8::1")}) && r.SharingKey == "k"
			}},
		{name: "metallb.io spellings", ann: map[string]string{"metallb.io/address-pool": "p", "metallb.io/loadBalancerIPs": "192.0.2.1", "metallb.io/allow-shared-ip": "k"},
			want: func(r pools.Service) bool { return r.Pool == "p" && r.IPs[0] == ip("192.0.2.1") && r.SharingKey == "k" }},
		{name: "metallb.universe.tf spellings", ann: map[string]string{"metallb.universe.tf/address-pool": "p", "metallb.universe.tf/loadBalancerIPs": "192.0.2.1", "metallb.universe.tf/allow-shared-ip": "k"},
			want: func(r pools.Service) bool { return r.Pool == "p" && r.IPs[0] == ip("192.0.2.1") && r.SharingKey == "k" }},
		{name: "same value twice is fine", ann: map[string]string{lbservice.AnnotationPool: "p", "metallb.io/address-pool": "p"},
			want: func(r pools.Service) bool { return r.Pool == "p" }},
		{name: "spellings disagree", ann: map[string]string{lbservice.AnnotationPool: "p", "metallb.io/address-pool": "q"}, wantErr: "disagree"},
		{name: "typo", ann: map[string]string{"portico.dev/adress-pool": "p"}, wantErr: `unknown annotation "portico.dev/adress-pool"`},
		{name: "our own annotation is not a typo", ann: map[string]string{lbservice.AnnotationAllocatedFrom: "p"}, want: func(r pools.Service) bool { return true }},
		{name: "other prefixes ignored", ann: map[string]string{"example.com/anything": "x"}, want: func(r pools.Service) bool { return true }},
		{name: "bad ip", ann: map[string]string{lbservice.AnnotationIPs: "192.0.2.1,nope"}, wantErr: `"nope" is not an IP address`},
		{name: "zoned ip", ann: map[string]string{lbservice.AnnotationIPs: "fe80::1%eth0"}, wantErr: "is not an IP address"},
		{name: "empty ip list", ann: map[string]string{lbservice.AnnotationIPs: " , "}, wantErr: "no address given"},
		{name: "spec.loadBalancerIP", lbIP: "192.0.2.5", want: func(r pools.Service) bool { return slices.Equal(r.IPs, []netip.Addr{ip("192.0.2.5")}) }},
		{name: "spec.loadBalancerIP bad", lbIP: "192.0.2.500", wantErr: "spec.loadBalancerIP"},
		{name: "spec.loadBalancerIP agrees", lbIP: "192.0.2.5", ann: map[string]string{lbservice.AnnotationIPs: "192.0.2.5"}, want: func(r pools.Service) bool { return len(r.IPs) == 1 }},
		{name: "spec.loadBalancerIP disagrees", lbIP: "192.0.2.6", ann: map[string]string{lbservice.AnnotationIPs: "192.0.2.5"}, wantErr: "disagrees"},
		{name: "dual stack", fams: []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}, policy: corev1.IPFamilyPolicyRequireDualStack,
			want: func(r pools.Service) bool {
				return r.Policy == pools.RequireDualStack && slices.Equal(r.Families, []pools.Family{pools.IPv6, pools.IPv4})
			}},
		{name: "prefer dual stack", fams: []corev1.IPFamily{corev1.IPv4Protocol}, policy: corev1.IPFamilyPolicyPreferDualStack,
			want: func(r pools.Service) bool { return r.Policy == pools.PreferDualStack }},
		{name: "local", etp: corev1.ServiceExternalTrafficPolicyLocal, want: func(r pools.Service) bool { return r.Local && r.Selector == "app=web,tier=front" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Annotations: c.ann},
				Spec: corev1.ServiceSpec{
					Type: corev1.ServiceTypeLoadBalancer, LoadBalancerIP: c.lbIP, IPFamilies: c.fams,
					ExternalTrafficPolicy: c.etp,
					Selector:              map[string]string{"tier": "front", "app": "web"},
					Ports:                 []corev1.ServicePort{{Port: 80}, {Port: 53, Protocol: corev1.ProtocolUDP}},
				},
			}
			if c.policy != "" {
				svc.Spec.IPFamilyPolicy = &c.policy
			}
			r, err := Request(svc, nil, false)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error = %v, want it to say %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Key != "ns/web" || !slices.Equal(r.Ports, []pools.Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}}) {
				t.Fatalf("key/ports wrong: %+v", r)
			}
			if !c.want(r) {
				t.Fatalf("request %+v", r)
			}
		})
	}
}

func TestHumanCount(t *testing.T) {
	cases := []struct {
		v4, v6 uint64
		want   string
	}{
		{0, 0, "0"},
		{254, 0, "254"},
		{254, 10, "264"},
		{0, 1 << 40, "1.10e+12"},
		{10, ^uint64(0), "1.84e+19"},
	}
	for _, c := range cases {
		if got := humanCount(c.v4, c.v6); got != c.want {
			t.Errorf("humanCount(%d, %d) = %q, want %q", c.v4, c.v6, got, c.want)
		}
	}
}
