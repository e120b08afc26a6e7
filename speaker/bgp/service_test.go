package bgp

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServiceFromAPI(t *testing.T) {
	str := func(s string) *string { return &s }
	yes, no := true, false
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{IP: "198.51.100.10"}, {IP: "2001:db8::10"}, {Hostname: "lb.example"}, {IP: "::ffff:198.51.100.11"},
		}}},
	}
	eps := []*discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{
			{NodeName: str("ready"), Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
			{NodeName: str("unknown")},
			{NodeName: str("notready"), Conditions: discoveryv1.EndpointConditions{Ready: &no}},
			{Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
		}},
		{Endpoints: []discoveryv1.Endpoint{
			{NodeName: str("other"), Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
			{NodeName: str("notready"), Conditions: discoveryv1.EndpointConditions{Ready: &no}},
		}},
	}
	got := ServiceFromAPI(svc, "public", eps)
	wantIPs := []netip.Addr{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("198.51.100.11")}
	if got.Name != "ns/web" || got.Pool != "public" || !got.LocalTraffic || !slices.Equal(got.IPs, wantIPs) {
		t.Errorf("got %+v", got)
	}
	for node, want := range map[string]bool{"ready": true, "unknown": true, "other": true, "notready": false, "": false} {
		if got.ReadyNodes[node] != want {
			t.Errorf("ReadyNodes[%q] = %v, want %v", node, got.ReadyNodes[node], want)
		}
	}
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	if ServiceFromAPI(svc, "public", nil).LocalTraffic {
		t.Error("Cluster policy read as Local")
	}
}
