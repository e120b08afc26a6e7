package pools

import (
	"slices"
	"testing"
)

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

// noneServes and exhausted are pure: their long-list cases are checked here
// without building that many pools.
func TestNoneServes(t *testing.T) {
	checkErr(t, "no pool", noneServes(nil), UnknownPool,
		"no usable address pool has autoAssign enabled; create one, or name a pool for this Service")
	checkErr(t, "three", noneServes([]string{"a", "b", "c"}), NotAllowed,
		"no address pool with autoAssign serves this Service: a; b; c")
	checkErr(t, "five", noneServes([]string{"a", "b", "c", "d", "e"}), NotAllowed,
		"no address pool with autoAssign serves this Service: a; b; c; and 2 more")
}

func TestExhausted(t *testing.T) {
	var cands []*poolState
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		cands = append(cands, &poolState{Pool: Pool{Name: name}})
	}
	s := svc("ns/s", stack(PreferDualStack, IPv6, IPv4))
	n, _ := normalize(s)
	checkErr(t, "seven pools", exhausted(&n, cands), Exhausted,
		`no address pool has a free IPv4 or IPv6 address for this Service (pools tried: "a", "b", "c", "d", "e", and 2 more)`)
	n.Pool = "a"
	checkErr(t, "a named pool with neither family", exhausted(&n, cands[:1]), Exhausted,
		`address pool "a" has no IPv6 or IPv4 addresses, and this PreferDualStack Service needs one`)
}
