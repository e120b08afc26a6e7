package pools

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// chooser makes the random choices of an op sequence, from a seeded
// generator or from fuzz input.
type chooser struct {
	rng  *rand.Rand
	data []byte
}

func (c *chooser) intn(n int) int {
	if c.rng != nil {
		return c.rng.IntN(n)
	}
	if len(c.data) == 0 {
		return 0
	}
	b := c.data[0]
	c.data = c.data[1:]
	return int(b) % n
}

func (c *chooser) chance(percent int) bool { return c.intn(100) < percent }

func (c *chooser) done() bool { return c.rng == nil && len(c.data) == 0 }

// Small pools, so that sharing, exhaustion, conflicts and orphans happen
// often.
var (
	opRanges = []string{
		"10.0.0.0/29", "10.0.0.8/29", "10.0.0.0/28", "10.0.0.6-10.0.0.9", "10.0.1.253-10.0.2.2",
		"2001:db8::/125", "2001:db8::8/125", "2001:db8::/124", "2001:db8::ffff", "10.0.3.0/32",
	}
	opIPs = []string{
		"10.0.0.0", "10.0.0.1", "10.0.0.5", "10.0.0.7", "10.0.0.9", "10.0.0.15", "10.0.1.255", "10.0.2.0",
		"10.0.2.1", "10.0.3.0", "10.9.9.9", "2001:db8::", "2001:db8::1", "2001:db8::9", "2001:db8::ffff", "2001:db8:9::1",
	}
	opKeys = []string{
		"ns1/ing", "ns1/a", "ns1/b", "ns1/c", "ns1/d", "ns1/e", "ns1/f",
		"ns2/a", "ns2/b", "ns2/c", "ns2/d", "ns2/e", "ns2/f", "ns2/g",
	}
	opPoolNames = []string{"a", "b", "c", "d"}
)

func randomPools(c *chooser) []Pool {
	var out []Pool
	for _, name := range opPoolNames {
		if c.chance(25) {
			continue
		}
		p := Pool{
			Name:          name,
			AutoAssign:    c.chance(80),
			AvoidBuggyIPs: c.chance(30),
			Priority:      c.intn(3),
			Created:       t0.Add(time.Duration(c.intn(3)) * time.Hour),
		}
		for range 1 + c.intn(2) {
			p.Ranges = append(p.Ranges, mustParse(opRanges[c.intn(len(opRanges))]))
		}
		if c.chance(15) {
			p.Namespaces = []string{"ns1"}
		}
		if c.chance(10) {
			p.ServiceSelectors = []Selector{hasLabel("app", "web")}
		}
		if c.chance(10) {
			p.NamespaceSelectors = []Selector{hasLabel("team", "blue")}
		}
		out = append(out, p)
	}
	return out
}

func mustParse(s string) Range {
	r, err := ParseRange(s)
	if err != nil {
		panic(err)
	}
	return r
}

func randomService(c *chooser, key string) Service {
	s := Service{Key: key, Ingress: key == "ns1/ing"}
	s.Policy = Policy(c.intn(3))
	switch c.intn(4) {
	case 0:
	case 1:
		s.Families = []Family{IPv4}
	case 2:
		s.Families = []Family{IPv6}
	default:
		s.Families = []Family{IPv6, IPv4}
	}
	if s.Policy == PreferDualStack && c.chance(50) {
		s.Families = []Family{IPv4, IPv6}
	}
	if c.chance(15) {
		s.Pool = append(slices.Clone(opPoolNames), "zz")[c.intn(len(opPoolNames)+1)]
	}
	if c.chance(15) {
		for range 1 + c.intn(2) {
			s.IPs = append(s.IPs, netip.MustParseAddr(opIPs[c.intn(len(opIPs))]))
		}
	}
	if c.chance(60) {
		s.SharingKey = []string{"k1", "k2"}[c.intn(2)]
	}
	for range c.intn(3) {
		s.Ports = append(s.Ports, Port{[]string{"TCP", "UDP"}[c.intn(2)], []int32{53, 80, 443}[c.intn(3)]})
	}
	if c.chance(25) {
		s.Local, s.Selector = true, []string{"app=a", "app=b"}[c.intn(2)]
	}
	if c.chance(50) {
		s.Labels = map[string]string{"app": "web"}
	}
	if c.chance(50) {
		s.NamespaceLabels = map[string]string{"team": "blue"}
	}
	return s
}

// runOps applies random operations and checks the invariants after each.
func runOps(t testing.TB, c *chooser, maxOps int) {
	a := New()
	orphaned := map[string]bool{} // may hold addresses outside every pool
	setPools := func() {
		rep := a.SetPools(randomPools(c))
		orphaned = map[string]bool{}
		for _, k := range rep.Orphaned {
			orphaned[k] = true
		}
	}
	setPools()
	for op := 0; op < maxOps && !c.done(); op++ {
		key := opKeys[c.intn(len(opKeys))]
		before, had := a.Lookup(key)
		var what string
		switch n := c.intn(20); {
		case n < 10:
			s := randomService(c, key)
			what = fmt.Sprintf("Allocate(%+v)", s)
			got, err := a.Allocate(s)
			after, has := a.Lookup(key)
			if err != nil {
				// Kept addresses are put in the order of the new families.
				if has && !(had && sameAddrs(after.IPs, before.IPs)) || !slices.Equal(got.IPs, after.IPs) {
					t.Fatalf("op %d %s failed with %v but changed %v to %v (returned %v)", op, what, err, before, after, got)
				}
				break
			}
			delete(orphaned, key)
			checkGranted(t, a, s, got, had)
			if again, err := a.Allocate(s); err != nil || !slices.Equal(again.IPs, got.IPs) || again.Pool != got.Pool {
				t.Fatalf("op %d %s = %v, then %v %v", op, what, got, again, err)
			}
		case n < 14:
			what = "Release(" + key + ")"
			a.Release(key)
			delete(orphaned, key)
			if _, ok := a.Lookup(key); ok {
				t.Fatalf("op %d %s left an assignment", op, what)
			}
		case n < 18:
			s := randomService(c, key)
			var want []netip.Addr
			for range 1 + c.intn(2) {
				want = append(want, netip.MustParseAddr(opIPs[c.intn(len(opIPs))]))
			}
			what = fmt.Sprintf("Assign(%+v, %v)", s, want)
			got, err := a.Assign(s, want)
			after, has := a.Lookup(key)
			if err != nil {
				if has != had || !slices.Equal(after.IPs, before.IPs) {
					t.Fatalf("op %d %s failed with %v but changed %v to %v", op, what, err, before, after)
				}
				break
			}
			delete(orphaned, key)
			if !sameAddrs(got.IPs, want) {
				t.Fatalf("op %d %s recorded %v", op, what, got)
			}
		default:
			what = "SetPools"
			setPools()
		}
		checkInvariants(t, a)
		a.mu.Lock()
		for ip := range a.orphans {
			for _, k := range a.holders[ip] {
				if !orphaned[k] {
					a.mu.Unlock()
					t.Fatalf("op %d %s: %s holds %v outside every pool and was not reported", op, what, k, ip)
				}
			}
		}
		a.mu.Unlock()
	}
}

// checkGranted checks a successful allocation against the request.
func checkGranted(t testing.TB, a *Allocator, s Service, got Assignment, had bool) {
	t.Helper()
	n, _ := normalize(s)
	fail := func(why string) {
		t.Helper()
		t.Fatalf("Allocate(%+v) = %+v: %s", s, got, why)
	}
	switch {
	case len(got.IPs) == 0:
		fail("no IPs")
	case s.Policy == SingleStack && len(got.IPs) != 1:
		fail("SingleStack needs one IP")
	case s.Policy == RequireDualStack && (len(got.IPs) != 2 || FamilyOf(got.IPs[0]) == FamilyOf(got.IPs[1])):
		fail("RequireDualStack needs one of each family")
	case len(s.IPs) > 0 && !sameAddrs(got.IPs, s.IPs):
		fail("not the requested IPs")
	case s.Pool != "" && got.Pool != s.Pool:
		fail("not the requested pool")
	case FamilyOf(got.IPs[0]) != n.Families[0] && len(got.IPs) == len(n.Families):
		fail("the primary family is not first")
	}
	if !had && !s.Ingress && len(s.IPs) == 0 {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, ip := range got.IPs {
			if a.isReserved(ip) {
				fail("a new Service got the ingress address")
			}
		}
	}
}

func sameAddrs(x, y []netip.Addr) bool {
	return len(x) == len(y) && !slices.ContainsFunc(x, func(ip netip.Addr) bool { return !slices.Contains(y, ip) })
}

func TestRandomOps(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			runOps(t, &chooser{rng: rand.New(rand.NewPCG(seed, 7))}, 1500)
		})
	}
}

func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13"))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 4 {
		b := make([]byte, 400)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runOps(t, &chooser{data: data}, 300)
	})
}
