package pools

import (
	"slices"
	"testing"
)

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
