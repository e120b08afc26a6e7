package pools

import (
	"strings"
	"testing"
)

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
		if d := defaultPool(a); d != "b" {
			t.Fatalf("DefaultPool = %q", d)
		}
		mustAllocate(t, a, svc("ns/inb", fromPool("b")), "10.1.0.1")
		mustAllocate(t, a, svc("ing/ing", ingressSvc), "10.1.0.0")
		mustAllocate(t, a, svc("ns/ina", fromPool("a")), "10.0.0.0")

		rep := a.SetPools([]Pool{priority(1, pool("a", "10.0.0.0/29")), priority(2, pool("b", "10.1.0.0/29"))})
		if len(rep.Orphaned) > 0 {
			t.Fatalf("a priority change orphaned %v", rep.Orphaned)
		}
		if d := defaultPool(a); d != "a" {
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
