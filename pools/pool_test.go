package pools

import (
	"net/netip"
	"slices"
	"testing"
)

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
	if d := defaultPool(a); d != "after" {
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
