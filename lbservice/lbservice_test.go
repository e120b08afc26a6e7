package lbservice

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestOurs(t *testing.T) {
	for _, c := range []struct {
		typ          corev1.ServiceType
		class        *string
		want         bool
		wantRequired bool // with RequireClass
	}{
		{corev1.ServiceTypeLoadBalancer, nil, true, false},
		{corev1.ServiceTypeLoadBalancer, ptr.To(Class), true, true},
		{corev1.ServiceTypeLoadBalancer, ptr.To("example.com/other"), false, false},
		{corev1.ServiceTypeLoadBalancer, ptr.To(""), false, false},
		{corev1.ServiceTypeClusterIP, nil, false, false},
		{corev1.ServiceTypeNodePort, ptr.To(Class), false, false},
		{"", nil, false, false},
	} {
		svc := &corev1.Service{Spec: corev1.ServiceSpec{Type: c.typ, LoadBalancerClass: c.class}}
		if got := Ours(svc); got != c.want {
			t.Errorf("Ours(type %q, class %v) = %v, want %v", c.typ, ptr.Deref(c.class, "<nil>"), got, c.want)
		}
		if got := (Classes{}).Ours(svc); got != c.want {
			t.Errorf("Classes{}.Ours(type %q, class %v) = %v, want %v", c.typ, ptr.Deref(c.class, "<nil>"), got, c.want)
		}
		if got := (Classes{RequireClass: true}).Ours(svc); got != c.wantRequired {
			t.Errorf("Classes{RequireClass}.Ours(type %q, class %v) = %v, want %v", c.typ, ptr.Deref(c.class, "<nil>"), got, c.wantRequired)
		}
	}
}

func TestRequestAnnotation(t *testing.T) {
	for _, c := range []struct {
		key, want string
		ok        bool
	}{
		{"portico.dev/address-pool", AnnotationPool, true},
		{"portico.dev/load-balancer-ips", AnnotationIPs, true},
		{"portico.dev/allow-shared-ip", AnnotationSharing, true},
		{"metallb.io/address-pool", AnnotationPool, true},
		{"metallb.io/loadBalancerIPs", AnnotationIPs, true},
		{"metallb.io/allow-shared-ip", AnnotationSharing, true},
		{"metallb.universe.tf/address-pool", AnnotationPool, true},
		{"metallb.universe.tf/loadBalancerIPs", AnnotationIPs, true},
		{"metallb.universe.tf/allow-shared-ip", AnnotationSharing, true},
		// Written by the controller, not a request.
		{AnnotationAllocatedFrom, "", false},
		// Spellings that are not accepted.
		{"portico.dev/loadBalancerIPs", "", false},
		{"metallb.io/load-balancer-ips", "", false},
		{"metallb.universe.tf/ip-allocated-from-pool", "", false},
		{"example.com/address-pool", "", false},
		{"", "", false},
	} {
		got, ok := RequestAnnotation(c.key)
		if got != c.want || ok != c.ok {
			t.Errorf("RequestAnnotation(%q) = %q, %v; want %q, %v", c.key, got, ok, c.want, c.ok)
		}
	}
}

func TestUnknown(t *testing.T) {
	for _, c := range []struct {
		key  string
		want bool
	}{
		{AnnotationPool, false},
		{AnnotationIPs, false},
		{AnnotationSharing, false},
		{AnnotationAllocatedFrom, false},
		{"portico.dev/adress-pool", true},
		{"portico.dev/loadBalancerIPs", true},
		{"portico.dev/", true},
		// Other prefixes are not Portico's to judge.
		{"metallb.io/adress-pool", false},
		{"metallb.universe.tf/address-pool", false},
		{"example.com/anything", false},
		{"", false},
	} {
		if got := Unknown(c.key); got != c.want {
			t.Errorf("Unknown(%q) = %v, want %v", c.key, got, c.want)
		}
	}
}

func TestExcluded(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		want   bool
	}{
		{nil, false},
		{map[string]string{}, false},
		{map[string]string{"node.kubernetes.io/exclude-from-external-load-balancers": ""}, true},
		{map[string]string{"node.kubernetes.io/exclude-from-external-load-balancers": "false"}, true},
		{map[string]string{"node.kubernetes.io/exclude-disruption": ""}, false},
	} {
		if got := Excluded(c.labels); got != c.want {
			t.Errorf("Excluded(%v) = %v, want %v", c.labels, got, c.want)
		}
	}
}
