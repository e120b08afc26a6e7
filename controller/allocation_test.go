package controller_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controller"
	"github.com/portico-lb/portico/lbservice"
)

func TestAllocatesFromPool(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "lan", []string{"192.0.2.10-192.0.2.19"})
	svc := makeService(t, "web")
	// 192.0.2.10, the default pool's first address, waits for the ingress.
	waitIPs(t, svc, "192.0.2.11")

	var cur corev1.Service
	if err := apiClient.Get(context.Background(), client.ObjectKeyFromObject(svc), &cur); err != nil {
		t.Fatal(err)
	}
	ing := cur.Status.LoadBalancer.Ingress[0]
	if ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode = %v, want VIP", ing.IPMode)
	}
	// The annotation is a write of its own, after the status: wait for it.
	waitUntil(t, "allocated-from-pool annotation", func() (bool, string) {
		if err := apiClient.Get(context.Background(), client.ObjectKeyFromObject(svc), &cur); err != nil {
			return false, err.Error()
		}
		got := cur.Annotations[lbservice.AnnotationAllocatedFrom]
		return got == "lan", "allocated-from-pool = " + strconv.Quote(got) + ", want lan"
	})
	waitEvent(t, &cur, controller.ReasonAllocated, "192.0.2.11", `"lan"`)

	// The pool counts it.
	waitUntil(t, "pool status counts", func() (bool, string) {
		p := getPool(t, "lan")
		st := p.Status
		ok := st.AssignedIPv4 == 1 && st.AvailableIPv4 == 8 && st.Used == 1 && st.Free == "8" &&
			meta.IsStatusConditionTrue(st.Conditions, v1alpha1.PoolReady) &&
			meta.IsStatusConditionFalse(st.Conditions, v1alpha1.PoolConflict)
		return ok, st.Free
	})
}

func TestRequestedAddress(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "lan", []string{"192.0.2.0/28"})
	makePool(t, "v6", []string{"2001:db8::/64"}, notAuto)

	cases := []struct {
		name string
		opts []svcOpt
		want string
	}{
		{"portico-annotation", []svcOpt{annotate(lbservice.AnnotationIPs, "192.0.2.7")}, "192.0.2.7"},
		{"metallb-io", []svcOpt{annotate("metallb.io/loadBalancerIPs", "192.0.2.8")}, "192.0.2.8"},
		{"metallb-universe", []svcOpt{annotate("metallb.universe.tf/loadBalancerIPs", "192.0.2.9")}, "192.0.2.9"},
		{"spec-field", []svcOpt{func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.11" }}, "192.0.2.11"},
		{"in-manual-pool", []svcOpt{annotate(lbservice.AnnotationIPs, "2001:db8::53"), dualStack(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)}, "2001:db8::53"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			waitIPs(t, makeService(t, c.name, c.opts...), c.want)
		})
	}

	bad := []struct {
		name string
		opts []svcOpt
		frag []string
	}{
		{"outside-pools", []svcOpt{annotate(lbservice.AnnotationIPs, "198.51.100.1")}, []string{"198.51.100.1", "not in any address pool"}},
		{"in-use", []svcOpt{annotate(lbservice.AnnotationIPs, "192.0.2.7")}, []string{"192.0.2.7", "default/portico-annotation"}},
		{"not-an-ip", []svcOpt{annotate(lbservice.AnnotationIPs, "192.0.2.300")}, []string{"192.0.2.300", "not an IP address"}},
		{"typo-annotation", []svcOpt{annotate("portico.dev/adress-pool", "lan")}, []string{"unknown annotation", "portico.dev/adress-pool"}},
		{"disagreeing", []svcOpt{annotate(lbservice.AnnotationPool, "lan"), annotate("metallb.io/address-pool", "v6")}, []string{"disagree"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			s := makeService(t, c.name, c.opts...)
			waitEvent(t, s, controller.ReasonAllocationFailed, c.frag...)
			if got := ips(t, s); len(got) != 0 {
				t.Fatalf("got %v, want no address", got)
			}
		})
	}
}

func TestRequestedPool(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "auto", []string{"192.0.2.0/28"})
	makePool(t, "manual", []string{"198.51.100.0/28"}, notAuto)
	makePool(t, "team-a-only", []string{"203.0.113.0/28"}, notAuto, namespaces("team-a"))

	waitIPs(t, makeService(t, "plain"), "192.0.2.1") // .0 is the ingress's
	waitIPs(t, makeService(t, "manual", annotate(lbservice.AnnotationPool, "manual")), "198.51.100.0")
	waitIPs(t, makeService(t, "old-spelling", annotate("metallb.universe.tf/address-pool", "manual")), "198.51.100.1")
	waitIPs(t, makeService(t, "team-a", namespace("team-a"), annotate(lbservice.AnnotationPool, "team-a-only")), "203.0.113.0")

	s := makeService(t, "unknown", annotate(lbservice.AnnotationPool, "nope"))
	waitEvent(t, s, controller.ReasonAllocationFailed, `"nope"`, "does not exist")
	// A second, different reason shows too: not merged into the first.
	updateService(t, s, func(s *corev1.Service) { s.Annotations[lbservice.AnnotationPool] = "nope-either" })
	waitEvent(t, s, controller.ReasonAllocationFailed, `"nope-either"`, "does not exist")
	s = makeService(t, "wrong-namespace", annotate(lbservice.AnnotationPool, "team-a-only"))
	waitEvent(t, s, controller.ReasonAllocationFailed, "team-a-only")
	if got := ips(t, s); len(got) != 0 {
		t.Fatalf("service outside the pool's namespaces got %v", got)
	}
}

func TestPriorityAndSelectors(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "z-plain", []string{"192.0.2.0/28"})
	makePool(t, "b-second", []string{"198.51.100.0/28"}, priority(2))
	makePool(t, "a-first-team-b", []string{"203.0.113.0/28"}, priority(1), func(p *v1alpha1.AddressPool) {
		p.Spec.ServiceAllocation.NamespaceSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"team": "team-b"}}}
	})
	makePool(t, "c-labelled", []string{"203.0.113.64/28"}, priority(1), func(p *v1alpha1.AddressPool) {
		p.Spec.ServiceAllocation.ServiceSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
	})
	waitIPs(t, makeService(t, "any"), "198.51.100.0")
	// a-first-team-b is the default pool (best priority, then name): its
	// first address waits for the ingress.
	waitIPs(t, makeService(t, "team-b", namespace("team-b")), "203.0.113.1")
	waitIPs(t, makeService(t, "edge", labels("tier", "edge")), "203.0.113.64")
}

func TestSharing(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "lan", []string{"192.0.2.0/28"}) // 192.0.2.0 waits for the ingress
	key := lbservice.AnnotationSharing
	http := makeService(t, "http", annotate(key, "front"), ports(80))
	waitIPs(t, http, "192.0.2.1")
	waitIPs(t, makeService(t, "https", annotate(key, "front"), ports(443)), "192.0.2.1")
	waitIPs(t, makeService(t, "dns-udp", annotate("metallb.io/allow-shared-ip", "front"), ports(80), udp), "192.0.2.1")

	// Refused: a port clash on the requested address.
	clash := makeService(t, "clash", annotate(key, "front"), ports(443), annotate(lbservice.AnnotationIPs, "192.0.2.1"))
	waitEvent(t, clash, controller.ReasonAllocationFailed, "192.0.2.1")
	// Refused: another key.
	other := makeService(t, "other-key", annotate(key, "back"), ports(8080), annotate(lbservice.AnnotationIPs, "192.0.2.1"))
	waitEvent(t, other, controller.ReasonAllocationFailed, "192.0.2.1")
	// Refused: Local never shares with Cluster.
	loc := makeService(t, "local", annotate(key, "front"), ports(8443), local, annotate(lbservice.AnnotationIPs, "192.0.2.1"))
	waitEvent(t, loc, controller.ReasonAllocationFailed, "192.0.2.1")
	for _, s := range []*corev1.Service{clash, other, loc} {
		if got := ips(t, s); len(got) != 0 {
			t.Errorf("%s got %v, want none", s.Name, got)
		}
	}
	// Without a requested address, a clashing Service gets its own.
	waitIPs(t, makeService(t, "clash-auto", annotate(key, "front"), ports(443)), "192.0.2.2")

	// Local Services share only with the same selector.
	l1 := makeService(t, "local-1", annotate(key, "loc"), ports(80), local, selector("app", "x"))
	first := waitAnyIP(t, l1)
	waitIPs(t, makeService(t, "local-2", annotate(key, "loc"), ports(81), local, selector("app", "x")), first...)
	l3 := makeService(t, "local-3", annotate(key, "loc"), ports(82), local, selector("app", "y"))
	if got := waitAnyIP(t, l3); got[0] == first[0] {
		t.Fatalf("Local services with different selectors share %v", got)
	}

	// The address stays held until its last holder goes.
	deleteObject(t, http)
	waitUntil(t, "shared address still counted", func() (bool, string) {
		p := getPool(t, "lan")
		return p.Status.AssignedIPv4 == 4, p.Status.Free
	})
}

func TestLoadBalancerClass(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "lan", []string{"192.0.2.0/28"})
	foreign := makeService(t, "foreign", class("example.com/other"))
	ours := makeService(t, "ours", class(lbservice.Class))
	waitIPs(t, ours, "192.0.2.1")
	plain := makeService(t, "plain")
	waitIPs(t, plain, "192.0.2.2")
	if got := ips(t, foreign); len(got) != 0 {
		t.Fatalf("service of another class got %v", got)
	}
	noEvent(t, foreign, controller.ReasonAllocationFailed)
	noEvent(t, foreign, controller.ReasonAllocated)
}

// With RequireClass (--require-class) the controller serves only Services
// of our class: class-less ones, and the addresses another load balancer
// (MetalLB, during a move) wrote into their status, are left alone, and a
// Service that moves over keeps its address through MetalLB's annotation.
func TestRequireClass(t *testing.T) {
	runControllerWith(t, false, controller.Options{IngressService: ingressKey, Classes: lbservice.Classes{RequireClass: true}})
	cleanup(t)
	makePool(t, "lan", []string{"192.0.2.0/28"})
	plain := makeService(t, "plain")
	// What MetalLB would have written.
	plain.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.9"}}
	if err := apiClient.Status().Update(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	moved := makeService(t, "moved", class(lbservice.Class), annotate("metallb.io/loadBalancerIPs", "192.0.2.7"))
	waitIPs(t, moved, "192.0.2.7")
	ours := makeService(t, "ours", class(lbservice.Class))
	waitIPs(t, ours, "192.0.2.1")
	if got := ips(t, plain); !slices.Equal(got, []string{"192.0.2.9"}) {
		t.Fatalf("class-less service's status is %v, want MetalLB's 192.0.2.9 untouched", got)
	}
	var got corev1.Service
	if err := apiClient.Get(context.Background(), client.ObjectKeyFromObject(plain), &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Annotations[lbservice.AnnotationAllocatedFrom]; ok {
		t.Fatalf("class-less service was annotated %s", lbservice.AnnotationAllocatedFrom)
	}
	noEvent(t, plain, controller.ReasonAllocationFailed)
	noEvent(t, plain, controller.ReasonAllocated)
	noEvent(t, plain, controller.ReasonReleased)
}

func TestReleasePaths(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "lan", []string{"192.0.2.0-192.0.2.2"}) // .0 waits for the ingress
	deleted := makeService(t, "deleted")
	waitIPs(t, deleted, "192.0.2.1")
	retyped := makeService(t, "retyped")
	waitIPs(t, retyped, "192.0.2.2")

	// Type change: status and annotation cleared, Event, address free.
	updateService(t, retyped, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
	waitIPs(t, retyped)
	waitEvent(t, retyped, controller.ReasonReleased, "192.0.2.2", "no longer of type LoadBalancer")
	var cur corev1.Service
	_ = apiClient.Get(context.Background(), client.ObjectKeyFromObject(retyped), &cur)
	if _, ok := cur.Annotations[lbservice.AnnotationAllocatedFrom]; ok {
		t.Errorf("allocated-from-pool annotation left on a ClusterIP service")
	}

	// Delete: the address is free for the next Service.
	deleteObject(t, deleted)
	next := makeService(t, "next")
	got := waitAnyIP(t, next)
	if got[0] != "192.0.2.1" && got[0] != "192.0.2.2" {
		t.Fatalf("next got %v, want a freed address", got)
	}

	// Class change. The API server makes loadBalancerClass immutable on a
	// LoadBalancer, so a user goes through another type, often in quick
	// succession; whichever state the controller sees, the address goes.
	moved := makeService(t, "moved", class(lbservice.Class))
	movedIPs := waitAnyIP(t, moved)
	updateService(t, moved, func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.LoadBalancerClass = nil
		s.Spec.AllocateLoadBalancerNodePorts = nil
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
	})
	updateService(t, moved, func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.LoadBalancerClass = ptr.To("example.com/other")
	})
	waitIPs(t, moved)
	waitEvent(t, moved, controller.ReasonReleased, movedIPs[0])
	noEvent(t, moved, controller.ReasonAllocationFailed)
}

func TestExhaustionAndRecovery(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "tiny", []string{"192.0.2.0-192.0.2.2"}) // two, and .0 for the ingress
	a := makeService(t, "a")
	b := makeService(t, "b")
	waitAnyIP(t, a)
	waitAnyIP(t, b)
	c := makeService(t, "c")
	waitEvent(t, c, controller.ReasonAllocationFailed, "tiny")
	if got := ips(t, c); len(got) != 0 {
		t.Fatalf("c got %v from an exhausted pool", got)
	}
	freed := ips(t, a)
	deleteObject(t, a)
	waitIPs(t, c, freed...)
}

func TestOverlappingPools(t *testing.T) {
	runController(t, false)
	cleanup(t)
	// Named so that the name tie-break would pick the wrong one: age wins.
	older := makePool(t, "zz-older", []string{"192.0.2.0/29"})
	time.Sleep(1100 * time.Millisecond) // creation timestamps have 1 s resolution
	makePool(t, "newer", []string{"192.0.2.4-192.0.2.20"})
	waitUntil(t, "newer in conflict", func() (bool, string) {
		p := getPool(t, "newer")
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolConflict)
		r := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolReady)
		return c != nil && c.Status == "True" && r != nil && r.Status == "False", fmtConds(p)
	})
	waitEvent(t, getPool(t, "newer"), v1alpha1.PoolConflict, "zz-older")
	if p := getPool(t, "zz-older"); !meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.PoolReady) {
		t.Fatalf("older pool not ready: %s", fmtConds(p))
	}
	// The conflicting pool is not used even when asked for.
	s := makeService(t, "wants-newer", annotate(lbservice.AnnotationPool, "newer"))
	waitEvent(t, s, controller.ReasonAllocationFailed, "newer")

	// Removing the older pool resolves the conflict.
	deleteObject(t, older)
	waitUntil(t, "newer ready", func() (bool, string) {
		p := getPool(t, "newer")
		return meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.PoolReady), fmtConds(p)
	})
	// newer is now the default pool: its first address waits for the ingress.
	waitIPs(t, s, "192.0.2.5")
}

func TestIngressGetsFirstAddress(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "default", []string{"192.0.2.0/28"}, avoidBuggy)
	var early []*corev1.Service
	for _, n := range []string{"one", "two", "three"} {
		s := makeService(t, n)
		early = append(early, s)
	}
	for _, s := range early {
		if got := waitAnyIP(t, s); got[0] == "192.0.2.1" {
			t.Fatalf("%s got the ingress's reserved address", s.Name)
		}
	}
	ing := makeService(t, ingressKey.Name, namespace(ingressKey.Namespace), ports(80, 443))
	waitIPs(t, ing, "192.0.2.1")
}

func TestAddressLeavesEveryPool(t *testing.T) {
	runController(t, false)
	cleanup(t)
	pool := makePool(t, "lan", []string{"192.0.2.0/29"})
	s := makeService(t, "web")
	waitIPs(t, s, "192.0.2.1")
	// An unrelated edit moves nothing.
	makePool(t, "other", []string{"198.51.100.0/29"})
	update(t, pool, func(p *v1alpha1.AddressPool) { p.Spec.Addresses = append(p.Spec.Addresses, "192.0.2.64/29") })
	waitUntil(t, "pool edit seen", func() (bool, string) {
		p := getPool(t, pool.Name)
		return p.Status.ObservedGeneration == p.Generation, ""
	})
	waitIPs(t, s, "192.0.2.1")
	// Now the address leaves every pool: replaced, with a Warning.
	update(t, pool, func(p *v1alpha1.AddressPool) { p.Spec.Addresses = []v1alpha1.AddressRange{"192.0.2.64/29"} })
	waitIPs(t, s, "192.0.2.65")
	waitEvent(t, s, controller.ReasonReleased, "192.0.2.1", "left every usable address pool", "192.0.2.65")
}

func TestDualStack(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "dual", []string{"192.0.2.0/28", "2001:db8::/64"})
	makePool(t, "v4only", []string{"198.51.100.0/28"}, notAuto)
	waitIPs(t, makeService(t, "require", dualStack(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)), "192.0.2.1", "2001:db8::1") // the first of each waits for the ingress
	waitIPs(t, makeService(t, "prefer-v6-first", dualStack(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol)), "2001:db8::2", "192.0.2.2")
	waitIPs(t, makeService(t, "single-v6", dualStack(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)), "2001:db8::3")
	waitIPs(t, makeService(t, "prefer-from-v4-pool", annotate(lbservice.AnnotationPool, "v4only"), dualStack(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)), "198.51.100.0")
	s := makeService(t, "require-from-v4-pool", annotate(lbservice.AnnotationPool, "v4only"), dualStack(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	waitEvent(t, s, controller.ReasonAllocationFailed, "v4only")
	waitUntil(t, "v6 counters", func() (bool, string) {
		p := getPool(t, "dual")
		return p.Status.AssignedIPv6 == 3 && p.Status.AssignedIPv4 == 2 && p.Status.AvailableIPv6 > 1<<62, fmtConds(p)
	})
	// Requested dual-stack addresses.
	waitIPs(t, makeService(t, "asked-dual", annotate(lbservice.AnnotationIPs, "192.0.2.9,2001:db8::9"),
		dualStack(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)), "192.0.2.9", "2001:db8::9")
}

func fmtConds(p *v1alpha1.AddressPool) string {
	s := ""
	for _, c := range p.Status.Conditions {
		s += c.Type + "=" + string(c.Status) + " (" + c.Message + ") "
	}
	return s
}

// TestReversedIPv6Range: the one malformed pool admission cannot catch is
// reported on the pool and never used.
func TestReversedIPv6Range(t *testing.T) {
	runController(t, false)
	cleanup(t)
	makePool(t, "backwards", []string{"2001:db8::ff-2001:db8::1"})
	waitUntil(t, "pool marked invalid", func() (bool, string) {
		p := getPool(t, "backwards")
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.PoolReady)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "InvalidAddresses" &&
			strings.Contains(c.Message, "2001:db8::ff-2001:db8::1"), fmtConds(p)
	})
	waitEvent(t, getPool(t, "backwards"), "InvalidAddresses", "2001:db8::ff-2001:db8::1")
	s := makeService(t, "v6", dualStack(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	waitEvent(t, s, controller.ReasonAllocationFailed)
}
