package pools

import (
	"errors"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

// scenario: set the pools, allocate the services in before (which must
// succeed), then allocate svc and compare.
type scenario struct {
	name   string
	pools  []Pool
	before []Service
	svc    Service
	want   []string // the IPs on success
	pool   string   // the pool on success
	reason Reason   // on failure
	err    string   // on failure, the exact message
}

func runScenarios(t *testing.T, cases []scenario) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := New()
			a.SetPools(tc.pools)
			for _, b := range tc.before {
				if _, err := a.Allocate(b); err != nil {
					t.Fatalf("before: Allocate(%s): %v", b.Key, err)
				}
			}
			got, err := a.Allocate(tc.svc)
			checkInvariants(t, a)
			if tc.err != "" {
				checkErr(t, "Allocate", err, tc.reason, tc.err)
				if _, ok := a.Lookup(tc.svc.Key); ok || got.IPs != nil {
					t.Fatalf("a failed Allocate assigned %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			if !slices.Equal(got.IPs, ips(tc.want...)) || tc.pool != "" && got.Pool != tc.pool {
				t.Fatalf("Allocate = %v from %q, want %v from %q", got.IPs, got.Pool, tc.want, tc.pool)
			}
			if again, err := a.Allocate(tc.svc); err != nil || !slices.Equal(again.IPs, got.IPs) || again.Pool != got.Pool {
				t.Fatalf("Allocate again = %v %v, want the same %v", again, err, got)
			}
		})
	}
}

func TestPoolChoice(t *testing.T) {
	restricted := pool("a", "10.0.0.0/30")
	restricted.Namespaces = []string{"x"}
	restricted.Priority = 1
	blueNamespaces := pool("a", "10.0.0.0/30")
	blueNamespaces.NamespaceSelectors = []Selector{hasLabel("team", "red"), hasLabel("team", "blue")}
	webServices := pool("a", "10.0.0.0/30")
	webServices.ServiceSelectors = []Selector{hasLabel("app", "web")}
	runScenarios(t, []scenario{{
		name:  "lowest free address of the default pool skips the ingress address",
		pools: []Pool{pool("a", "10.0.0.0/30")},
		svc:   svc("ns/s"),
		want:  []string{"10.0.0.1"}, pool: "a",
	}, {
		name:  "a pool without autoAssign is not used automatically",
		pools: []Pool{manual(pool("a", "10.0.0.0/30")), pool("b", "10.1.0.0/30")},
		svc:   svc("ns/s"),
		want:  []string{"10.1.0.1"}, pool: "b",
	}, {
		name:  "a pool without autoAssign serves a Service naming it",
		pools: []Pool{manual(pool("a", "10.0.0.0/30")), pool("b", "10.1.0.0/30")},
		svc:   svc("ns/s", fromPool("a")),
		want:  []string{"10.0.0.0"}, pool: "a",
	}, {
		name:  "a pool without autoAssign serves a Service asking for one of its IPs",
		pools: []Pool{manual(pool("a", "10.0.0.0/30")), pool("b", "10.1.0.0/30")},
		svc:   svc("ns/s", wanting("10.0.0.2")),
		want:  []string{"10.0.0.2"}, pool: "a",
	}, {
		name:   "no pool has autoAssign",
		pools:  []Pool{manual(pool("a", "10.0.0.0/30"))},
		svc:    svc("ns/s"),
		reason: UnknownPool,
		err:    "no usable address pool has autoAssign enabled; create one, or name a pool for this Service",
	}, {
		name:   "no pools at all",
		svc:    svc("ns/s"),
		reason: UnknownPool,
		err:    "no usable address pool has autoAssign enabled; create one, or name a pool for this Service",
	}, {
		name: "priority first, unset last, then names",
		pools: []Pool{
			pool("c", "10.3.0.0/31"), priority(2, pool("b", "10.2.0.0/31")),
			pool("a", "10.1.0.0/31"), priority(1, pool("d", "10.4.0.0/31")),
		},
		before: []Service{svc("ns/1"), svc("ns/2"), svc("ns/3"), svc("ns/4")},
		svc:    svc("ns/5"),
		want:   []string{"10.1.0.1"}, pool: "a", // d .1, b .0 .1, a .0, a .1
	}, {
		name:   "priority: exhausted everywhere",
		pools:  []Pool{pool("c", "10.3.0.0/32"), priority(2, pool("b", "10.2.0.0/32")), priority(1, pool("d", "10.4.0.0/31"))},
		before: []Service{svc("ns/1"), svc("ns/2"), svc("ns/3")},
		svc:    svc("ns/4"),
		reason: Exhausted,
		err:    `no address pool has a free IPv4 address for this Service (pools tried: "d", "b", "c")`,
	}, {
		name:  "namespaces: another namespace skips the pool",
		pools: []Pool{restricted, pool("b", "10.1.0.0/30")},
		svc:   svc("y/s"),
		want:  []string{"10.1.0.0"}, pool: "b",
	}, {
		name:  "namespaces: a listed namespace uses the pool",
		pools: []Pool{restricted, pool("b", "10.1.0.0/30")},
		svc:   svc("x/s"),
		want:  []string{"10.0.0.1"}, pool: "a",
	}, {
		name:   "namespaces apply to a requested pool",
		pools:  []Pool{restricted, pool("b", "10.1.0.0/30")},
		svc:    svc("y/s", fromPool("a")),
		reason: NotAllowed,
		err:    `address pool "a" only serves the namespaces "x"; this Service is in namespace "y"`,
	}, {
		name:   "namespaces apply to a requested IP",
		pools:  []Pool{restricted, pool("b", "10.1.0.0/30")},
		svc:    svc("y/s", wanting("10.0.0.2")),
		reason: NotAllowed,
		err:    `address pool "a" only serves the namespaces "x"; this Service is in namespace "y"`,
	}, {
		name:   "no auto-assign pool admits the Service",
		pools:  []Pool{restricted},
		svc:    svc("y/s"),
		reason: NotAllowed,
		err:    `no address pool with autoAssign serves this Service: address pool "a" only serves the namespaces "x"; this Service is in namespace "y"`,
	}, {
		name:  "namespace selectors: one matching selector is enough",
		pools: []Pool{blueNamespaces},
		svc:   svc("y/s", nsLabels(map[string]string{"team": "blue"})),
		want:  []string{"10.0.0.1"},
	}, {
		name:   "namespace selectors: no match",
		pools:  []Pool{blueNamespaces},
		svc:    svc("y/s", fromPool("a"), nsLabels(map[string]string{"team": "green"})),
		reason: NotAllowed,
		err:    `address pool "a" only serves namespaces matching its namespaceSelectors, and the labels of namespace "y" do not match`,
	}, {
		name:  "service selectors: match",
		pools: []Pool{webServices},
		svc:   svc("y/s", labels(map[string]string{"app": "web"})),
		want:  []string{"10.0.0.1"},
	}, {
		name:   "service selectors: no match",
		pools:  []Pool{webServices},
		svc:    svc("y/s", wanting("10.0.0.2"), labels(map[string]string{"app": "db"})),
		reason: NotAllowed,
		err:    `address pool "a" only serves Services matching its serviceSelectors, and this Service's labels do not match`,
	}, {
		name:   "a nil Service key",
		pools:  []Pool{pool("a", "10.0.0.0/30")},
		svc:    svc(""),
		reason: BadRequest,
		err:    "the Service has no key",
	}})
}

func TestAvoidBuggyIPs(t *testing.T) {
	a := newAllocator(t, priority(1, pool("d", "192.168.0.0/30")), avoiding(pool("a", "10.0.0.253-10.0.1.2")),
		avoiding(pool("six", "2001:db8::/127")))
	if got := a.Counters("a")[IPv4]; got != (Counts{0, 4}) {
		t.Fatalf("Counters = %+v, want 4 available", got)
	}
	for _, want := range []string{"10.0.0.253", "10.0.0.254", "10.0.1.1", "10.0.1.2"} {
		mustAllocate(t, a, svc("ns/"+want, fromPool("a")), want)
	}
	failAllocate(t, a, svc("ns/full", fromPool("a")), Exhausted, `address pool "a" is exhausted: no free IPv4 address is left`)
	for _, ip := range []string{"10.0.0.255", "10.0.1.0"} {
		failAllocate(t, a, svc("ns/x", wanting(ip)), NotInPool,
			ip+` is left out of address pool "a", which avoids addresses ending in .0 and .255 (avoidBuggyIPs)`)
	}
	// IPv6 has no such addresses to avoid.
	six := stack(SingleStack, IPv6)
	mustAllocate(t, a, svc("ns/six0", six, fromPool("six")), "2001:db8::")
	mustAllocate(t, a, svc("ns/six1", six, wanting("2001:db8::1")), "2001:db8::1")
}

func TestRequestedIPs(t *testing.T) {
	pools := []Pool{
		pool("a", "10.0.0.0/29"), pool("b", "10.1.0.0/29"), avoiding(pool("c", "10.2.0.0/24")),
		pool("z", "10.0.0.0/16"), // loses to "a": same age, a sorts first
	}
	const zWhy = `addresses 10.0.0.0/16 overlap pool "a" (created at the same time; "a" sorts first by name)`
	runScenarios(t, []scenario{{
		name:  "a free IP",
		pools: pools,
		svc:   svc("ns/s", wanting("10.0.0.3")),
		want:  []string{"10.0.0.3"}, pool: "a",
	}, {
		name:  "a free IP in the requested pool",
		pools: pools,
		svc:   svc("ns/s", fromPool("b"), wanting("10.1.0.3")),
		want:  []string{"10.1.0.3"}, pool: "b",
	}, {
		name:   "outside every pool",
		pools:  pools,
		svc:    svc("ns/s", wanting("192.168.1.1")),
		reason: NotInPool,
		err:    "192.168.1.1 is not in any address pool",
	}, {
		name:   "in another pool than requested",
		pools:  pools,
		svc:    svc("ns/s", fromPool("a"), wanting("10.1.0.1")),
		reason: NotInPool,
		err:    `10.1.0.1 is in address pool "b", not in the requested pool "a"`,
	}, {
		name:   "in a pool that lost a conflict",
		pools:  pools,
		svc:    svc("ns/s", wanting("10.0.5.5")),
		reason: PoolUnusable,
		err:    `10.0.5.5 is in address pool "z", which is not usable: ` + zWhy,
	}, {
		name:   "in use",
		pools:  pools,
		before: []Service{svc("ns/other", wanting("10.1.0.2"))},
		svc:    svc("ns/me", wanting("10.1.0.2")),
		reason: InUse,
		err:    "10.1.0.2 is in use by ns/other (addresses are shared only between Services with the same allow-shared-ip key)",
	}, {
		name:   "avoided",
		pools:  pools,
		svc:    svc("ns/s", wanting("10.2.0.255")),
		reason: NotInPool,
		err:    `10.2.0.255 is left out of address pool "c", which avoids addresses ending in .0 and .255 (avoidBuggyIPs)`,
	}, {
		name:   "reserved for the ingress Service",
		pools:  pools,
		svc:    svc("ns/s", wanting("10.0.0.0")),
		reason: Reserved,
		err:    `10.0.0.0 is reserved for the ingress Service: it is the first address of the default pool "a"`,
	}, {
		name:   "reserved even when the ingress holds another address",
		pools:  pools,
		before: []Service{svc("ing/ing", ingressSvc, wanting("10.0.0.7"))},
		svc:    svc("ns/s", wanting("10.0.0.0")),
		reason: Reserved,
		err:    `10.0.0.0 is reserved for the ingress Service: it is the first address of the default pool "a"`,
	}, {
		name:  "the ingress Service may ask for the reserved address",
		pools: pools,
		svc:   svc("ing/ing", ingressSvc, wanting("10.0.0.0")),
		want:  []string{"10.0.0.0"},
	}, {
		name:   "the reserved address shared with the ingress Service",
		pools:  pools,
		before: []Service{svc("ing/ing", ingressSvc, sharing("k", 80, 443))},
		svc:    svc("ns/s", sharing("k", 22), wanting("10.0.0.0")),
		want:   []string{"10.0.0.0"},
	}, {
		name:   "the reserved address held by the ingress Service, no sharing",
		pools:  pools,
		before: []Service{svc("ing/ing", ingressSvc, sharing("k", 80, 443))},
		svc:    svc("ns/s", sharing("k", 443), wanting("10.0.0.0")),
		reason: InUse,
		err:    "10.0.0.0 is in use by ing/ing (both use port TCP/443)",
	}, {
		name:   "two IPs for a SingleStack Service",
		pools:  pools,
		svc:    svc("ns/s", wanting("10.0.0.3", "10.0.0.4")),
		reason: BadRequest,
		err:    "a SingleStack Service takes one IP, but 2 were requested (10.0.0.3, 10.0.0.4)",
	}, {
		name:   "an IP of the wrong family",
		pools:  pools,
		svc:    svc("ns/s", wanting("2001:db8::1")),
		reason: BadRequest,
		err:    "requested IP 2001:db8::1 is IPv6, but the Service's IP families are [IPv4]",
	}, {
		name:   "the same IP twice",
		pools:  pools,
		svc:    svc("ns/s", stack(PreferDualStack), wanting("10.0.0.3", "10.0.0.3")),
		reason: BadRequest,
		err:    "10.0.0.3 is requested twice",
	}, {
		name:   "a zoned IP",
		pools:  pools,
		svc:    svc("ns/s", stack(SingleStack, IPv6), wanting("fe80::1%eth0")),
		reason: BadRequest,
		err:    "fe80::1%eth0 has a zone; a LoadBalancer IP cannot be scoped to an interface",
	}, {
		name:   "an IPv4-mapped IPv6 address",
		pools:  pools,
		svc:    svc("ns/s", stack(SingleStack, IPv6), wanting("::ffff:10.0.0.3")),
		reason: BadRequest,
		err:    "::ffff:10.0.0.3 is an IPv4-mapped IPv6 address; request 10.0.0.3 instead",
	}, {
		name:  "requested pool",
		pools: pools,
		svc:   svc("ns/s", fromPool("b")),
		want:  []string{"10.1.0.0"}, pool: "b",
	}, {
		name:   "requested pool does not exist",
		pools:  pools,
		svc:    svc("ns/s", fromPool("nope")),
		reason: UnknownPool,
		err:    `address pool "nope" does not exist`,
	}, {
		name:   "requested pool lost a conflict",
		pools:  pools,
		svc:    svc("ns/s", fromPool("z")),
		reason: PoolUnusable,
		err:    `address pool "z" is not usable: ` + zWhy,
	}, {
		name:   "requested pool is invalid",
		pools:  append(slices.Clone(pools), pool("bad", "10.9.0.0/24", "10.9.0.128/25")),
		svc:    svc("ns/s", fromPool("bad")),
		reason: PoolUnusable,
		err:    `address pool "bad" is not usable: addresses 10.9.0.0/24 and 10.9.0.128/25 overlap; each address may be listed once`,
	}, {
		name:   "requested pool is exhausted",
		pools:  []Pool{pool("a", "10.0.0.0/31"), pool("b", "10.1.0.0/32")},
		before: []Service{svc("ns/1", fromPool("b"))},
		svc:    svc("ns/s", fromPool("b")),
		reason: Exhausted,
		err:    `address pool "b" is exhausted: no free IPv4 address is left`,
	}})
}

func TestSharing(t *testing.T) {
	pools := []Pool{pool("a", "10.0.0.0/29")}
	x := func(mods ...func(*Service)) Service {
		return svc("ns/x", append([]func(*Service){wanting("10.0.0.5")}, mods...)...)
	}
	y := func(mods ...func(*Service)) Service {
		return svc("ns/y", append([]func(*Service){wanting("10.0.0.5")}, mods...)...)
	}
	runScenarios(t, []scenario{{
		name:   "same key, different ports",
		pools:  pools,
		before: []Service{x(sharing("k", 80))},
		svc:    y(sharing("k", 443)),
		want:   []string{"10.0.0.5"},
	}, {
		name:   "same key, same port number, different protocols",
		pools:  pools,
		before: []Service{x(sharing("k", 53))},
		svc:    y(sharing("k"), udp(53)),
		want:   []string{"10.0.0.5"},
	}, {
		name:   "port clash",
		pools:  pools,
		before: []Service{x(sharing("k", 80, 443))},
		svc:    y(sharing("k", 8080, 443)),
		reason: InUse,
		err:    "10.0.0.5 is in use by ns/x (both use port TCP/443)",
	}, {
		name:   "protocol names are not case-sensitive",
		pools:  pools,
		before: []Service{x(sharing("k"), udp(53))},
		svc:    y(sharing("k"), func(s *Service) { s.Ports = []Port{{"udp", 53}} }),
		reason: InUse,
		err:    "10.0.0.5 is in use by ns/x (both use port UDP/53)",
	}, {
		name:   "an empty protocol is TCP",
		pools:  pools,
		before: []Service{x(sharing("k", 80))},
		svc:    y(sharing("k"), func(s *Service) { s.Ports = []Port{{"", 80}} }),
		reason: InUse,
		err:    "10.0.0.5 is in use by ns/x (both use port TCP/80)",
	}, {
		name:   "different keys",
		pools:  pools,
		before: []Service{x(sharing("k", 80))},
		svc:    y(sharing("j", 443)),
		reason: InUse,
		err:    `10.0.0.5 is in use by ns/x (its allow-shared-ip key is "k", not "j")`,
	}, {
		name:   "no key",
		pools:  pools,
		before: []Service{x(sharing("k", 80))},
		svc:    y(),
		reason: InUse,
		err:    "10.0.0.5 is in use by ns/x (addresses are shared only between Services with the same allow-shared-ip key)",
	}, {
		name:   "Local and Cluster",
		pools:  pools,
		before: []Service{x(sharing("k", 80))},
		svc:    y(sharing("k", 443), local("app=web")),
		reason: InUse,
		err:    "10.0.0.5 is in use by ns/x (one Service has externalTrafficPolicy Local and the other Cluster)",
	}, {
		name:   "Local with different selectors",
		pools:  pools,
		before: []Service{x(sharing("k", 80), local("app=web"))},
		svc:    y(sharing("k", 443), local("app=api")),
		reason: InUse,
		err:    "10.0.0.5 is in use by ns/x (both have externalTrafficPolicy Local, so they must select the same pods)",
	}, {
		name:   "Local with the same selector",
		pools:  pools,
		before: []Service{x(sharing("k", 80), local("app=web"))},
		svc:    y(sharing("k", 443), local("app=web")),
		want:   []string{"10.0.0.5"},
	}, {
		name:   "checked against every holder",
		pools:  pools,
		before: []Service{x(sharing("k", 80)), svc("ns/w", wanting("10.0.0.5"), sharing("k", 22))},
		svc:    y(sharing("k", 443, 22)),
		reason: InUse,
		err:    "10.0.0.5 is in use by ns/w (both use port TCP/22)",
	}, {
		name:   "auto-assign reuses a shared address",
		pools:  pools,
		before: []Service{svc("ns/x", sharing("k", 80))},
		svc:    svc("ns/y", sharing("k", 443)),
		want:   []string{"10.0.0.1"},
	}, {
		name:   "auto-assign reuses the lowest compatible shared address",
		pools:  pools,
		before: []Service{svc("ns/x", sharing("k", 80), wanting("10.0.0.4")), svc("ns/z", sharing("k", 80), wanting("10.0.0.3"))},
		svc:    svc("ns/y", sharing("k", 443)),
		want:   []string{"10.0.0.3"},
	}, {
		name:   "auto-assign takes a fresh address when sharing clashes",
		pools:  pools,
		before: []Service{svc("ns/x", sharing("k", 80), wanting("10.0.0.4")), svc("ns/z", sharing("k", 80), wanting("10.0.0.3"))},
		svc:    svc("ns/y", sharing("k", 80)),
		want:   []string{"10.0.0.1"},
	}, {
		name:   "auto-assign prefers sharing over pool order",
		pools:  []Pool{pool("a", "10.0.0.0/29"), pool("b", "10.1.0.0/29")},
		before: []Service{svc("ns/x", sharing("k", 80), fromPool("b"))},
		svc:    svc("ns/y", sharing("k", 443)),
		want:   []string{"10.1.0.0"}, pool: "b",
	}, {
		name:   "auto-assign does not share the ingress address",
		pools:  pools,
		before: []Service{svc("ns/x", sharing("k", 80), wanting("10.0.0.0"), ingressSvc)},
		svc:    svc("ns/y", sharing("k", 443)),
		want:   []string{"10.0.0.1"},
	}})
}

func TestSharedAddressIsFreedByTheLastHolder(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/30"))
	mustAllocate(t, a, svc("ns/x", sharing("k", 80)), "10.0.0.1")
	mustAllocate(t, a, svc("ns/y", sharing("k", 443)), "10.0.0.1")
	if got := a.Counters("a")[IPv4]; got != (Counts{Assigned: 1, Available: 2}) {
		t.Fatalf("a shared address counts %+v", got)
	}
	if freed := a.Release("ns/x"); len(freed) != 0 {
		t.Fatalf("Release of one holder freed %v", freed)
	}
	checkInvariants(t, a)
	if got, ok := a.Lookup("ns/y"); !ok || !slices.Equal(got.IPs, ips("10.0.0.1")) {
		t.Fatalf("the other holder lost its address: %v", got)
	}
	mustAllocate(t, a, svc("ns/z"), "10.0.0.2")
	if freed := a.Release("ns/y"); !slices.Equal(freed, ips("10.0.0.1")) {
		t.Fatalf("Release of the last holder freed %v", freed)
	}
	checkInvariants(t, a)
	if freed := a.Release("ns/y"); freed != nil {
		t.Fatalf("a second Release freed %v", freed)
	}
	if freed := a.Release("ns/unknown"); freed != nil {
		t.Fatalf("Release of an unknown key freed %v", freed)
	}
	mustAllocate(t, a, svc("ns/w"), "10.0.0.1")
}

func TestDualStack(t *testing.T) {
	four := pool("four", "10.0.0.0/30")
	six := pool("six", "2001:db8::/126")
	dual := pool("dual", "10.1.0.0/30", "2001:db8:1::/126")
	v4, v6 := stack(SingleStack, IPv4), stack(SingleStack, IPv6)
	prefer46, prefer64 := stack(PreferDualStack, IPv4, IPv6), stack(PreferDualStack, IPv6, IPv4)
	require4, require6 := stack(RequireDualStack, IPv4), stack(RequireDualStack, IPv6, IPv4)
	noBoth := func(tried string) string {
		return "no address pool has both a free IPv4 and a free IPv6 address for this Service (pools tried: " + tried +
			"); RequireDualStack needs both from one pool"
	}
	runScenarios(t, []scenario{
		{name: "v4 pool, SingleStack IPv4", pools: []Pool{four}, svc: svc("ns/s", v4), want: []string{"10.0.0.1"}},
		{name: "v4 pool, SingleStack IPv6", pools: []Pool{four}, svc: svc("ns/s", v6),
			reason: Exhausted, err: `no address pool has a free IPv6 address for this Service (pools tried: "four")`},
		{name: "v4 pool, PreferDualStack", pools: []Pool{four}, svc: svc("ns/s", prefer46), want: []string{"10.0.0.1"}},
		{name: "v4 pool, PreferDualStack IPv6 first", pools: []Pool{four}, svc: svc("ns/s", prefer64), want: []string{"10.0.0.1"}},
		{name: "v4 pool, RequireDualStack", pools: []Pool{four}, svc: svc("ns/s", require4), reason: Exhausted, err: noBoth(`"four"`)},

		{name: "v6 pool, SingleStack IPv4", pools: []Pool{six}, svc: svc("ns/s", v4),
			reason: Exhausted, err: `no address pool has a free IPv4 address for this Service (pools tried: "six")`},
		{name: "v6 pool, SingleStack IPv6", pools: []Pool{six}, svc: svc("ns/s", v6), want: []string{"2001:db8::1"}},
		{name: "v6 pool, PreferDualStack", pools: []Pool{six}, svc: svc("ns/s", prefer46), want: []string{"2001:db8::1"}},
		{name: "v6 pool, RequireDualStack", pools: []Pool{six}, svc: svc("ns/s", require6), reason: Exhausted, err: noBoth(`"six"`)},

		{name: "dual pool, SingleStack IPv4", pools: []Pool{dual}, svc: svc("ns/s", v4), want: []string{"10.1.0.1"}},
		{name: "dual pool, SingleStack IPv6", pools: []Pool{dual}, svc: svc("ns/s", v6), want: []string{"2001:db8:1::1"}},
		{name: "dual pool, PreferDualStack", pools: []Pool{dual}, svc: svc("ns/s", prefer64), want: []string{"2001:db8:1::1", "10.1.0.1"}},
		{name: "dual pool, PreferDualStack listing one family", pools: []Pool{dual}, svc: svc("ns/s", stack(PreferDualStack, IPv6)),
			want: []string{"2001:db8:1::1"}},
		{name: "dual pool, RequireDualStack listing one family", pools: []Pool{dual}, svc: svc("ns/s", require4),
			want: []string{"10.1.0.1", "2001:db8:1::1"}},
		{name: "dual pool, RequireDualStack, one family exhausted", pools: []Pool{dual},
			before: []Service{svc("ns/1", v6), svc("ns/2", v6), svc("ns/3", v6)},
			svc:    svc("ns/s", require4), reason: Exhausted, err: noBoth(`"dual"`)},
		{name: "dual pool, PreferDualStack, one family exhausted", pools: []Pool{dual},
			before: []Service{svc("ns/1", v6), svc("ns/2", v6), svc("ns/3", v6)},
			svc:    svc("ns/s", prefer64), want: []string{"10.1.0.1"}},
		{name: "dual pool, RequireDualStack from a requested pool, exhausted", pools: []Pool{dual},
			before: []Service{svc("ns/1", v6), svc("ns/2", v6), svc("ns/3", v6)},
			svc:    svc("ns/s", require4, fromPool("dual")), reason: Exhausted,
			err: `address pool "dual" is exhausted: it cannot give both a free IPv4 and a free IPv6 address`},

		{name: "separate pools, RequireDualStack", pools: []Pool{four, six}, svc: svc("ns/s", require4),
			reason: Exhausted, err: noBoth(`"four", "six"`)},
		{name: "separate pools, PreferDualStack takes the first family it can", pools: []Pool{four, six},
			svc: svc("ns/s", prefer64), want: []string{"2001:db8::"}, pool: "six"},
		{name: "separate pools, PreferDualStack IPv4 first", pools: []Pool{four, six},
			svc: svc("ns/s", prefer46), want: []string{"10.0.0.1"}, pool: "four"},
		{name: "requested pool without the family", pools: []Pool{four, six}, svc: svc("ns/s", v6, fromPool("four")),
			reason: Exhausted, err: `address pool "four" has no IPv6 addresses, and this SingleStack Service needs one`},
		{name: "PreferDualStack prefers a pool with both families", pools: []Pool{dual, four, six},
			svc: svc("ns/s", prefer46), want: []string{"10.1.0.1", "2001:db8:1::1"}, pool: "dual"},
		{name: "PreferDualStack skips a better pool with one family", pools: []Pool{priority(1, four), dual},
			svc: svc("ns/s", prefer46), want: []string{"10.1.0.0", "2001:db8:1::"}, pool: "dual"},

		{name: "requested dual IPs", pools: []Pool{dual}, svc: svc("ns/s", require4, wanting("2001:db8:1::2", "10.1.0.2")),
			want: []string{"10.1.0.2", "2001:db8:1::2"}},
		{name: "requested dual IPs, PreferDualStack order", pools: []Pool{dual}, svc: svc("ns/s", prefer64, wanting("10.1.0.2", "2001:db8:1::2")),
			want: []string{"2001:db8:1::2", "10.1.0.2"}},
		{name: "requested one IP for PreferDualStack", pools: []Pool{dual}, svc: svc("ns/s", prefer64, wanting("10.1.0.2")),
			want: []string{"10.1.0.2"}},
		{name: "requested one IP for RequireDualStack", pools: []Pool{dual}, svc: svc("ns/s", require4, wanting("10.1.0.2")),
			reason: BadRequest, err: "a RequireDualStack Service needs one IPv4 and one IPv6 address, but 10.1.0.2 was requested"},
		{name: "requested two IPv4 for PreferDualStack", pools: []Pool{dual}, svc: svc("ns/s", prefer46, wanting("10.1.0.2", "10.1.0.3")),
			reason: BadRequest, err: "a PreferDualStack Service takes one IP, or one IPv4 and one IPv6 address, but 10.1.0.2, 10.1.0.3 was requested"},
		{name: "requested dual IPs in two pools", pools: []Pool{dual, four, six}, svc: svc("ns/s", require4, wanting("10.0.0.2", "2001:db8:1::2")),
			reason: BadRequest, err: `the requested IPs are in different address pools ("four" and "dual"); a Service's addresses come from one pool`},
		{name: "requested dual IPs, one in use", pools: []Pool{dual},
			before: []Service{svc("ns/o", v6, wanting("2001:db8:1::2"))},
			svc:    svc("ns/s", require4, wanting("10.1.0.2", "2001:db8:1::2")),
			reason: InUse, err: "2001:db8:1::2 is in use by ns/o (addresses are shared only between Services with the same allow-shared-ip key)"},
		{name: "dual-stack sharing checks each family", pools: []Pool{dual},
			before: []Service{svc("ns/o", require4, sharing("k", 80))},
			svc:    svc("ns/s", require4, sharing("k", 443)), want: []string{"10.1.0.1", "2001:db8:1::1"}},
		{name: "dual-stack sharing where only one family can share", pools: []Pool{dual},
			before: []Service{svc("ns/o", v4, sharing("k", 80)), svc("ns/p", v6, sharing("k", 443))},
			svc:    svc("ns/s", require4, sharing("k", 443)), want: []string{"10.1.0.1", "2001:db8:1::2"}},
	})
}

func TestPreferDualStackGainsAndDropsAFamily(t *testing.T) {
	a := newAllocator(t, pool("dual", "10.1.0.0/30", "2001:db8:1::/126"))
	mustAllocate(t, a, svc("ns/s"), "10.1.0.1")
	mustAllocate(t, a, svc("ns/s", stack(PreferDualStack, IPv4, IPv6)), "10.1.0.1", "2001:db8:1::1")
	mustAllocate(t, a, svc("ns/s", stack(PreferDualStack, IPv4, IPv6)), "10.1.0.1", "2001:db8:1::1")
	mustAllocate(t, a, svc("ns/s"), "10.1.0.1")
	if got := a.Counters("dual")[IPv6]; got.Assigned != 0 {
		t.Fatalf("the dropped IPv6 address is still counted: %+v", got)
	}
}

func TestPreferDualStackKeepsWhatIsLeft(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/29", "2001:db8::/125"), pool("b", "10.1.0.0/29", "2001:db8:1::/125"))
	s := svc("ns/s", stack(PreferDualStack, IPv4, IPv6))
	mustAllocate(t, a, s, "10.0.0.1", "2001:db8::1")
	rep := a.SetPools([]Pool{pool("a", "10.0.0.0/29"), pool("b", "10.1.0.0/29", "2001:db8:1::/125")})
	if !slices.Equal(rep.Orphaned, []string{"ns/s"}) {
		t.Fatalf("Orphaned = %v", rep.Orphaned)
	}
	// Pool b could give both families, but the IPv4 address stays.
	if got := mustAllocate(t, a, s, "10.0.0.1"); got.Pool != "a" {
		t.Fatalf("pool %q", got.Pool)
	}
}

func TestIngressReservation(t *testing.T) {
	t.Run("others allocated first never get it", func(t *testing.T) {
		a := newAllocator(t, pool("a", "10.0.0.0/30"))
		mustAllocate(t, a, svc("ns/1"), "10.0.0.1")
		mustAllocate(t, a, svc("ns/2"), "10.0.0.2")
		mustAllocate(t, a, svc("ns/3"), "10.0.0.3")
		failAllocate(t, a, svc("ns/4"), Exhausted, `no address pool has a free IPv4 address for this Service (pools tried: "a")`)
		if got := a.Counters("a")[IPv4]; got != (Counts{Assigned: 3, Available: 0}) {
			t.Fatalf("Counters = %+v", got)
		}
		got := mustAllocate(t, a, svc("portico-system/portico-ingress", ingressSvc), "10.0.0.0")
		if got.Note != "" {
			t.Fatalf("Note = %q", got.Note)
		}
	})
	t.Run("dual-stack ingress gets both", func(t *testing.T) {
		a := newAllocator(t, pool("a", "10.0.0.0/30", "2001:db8::/126"))
		mustAllocate(t, a, svc("ns/1", stack(RequireDualStack)), "10.0.0.1", "2001:db8::1")
		mustAllocate(t, a, svc("ing/ing", ingressSvc, stack(RequireDualStack, IPv6)), "2001:db8::", "10.0.0.0")
	})
	t.Run("held by another Service from before", func(t *testing.T) {
		a := newAllocator(t, pool("a", "10.0.0.0/29"))
		if _, err := a.Assign(svc("ns/x"), ips("10.0.0.0")); err != nil {
			t.Fatalf("Assign of the ingress address to another Service: %v", err)
		}
		mustAllocate(t, a, svc("ns/x"), "10.0.0.0") // and it keeps it
		got := mustAllocate(t, a, svc("ing/ing", ingressSvc), "10.0.0.1")
		const note = `did not get 10.0.0.0, the first address of the default pool "a": it is held by ns/x, and an assigned address never moves`
		if got.Note != note {
			t.Fatalf("Note\n got: %s\nwant: %s", got.Note, note)
		}
		if got, _ := a.Lookup("ing/ing"); got.Note != note {
			t.Fatalf("Lookup Note = %q", got.Note)
		}
	})
	t.Run("the default pool has one family, the ingress needs two", func(t *testing.T) {
		a := newAllocator(t, priority(1, pool("a", "10.0.0.0/29")), pool("b", "10.1.0.0/29", "2001:db8::/125"))
		got := mustAllocate(t, a, svc("ing/ing", ingressSvc, stack(RequireDualStack)), "10.1.0.0", "2001:db8::")
		const note = `did not get 10.0.0.0, the first address of the default pool "a": the default pool cannot give all the addresses this Service needs, so they came from "b"`
		if got.Note != note {
			t.Fatalf("Note\n got: %s\nwant: %s", got.Note, note)
		}
	})
	t.Run("ingress not admitted by the default pool", func(t *testing.T) {
		p := pool("a", "10.0.0.0/29")
		p.Namespaces = []string{"apps"}
		a := newAllocator(t, p, pool("b", "10.1.0.0/29"))
		got := mustAllocate(t, a, svc("ing/ing", ingressSvc), "10.1.0.0")
		const note = `did not get 10.0.0.0, the first address of the default pool "a": address pool "a" only serves the namespaces "apps"; this Service is in namespace "ing"`
		if got.Note != note {
			t.Fatalf("Note\n got: %s\nwant: %s", got.Note, note)
		}
	})
	t.Run("the reservation follows the default pool", func(t *testing.T) {
		a := newAllocator(t, priority(2, pool("a", "10.0.0.0/29")), priority(1, pool("b", "10.1.0.0/29")))
		if d := a.DefaultPool(); d != "b" {
			t.Fatalf("DefaultPool = %q", d)
		}
		mustAllocate(t, a, svc("ns/inb", fromPool("b")), "10.1.0.1")
		mustAllocate(t, a, svc("ing/ing", ingressSvc), "10.1.0.0")
		mustAllocate(t, a, svc("ns/ina", fromPool("a")), "10.0.0.0")

		rep := a.SetPools([]Pool{priority(1, pool("a", "10.0.0.0/29")), priority(2, pool("b", "10.1.0.0/29"))})
		if len(rep.Orphaned) > 0 {
			t.Fatalf("a priority change orphaned %v", rep.Orphaned)
		}
		if d := a.DefaultPool(); d != "a" {
			t.Fatalf("DefaultPool = %q", d)
		}
		checkInvariants(t, a)
		got := mustAllocate(t, a, svc("ing/ing", ingressSvc), "10.1.0.0") // never moves
		const note = `did not get 10.0.0.0, the first address of the default pool "a": it is held by ns/ina, and an assigned address never moves`
		if got.Note != note {
			t.Fatalf("Note\n got: %s\nwant: %s", got.Note, note)
		}
		mustAllocate(t, a, svc("ns/ina", fromPool("a")), "10.0.0.0") // neither does this one
		mustAllocate(t, a, svc("ns/new", fromPool("b")), "10.1.0.2")
		a.Release("ns/ina")
		mustAllocate(t, a, svc("ns/new2", fromPool("a")), "10.0.0.1")
		got = mustAllocate(t, a, svc("ing/ing", ingressSvc), "10.1.0.0")
		if !strings.Contains(got.Note, "this Service already holds another address") {
			t.Fatalf("Note = %q", got.Note)
		}
	})
	t.Run("no default pool, no reservation", func(t *testing.T) {
		a := newAllocator(t, manual(pool("a", "10.0.0.0/30")))
		mustAllocate(t, a, svc("ns/x", fromPool("a")), "10.0.0.0")
		if got := a.Counters("a")[IPv4]; got != (Counts{Assigned: 1, Available: 3}) {
			t.Fatalf("Counters = %+v", got)
		}
	})
}

func TestSetPoolsConflicts(t *testing.T) {
	a := New()
	rep := a.SetPools([]Pool{
		created(t0.Add(2), pool("new", "10.0.0.0/24")),
		created(t0.Add(1), pool("old", "10.0.0.128/25", "10.9.0.0/24")),
		created(t0.Add(1), pool("old2", "10.9.0.0/28")), // same age as old, sorts after it
		created(t0.Add(3), pool("wide", "10.0.0.0/8")),
		created(t0.Add(4), pool("after", "10.10.0.0/24")), // overlaps only the losing "wide"
		created(t0.Add(5), pool("six", "2001:db8::/64", "10.11.0.0/24")),
		pool("", "10.20.0.0/24"),
		pool("empty"),
		pool("inner", "10.21.0.0/24", "10.21.0.128/25"),
		priority(-1, pool("neg", "10.22.0.0/24")),
		pool("dup", "10.23.0.0/24"), pool("dup", "10.24.0.0/24"),
		{Name: "zero", Ranges: []Range{{}}},
		{Name: "mixed", Ranges: []Range{{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")}}},
	})
	wantConflicts := map[string]string{
		"new":  `addresses 10.0.0.0/24 overlap pool "old" (created earlier)`,
		"old2": `addresses 10.9.0.0/28 overlap pool "old" (created at the same time; "old" sorts first by name)`,
		"wide": `addresses 10.0.0.0/8 overlap pool "old" (created earlier)`,
	}
	wantInvalid := map[string]string{
		"":      "the pool has no name",
		"empty": "the pool has no addresses",
		"inner": "addresses 10.21.0.0/24 and 10.21.0.128/25 overlap; each address may be listed once",
		"neg":   "priority -1 is negative; use a positive number, or 0 for none",
		"dup":   `2 pools are named "dup"; pool names must be unique`,
		"zero":  "address range <empty range>: the range is empty",
		"mixed": "address range 10.0.0.1-2001:db8::1: first and last address are of different families",
	}
	if !mapsEqual(rep.Conflicts, wantConflicts) {
		t.Errorf("Conflicts = %q\nwant %q", rep.Conflicts, wantConflicts)
	}
	if !mapsEqual(rep.Invalid, wantInvalid) {
		t.Errorf("Invalid = %q\nwant %q", rep.Invalid, wantInvalid)
	}
	checkInvariants(t, a)
	for _, name := range []string{"old", "after", "six"} {
		if a.Counters(name) == nil {
			t.Errorf("pool %q is not usable", name)
		}
	}
	for name := range wantConflicts {
		if c := a.Counters(name); c != nil {
			t.Errorf("conflicting pool %q has counters %v", name, c)
		}
	}
	if c := a.Counters("six"); len(c) != 2 {
		t.Errorf("Counters(six) = %v, want both families", c)
	}
	if d := a.DefaultPool(); d != "after" {
		t.Errorf("DefaultPool = %q", d)
	}
	failAllocate(t, a, svc("ns/x", fromPool("dup")), PoolUnusable, `address pool "dup" is not usable: 2 pools are named "dup"; pool names must be unique`)
	failAllocate(t, a, svc("ns/x", wanting("10.23.0.1")), PoolUnusable, `10.23.0.1 is in address pool "dup", which is not usable: 2 pools are named "dup"; pool names must be unique`)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

func TestSetPoolsKeepsAssignments(t *testing.T) {
	setup := func(t *testing.T) *Allocator {
		a := newAllocator(t, pool("a", "10.0.0.0/24"), pool("b", "10.1.0.0/24"))
		mustAllocate(t, a, svc("ns/low", wanting("10.0.0.1")), "10.0.0.1")
		mustAllocate(t, a, svc("ns/high", wanting("10.0.0.200")), "10.0.0.200")
		mustAllocate(t, a, svc("ns/edge", wanting("10.0.0.255")), "10.0.0.255")
		mustAllocate(t, a, svc("ns/inb", fromPool("b")), "10.1.0.0")
		return a
	}
	expect := func(t *testing.T, a *Allocator, key, pool string, want ...string) {
		t.Helper()
		got, ok := a.Lookup(key)
		if !ok || got.Pool != pool || !slices.Equal(got.IPs, ips(want...)) {
			t.Fatalf("Lookup(%s) = %v %v, want %v from %q", key, got, ok, want, pool)
		}
	}
	set := func(t *testing.T, a *Allocator, orphans []string, pools ...Pool) {
		t.Helper()
		rep := a.SetPools(pools)
		checkInvariants(t, a)
		if len(rep.Conflicts)+len(rep.Invalid) > 0 || !slices.Equal(rep.Orphaned, orphans) {
			t.Fatalf("SetPools: %+v, want orphans %v", rep, orphans)
		}
	}

	t.Run("unrelated edit", func(t *testing.T) {
		a := setup(t)
		p := pool("b", "10.1.0.0/24")
		p.Priority, p.Namespaces = 3, []string{"ns"}
		set(t, a, nil, pool("a", "10.0.0.0/24"), p, pool("c", "10.2.0.0/24"))
		expect(t, a, "ns/low", "a", "10.0.0.1")
		expect(t, a, "ns/inb", "b", "10.1.0.0")
		mustAllocate(t, a, svc("ns/low", wanting("10.0.0.1")), "10.0.0.1")
	})
	t.Run("rename", func(t *testing.T) {
		a := setup(t)
		set(t, a, nil, pool("renamed", "10.0.0.0/24"), pool("b", "10.1.0.0/24"))
		expect(t, a, "ns/low", "renamed", "10.0.0.1")
		if got := a.Counters("renamed")[IPv4]; got.Assigned != 3 {
			t.Fatalf("Counters(renamed) = %+v", got)
		}
		mustAllocate(t, a, svc("ns/high"), "10.0.0.200") // no longer asks for it, keeps it
	})
	t.Run("addresses move to another pool", func(t *testing.T) {
		a := setup(t)
		set(t, a, nil, pool("b", "10.1.0.0/24", "10.0.0.0/25"), pool("c", "10.0.0.128/25"))
		expect(t, a, "ns/low", "b", "10.0.0.1")
		expect(t, a, "ns/high", "c", "10.0.0.200")
	})
	t.Run("shrink orphans only what left", func(t *testing.T) {
		a := setup(t)
		set(t, a, []string{"ns/edge", "ns/high"}, pool("a", "10.0.0.0/25"), pool("b", "10.1.0.0/24"))
		expect(t, a, "ns/low", "a", "10.0.0.1")
		expect(t, a, "ns/high", "", "10.0.0.200") // still recorded, in no pool
		if got := a.Counters("a")[IPv4]; got != (Counts{Assigned: 1, Available: 126}) {
			t.Fatalf("Counters(a) = %+v", got)
		}
		// The controller re-allocates: the orphan gets a new address.
		mustAllocate(t, a, svc("ns/high"), "10.0.0.2")
		failAllocate(t, a, svc("ns/edge", wanting("10.0.0.255")), NotInPool, "10.0.0.255 is not in any address pool")
		if _, ok := a.Lookup("ns/edge"); ok {
			t.Fatal("an orphan whose new request failed still holds its address")
		}
		set(t, a, nil, pool("a", "10.0.0.0/25"), pool("b", "10.1.0.0/24"))
	})
	t.Run("orphans come back when the pool does", func(t *testing.T) {
		a := setup(t)
		set(t, a, []string{"ns/edge", "ns/high", "ns/low"}, pool("b", "10.1.0.0/24"))
		set(t, a, []string{"ns/edge", "ns/high", "ns/low"}, pool("b", "10.1.0.0/24"), pool("c", "10.3.0.0/24"))
		set(t, a, nil, pool("b", "10.1.0.0/24"), pool("a", "10.0.0.0/24"))
		expect(t, a, "ns/high", "a", "10.0.0.200")
		if got := a.Counters("a")[IPv4]; got != (Counts{Assigned: 3, Available: 252}) { // a is the default pool again
			t.Fatalf("Counters(a) = %+v", got)
		}
	})
	t.Run("grow", func(t *testing.T) {
		a := setup(t)
		set(t, a, nil, pool("a", "10.0.0.0/23"), pool("b", "10.1.0.0/24"))
		if got := a.Counters("a")[IPv4]; got != (Counts{Assigned: 3, Available: 508}) {
			t.Fatalf("Counters(a) = %+v", got)
		}
		expect(t, a, "ns/edge", "a", "10.0.0.255")
	})
	t.Run("avoidBuggyIPs orphans .0 and .255", func(t *testing.T) {
		a := setup(t)
		set(t, a, []string{"ns/edge"}, avoiding(pool("a", "10.0.0.0/24")), pool("b", "10.1.0.0/24"))
		expect(t, a, "ns/high", "a", "10.0.0.200")
		set(t, a, nil, pool("a", "10.0.0.0/24"), pool("b", "10.1.0.0/24"))
		expect(t, a, "ns/edge", "a", "10.0.0.255")
	})
	t.Run("a pool that starts conflicting orphans its Services", func(t *testing.T) {
		a := setup(t)
		set(t, a, nil, pool("a", "10.0.0.0/24"), pool("b", "10.1.0.0/24"))
		rep := a.SetPools([]Pool{created(t0, pool("older", "10.0.0.0/16")), pool("a", "10.0.0.0/24"), pool("b", "10.1.0.0/24")})
		checkInvariants(t, a)
		if len(rep.Orphaned) != 0 || rep.Conflicts["a"] == "" {
			t.Fatalf("SetPools = %+v", rep)
		}
		expect(t, a, "ns/low", "older", "10.0.0.1") // the older pool has the addresses now
	})
}

func TestCounters(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/24", "2001:db8::/120"), pool("b", "2001:db8:1::/64"), pool("c", "2001:db8:2::/63"))
	want := map[string]map[Family]Counts{
		"a": {IPv4: {0, 255}, IPv6: {0, 255}},
		"b": {IPv6: {0, math.MaxUint64}},
		"c": {IPv6: {0, math.MaxUint64}},
	}
	for name, w := range want {
		if got := a.Counters(name); !countsEqual(got, w) {
			t.Errorf("Counters(%q) = %v, want %v", name, got, w)
		}
	}
	if got := a.Counters("nope"); got != nil {
		t.Errorf("Counters of an unknown pool = %v", got)
	}
	mustAllocate(t, a, svc("ns/1", stack(RequireDualStack), sharing("k", 80)), "10.0.0.1", "2001:db8::1")
	mustAllocate(t, a, svc("ns/2", stack(RequireDualStack), sharing("k", 443)), "10.0.0.1", "2001:db8::1")
	mustAllocate(t, a, svc("ns/3", stack(SingleStack, IPv6)), "2001:db8::2")
	mustAllocate(t, a, svc("ns/4", stack(SingleStack, IPv6), fromPool("b")), "2001:db8:1::")
	mustAllocate(t, a, svc("ing/ing", ingressSvc), "10.0.0.0")
	want = map[string]map[Family]Counts{
		"a": {IPv4: {2, 254}, IPv6: {2, 253}}, // the IPv6 ingress address is free but reserved
		"b": {IPv6: {1, math.MaxUint64}},      // 2^64-1
		"c": {IPv6: {0, math.MaxUint64}},
	}
	for name, w := range want {
		if got := a.Counters(name); !countsEqual(got, w) {
			t.Errorf("Counters(%q) = %v, want %v", name, got, w)
		}
	}
	mustAllocate(t, a, svc("ns/5", stack(SingleStack, IPv6), fromPool("b")), "2001:db8:1::1")
	if got := a.Counters("b")[IPv6]; got != (Counts{2, math.MaxUint64 - 1}) {
		t.Errorf("Counters(b) = %+v, want exact figures below 2^64", got)
	}
}

func TestSize(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/24", "2001:db8::/120"), pool("b", "2001:db8:1::/64"), avoiding(pool("buggy", "10.1.0.0/23")))
	mustAllocate(t, a, svc("ns/1"), "10.0.0.1")
	for name, want := range map[string]map[Family]uint64{
		"a":     {IPv4: 256, IPv6: 256}, // the reserved ingress address and held ones count
		"b":     {IPv6: math.MaxUint64},
		"buggy": {IPv4: 508}, // .0 and .255 of each /24 are not part of it
	} {
		if got := a.Size(name); !maps.Equal(got, want) {
			t.Errorf("Size(%q) = %v, want %v", name, got, want)
		}
	}
	if got := a.Size("nope"); got != nil {
		t.Errorf("Size of an unknown pool = %v", got)
	}
}

func countsEqual(a, b map[Family]Counts) bool {
	if len(a) != len(b) {
		return false
	}
	for f, c := range a {
		if b[f] != c {
			return false
		}
	}
	return true
}

func TestAllocateIsIdempotent(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/24"), priority(1, pool("b", "10.1.0.0/24")))
	s := svc("ns/s", stack(PreferDualStack, IPv4, IPv6), sharing("k", 80), labels(map[string]string{"x": "y"}))
	first := mustAllocate(t, a, s, "10.1.0.1")
	for i := range 5 {
		mustAllocate(t, a, svc("ns/other"+string(rune('a'+i))), "10.1.0."+string(rune('2'+i)))
		mustAllocate(t, a, s, first.IPs[0].String())
	}
	// Pool edits that keep the address do not move it, even when b is no
	// longer the best pool or auto-assigned at all.
	a.SetPools([]Pool{priority(1, pool("a", "10.0.0.0/24")), manual(pool("b", "10.1.0.0/24"))})
	got := mustAllocate(t, a, s, "10.1.0.1")
	if got.Pool != "b" {
		t.Fatalf("pool %q", got.Pool)
	}
}

func TestFailureKeepsTheOldAssignment(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/29"), manual(pool("full", "10.1.0.0/32")))
	mustAllocate(t, a, svc("ns/filler", fromPool("full")), "10.1.0.0")
	mustAllocate(t, a, svc("ns/other", wanting("10.0.0.5")), "10.0.0.5")
	mustAllocate(t, a, svc("ns/s"), "10.0.0.1")

	for _, tc := range []struct {
		svc    Service
		reason Reason
		msg    string
	}{
		{svc("ns/s", fromPool("full")), Exhausted, `address pool "full" is exhausted: no free IPv4 address is left`},
		{svc("ns/s", fromPool("nope")), UnknownPool, `address pool "nope" does not exist`},
		{svc("ns/s", wanting("10.0.0.5")), InUse, "10.0.0.5 is in use by ns/other (addresses are shared only between Services with the same allow-shared-ip key)"},
		{svc("ns/s", wanting("10.0.0.0")), Reserved, `10.0.0.0 is reserved for the ingress Service: it is the first address of the default pool "a"`},
		{svc("ns/s", wanting("192.168.0.1")), NotInPool, "192.168.0.1 is not in any address pool"},
		{svc("ns/s", stack(Policy(7))), BadRequest, "unknown IP family policy Policy(7)"},
		{svc("ns/s", stack(SingleStack, Family(9))), BadRequest, "unknown IP family Family(9)"},
	} {
		got := failAllocate(t, a, tc.svc, tc.reason, tc.msg)
		if got.Pool != "a" || !slices.Equal(got.IPs, ips("10.0.0.1")) {
			t.Fatalf("Allocate after %q returned %v, want the kept assignment", tc.msg, got)
		}
		if got, _ := a.Lookup("ns/s"); !slices.Equal(got.IPs, ips("10.0.0.1")) {
			t.Fatalf("Lookup = %v", got)
		}
	}

	// An assignment that is no longer valid is not kept.
	p := pool("a", "10.0.0.0/29")
	p.Namespaces = []string{"elsewhere"}
	a.SetPools([]Pool{p, manual(pool("full", "10.1.0.0/32"))})
	got := failAllocate(t, a, svc("ns/s"), NotAllowed,
		`no address pool with autoAssign serves this Service: address pool "a" only serves the namespaces "elsewhere"; this Service is in namespace "ns"`)
	if got.IPs != nil {
		t.Fatalf("kept %v in a pool that no longer admits the Service", got)
	}
	if _, ok := a.Lookup("ns/s"); ok {
		t.Fatal("still recorded")
	}
}

func TestSharingClashAfterAnUpdateMovesTheService(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/30"))
	mustAllocate(t, a, svc("ns/x", sharing("k", 80)), "10.0.0.1")
	mustAllocate(t, a, svc("ns/y", sharing("k", 443)), "10.0.0.1")
	mustAllocate(t, a, svc("ns/y", sharing("k", 80)), "10.0.0.2") // now clashes: moves
	mustAllocate(t, a, svc("ns/z"), "10.0.0.3")
	mustAllocate(t, a, svc("ns/w", sharing("k", 443)), "10.0.0.1")
	// x now clashes with w and there is no room to move: the address it can
	// no longer share is released, and w keeps it.
	got := failAllocate(t, a, svc("ns/x", sharing("k", 80, 443)), Exhausted,
		`no address pool has a free IPv4 address for this Service (pools tried: "a")`)
	if got.IPs != nil {
		t.Fatalf("kept %v", got)
	}
	if _, ok := a.Lookup("ns/x"); ok {
		t.Fatal("still recorded")
	}
	if got, _ := a.Lookup("ns/w"); !slices.Equal(got.IPs, ips("10.0.0.1")) {
		t.Fatalf("w lost its address: %v", got)
	}
}

func TestExhaustionThenRecovery(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/30"))
	for i, want := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		mustAllocate(t, a, svc("ns/"+string(rune('a'+i))), want)
	}
	failAllocate(t, a, svc("ns/late"), Exhausted, `no address pool has a free IPv4 address for this Service (pools tried: "a")`)
	if freed := a.Release("ns/b"); !slices.Equal(freed, ips("10.0.0.2")) {
		t.Fatalf("Release freed %v", freed)
	}
	mustAllocate(t, a, svc("ns/late"), "10.0.0.2")
}

func TestAssign(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/29", "2001:db8::/125"), avoiding(pool("b", "10.1.0.0/24")))
	for _, tc := range []struct {
		name   string
		svc    Service
		ips    []string
		want   []string
		reason Reason
		msg    string
	}{
		{name: "the ingress address for another Service", svc: svc("ns/x"), ips: []string{"10.0.0.0"}, want: []string{"10.0.0.0"}},
		{name: "again, the same", svc: svc("ns/x"), ips: []string{"10.0.0.0"}, want: []string{"10.0.0.0"}},
		{name: "dual-stack, put in order", svc: svc("ns/d", stack(PreferDualStack, IPv6, IPv4)), ips: []string{"10.0.0.2", "2001:db8::2"},
			want: []string{"2001:db8::2", "10.0.0.2"}},
		{name: "sharing", svc: svc("ns/s1", sharing("k", 80)), ips: []string{"10.0.0.3"}, want: []string{"10.0.0.3"}},
		{name: "sharing, second holder", svc: svc("ns/s2", sharing("k", 443)), ips: []string{"10.0.0.3"}, want: []string{"10.0.0.3"}},
		{name: "sharing clash", svc: svc("ns/s3", sharing("k", 443)), ips: []string{"10.0.0.3"},
			reason: InUse, msg: "10.0.0.3 is in use by ns/s2 (both use port TCP/443)"},
		{name: "in use", svc: svc("ns/y"), ips: []string{"10.0.0.0"},
			reason: InUse, msg: "10.0.0.0 is in use by ns/x (addresses are shared only between Services with the same allow-shared-ip key)"},
		{name: "outside the pools", svc: svc("ns/y"), ips: []string{"10.9.0.0"}, reason: NotInPool, msg: "10.9.0.0 is not in any address pool"},
		{name: "avoided", svc: svc("ns/y"), ips: []string{"10.1.0.0"}, reason: NotInPool,
			msg: `10.1.0.0 is left out of address pool "b", which avoids addresses ending in .0 and .255 (avoidBuggyIPs)`},
		{name: "two pools", svc: svc("ns/y", stack(RequireDualStack)), ips: []string{"10.1.0.1", "2001:db8::1"}, reason: BadRequest,
			msg: `10.1.0.1 and 2001:db8::1 are in different address pools ("b" and "a"); a Service's addresses come from one pool`},
		{name: "two of one family", svc: svc("ns/y", stack(PreferDualStack, IPv4, IPv6)), ips: []string{"10.0.0.4", "10.0.0.5"}, reason: BadRequest,
			msg: "a Service holds at most one address per family, not 10.0.0.4 and 10.0.0.5"},
		{name: "a family the Service does not have", svc: svc("ns/y"), ips: []string{"2001:db8::4"}, reason: BadRequest,
			msg: "2001:db8::4 is IPv6, but the Service's IP families are [IPv4]"},
		{name: "nothing", svc: svc("ns/y"), reason: BadRequest, msg: "no IP to record for ns/y"},
		{name: "replaces", svc: svc("ns/x"), ips: []string{"10.0.0.6"}, want: []string{"10.0.0.6"}},
	} {
		before, hadBefore := a.Lookup(tc.svc.Key)
		got, err := a.Assign(tc.svc, ips(tc.ips...))
		checkInvariants(t, a)
		if tc.msg != "" {
			checkErr(t, tc.name, err, tc.reason, tc.msg)
			if after, has := a.Lookup(tc.svc.Key); has != hadBefore || !slices.Equal(after.IPs, before.IPs) {
				t.Fatalf("%s: a failed Assign changed %v to %v", tc.name, before, after)
			}
			continue
		}
		if err != nil || !slices.Equal(got.IPs, ips(tc.want...)) {
			t.Fatalf("%s: Assign = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if got := a.Counters("a")[IPv4]; got.Assigned != 3 {
		t.Fatalf("Counters = %+v", got)
	}
}

func TestErrorsAs(t *testing.T) {
	a := New()
	_, err := a.Allocate(svc("ns/s", fromPool("p")))
	var e *Error
	if !errors.As(err, &e) || e.Reason != UnknownPool || e.Reason.String() != "UnknownPool" || err.Error() != e.Msg {
		t.Fatalf("errors.As(%v) = %v", err, e)
	}
	wrapped := errors.Join(errors.New("reconcile"), err)
	if !errors.As(wrapped, &e) {
		t.Fatal("a wrapped *Error is not found")
	}
}

func TestConcurrentUse(t *testing.T) {
	a := newAllocator(t, pool("a", "10.0.0.0/22"))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				key := "ns/" + string(rune('a'+g)) + string(rune('a'+i%26))
				if _, err := a.Allocate(svc(key)); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					a.Release(key)
				}
				a.Counters("a")
				a.Lookup(key)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			a.SetPools([]Pool{pool("a", "10.0.0.0/22")})
		}
	})
	wg.Wait()
	checkInvariants(t, a)
}
