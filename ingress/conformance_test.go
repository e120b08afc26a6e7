package ingress_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The conformance suite's load_balancing and ingress_class features
// (kubernetes-sigs/ingress-controller-conformance), against the real API
// server and the real proxy. The path, host and default-backend features
// are table tests of package route; all of them run end to end in the lab.

// load_balancing: a rule-less Ingress whose Service has 10 ready pods gets
// an address, and 100 requests all succeed and reach all 10 pods.
func TestConformanceLoadBalancing(t *testing.T) {
	needAPI(t)
	const ns = "load-balancing"
	makeNamespace(t, ns)
	publishService(t, "pub-lb", "192.0.2.30")
	svc := service(ns, "echo-service")
	svc.Spec.Ports[0].Port = 8080
	objs := []client.Object{svc}
	for i := range 10 {
		name := "pod-" + strconv.Itoa(i)
		_, port := backend(t, name)
		objs = append(objs, endpointSlice(t, ns, "echo-service-"+strconv.Itoa(i), "echo-service", port, true))
	}
	objs = append(objs, newIngress(ns, "load-balancing", ptr.To(className), networkingv1.IngressSpec{
		DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: "echo-service", Port: networkingv1.ServiceBackendPort{Number: 8080}}},
	}))
	create(t, objs...)
	in := startInstance(t, "lb-test", "pub-lb")
	eventually(t, 10*time.Second, "the Ingress shows its address", wantAddresses(t, ns, "load-balancing", "192.0.2.30"))
	eventually(t, 10*time.Second, "all 10 endpoints routed", func() error {
		u := in.srv.Config().Upstreams
		for target, up := range u {
			if target.Namespace == ns && len(up.Addrs) == 10 {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})

	pods := map[string]int{}
	for i := range 100 {
		code, body, err := get(in.plain, "load-balancing", "/")
		if err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
		pods[body]++
	}
	if len(pods) != 10 {
		t.Errorf("100 requests reached %d pods (%v), want all 10", len(pods), pods)
	}
}

// ingress_class: an Ingress naming a class that does not exist gets no
// address and no traffic.
func TestConformanceIngressClass(t *testing.T) {
	needAPI(t)
	const ns = "ingress-class"
	makeNamespace(t, ns)
	publishService(t, "pub-class", "192.0.2.40")
	_, port := backend(t, "ingress-class-prefix")
	rule := hostRule("ingress-class", prefixPath("/", serviceBackend("ingress-class-prefix", 8080, "")))
	svc := service(ns, "ingress-class-prefix")
	svc.Spec.Ports[0].Port = 8080
	invalid := newIngress(ns, "test-ingress-class", ptr.To("some-invalid-class-name"), networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule}})
	// A served Ingress in the same namespace shows when the controller has
	// caught up, so that the absence below means something.
	served := newIngress(ns, "served", ptr.To(className), networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
		hostRule("served", prefixPath("/", serviceBackend("ingress-class-prefix", 8080, "")))}})
	create(t, svc, endpointSlice(t, ns, "ingress-class-prefix-1", "ingress-class-prefix", port, true), invalid)
	create(t, served)

	in := startInstance(t, "class-test", "pub-class")
	eventually(t, 10*time.Second, "the served Ingress gets its address", wantAddresses(t, ns, "served", "192.0.2.40"))
	eventually(t, 5*time.Second, "the served Ingress routes", wantAnswer(in.plain, "served", "/", 200, "ingress-class-prefix"))
	if err := wantAddresses(t, ns, "test-ingress-class")(); err != nil {
		t.Error(err)
	}
	if err := wantAnswer(in.plain, "ingress-class", "/", 404, "")(); err != nil {
		t.Errorf("the other class's Ingress is routed: %v", err)
	}
}
