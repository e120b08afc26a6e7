package pools

import (
	"errors"
	"maps"
	"math"
	"slices"
	"sync"
	"testing"
)

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
		{name: "two of one family after another", svc: svc("ns/y", stack(PreferDualStack, IPv4, IPv6)),
			ips: []string{"10.0.0.4", "2001:db8::4", "2001:db8::5"}, reason: BadRequest,
			msg: "a Service holds at most one address per family, not 2001:db8::4 and 2001:db8::5"},
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
