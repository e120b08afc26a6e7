package pools

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// pool returns an auto-assign pool created at t0 plus one minute per byte of
// its name, so pools named in order are created in order unless a test says
// otherwise.
func pool(name string, ranges ...string) Pool {
	p := Pool{Name: name, AutoAssign: true, Created: t0.Add(time.Duration(len(name)) * time.Minute)}
	for _, r := range ranges {
		rg, err := ParseRange(r)
		if err != nil {
			panic(err)
		}
		p.Ranges = append(p.Ranges, rg)
	}
	return p
}

func manual(p Pool) Pool                { p.AutoAssign = false; return p }
func avoiding(p Pool) Pool              { p.AvoidBuggyIPs = true; return p }
func priority(n int, p Pool) Pool       { p.Priority = n; return p }
func created(at time.Time, p Pool) Pool { p.Created = at; return p }

func ips(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// svc returns a SingleStack IPv4 Service with the given key, changed by mods.
func svc(key string, mods ...func(*Service)) Service {
	s := Service{Key: key}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func fromPool(p string) func(*Service) { return func(s *Service) { s.Pool = p } }
func wanting(ss ...string) func(*Service) {
	return func(s *Service) { s.IPs = ips(ss...) }
}
func sharing(key string, ports ...int32) func(*Service) {
	return func(s *Service) {
		s.SharingKey = key
		for _, p := range ports {
			s.Ports = append(s.Ports, Port{"TCP", p})
		}
	}
}
func udp(port int32) func(*Service) {
	return func(s *Service) { s.Ports = append(s.Ports, Port{"UDP", port}) }
}
func local(selector string) func(*Service) {
	return func(s *Service) { s.Local, s.Selector = true, selector }
}
func stack(p Policy, fams ...Family) func(*Service) {
	return func(s *Service) { s.Policy, s.Families = p, fams }
}
func labels(l map[string]string) func(*Service)   { return func(s *Service) { s.Labels = l } }
func nsLabels(l map[string]string) func(*Service) { return func(s *Service) { s.NamespaceLabels = l } }

var ingressSvc = func(s *Service) { s.Ingress = true }

// hasLabel returns a Selector matching labels with k=v.
func hasLabel(k, v string) Selector {
	return func(l map[string]string) bool { return l[k] == v }
}

// newAllocator returns an allocator with the pools, which must all be usable.
func newAllocator(t testing.TB, pools ...Pool) *Allocator {
	t.Helper()
	a := New()
	rep := a.SetPools(pools)
	if len(rep.Invalid)+len(rep.Conflicts)+len(rep.Orphaned) > 0 {
		t.Fatalf("SetPools: %+v", rep)
	}
	return a
}

// mustAllocate allocates and checks the IPs (any pool).
func mustAllocate(t testing.TB, a *Allocator, s Service, want ...string) Assignment {
	t.Helper()
	got, err := a.Allocate(s)
	if err != nil {
		t.Fatalf("Allocate(%s): %v", s.Key, err)
	}
	if !slices.Equal(got.IPs, ips(want...)) {
		t.Fatalf("Allocate(%s) = %v, want %v", s.Key, got.IPs, want)
	}
	checkInvariants(t, a)
	return got
}

// failAllocate expects Allocate to fail with the reason and message.
func failAllocate(t testing.TB, a *Allocator, s Service, reason Reason, msg string) Assignment {
	t.Helper()
	got, err := a.Allocate(s)
	checkErr(t, "Allocate("+s.Key+")", err, reason, msg)
	checkInvariants(t, a)
	return got
}

func checkErr(t testing.TB, what string, err error, reason Reason, msg string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %v, want *Error %v %q", what, err, reason, msg)
	}
	if e.Reason != reason || e.Msg != msg {
		t.Fatalf("%s: error\n got: %v %s\nwant: %v %s", what, e.Reason, e.Msg, reason, msg)
	}
}

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

// defaultPool names the pool whose first addresses are reserved for the
// ingress Service, or "" if there is none.
func defaultPool(a *Allocator) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.def == nil {
		return ""
	}
	return a.def.Name
}

// checkInvariants recounts everything the allocator keeps incrementally and
// checks the rules that must hold after any sequence of calls.
func checkInvariants(t testing.TB, a *Allocator) {
	t.Helper()
	counters := map[string]map[Family]Counts{}
	for name := range a.pools {
		counters[name] = a.Counters(name)
	}
	def := defaultPool(a)

	a.mu.Lock()
	defer a.mu.Unlock()

	// Records and holders agree.
	held := map[netip.Addr][]string{}
	byKey := map[string]map[netip.Addr]int{}
	for k, rec := range a.services {
		if rec.svc.Key != k || len(rec.ips) == 0 {
			t.Fatalf("record %q: %+v", k, rec)
		}
		for i, ip := range rec.ips {
			if slices.ContainsFunc(rec.ips[:i], func(o netip.Addr) bool { return FamilyOf(o) == FamilyOf(ip) }) {
				t.Fatalf("%s holds two %v addresses: %v", k, FamilyOf(ip), rec.ips)
			}
			if want := slices.Index(rec.svc.Families, FamilyOf(ip)); want < 0 || i > 0 && want < slices.Index(rec.svc.Families, FamilyOf(rec.ips[i-1])) {
				t.Fatalf("%s holds %v, not in the order of its families %v", k, rec.ips, rec.svc.Families)
			}
			held[ip] = append(held[ip], k)
			if sk := rec.svc.SharingKey; sk != "" {
				if byKey[sk] == nil {
					byKey[sk] = map[netip.Addr]int{}
				}
				byKey[sk][ip]++
			}
		}
	}
	if len(held) != len(a.holders) {
		t.Fatalf("%d addresses held by records, %d in holders", len(held), len(a.holders))
	}
	for ip, keys := range held {
		slices.Sort(keys)
		if !slices.Equal(keys, a.holders[ip]) {
			t.Fatalf("%v: held by %v, holders say %v", ip, keys, a.holders[ip])
		}
		for i := range keys {
			for j := i + 1; j < len(keys); j++ {
				if why := clash(&a.services[keys[i]].svc, &a.services[keys[j]].svc); why != "" {
					t.Fatalf("%v is held by %s and %s, which cannot share: %s", ip, keys[i], keys[j], why)
				}
			}
		}
	}
	if len(byKey) != len(a.byKey) {
		t.Fatalf("byKey has %d keys, want %d", len(a.byKey), len(byKey))
	}
	for k, m := range byKey {
		if len(m) != len(a.byKey[k]) {
			t.Fatalf("byKey[%q] = %v, want %v", k, a.byKey[k], m)
		}
		for ip, n := range m {
			if a.byKey[k][ip] != n {
				t.Fatalf("byKey[%q] = %v, want %v", k, a.byKey[k], m)
			}
		}
	}

	// Every held address is in a usable pool and taken there, or orphaned.
	perSpace := map[*space]uint64{}
	for ip := range held {
		s := a.spaceOf(ip)
		p, ok := u128{}, false
		if s != nil {
			p, ok = s.pos(ip)
		}
		_, orphan := a.orphans[ip]
		if ok == orphan {
			t.Fatalf("%v: in a pool %v, orphaned %v", ip, ok, orphan)
		}
		if ok {
			if s.free.contains(p) {
				t.Fatalf("%v is held and free", ip)
			}
			perSpace[s]++
		}
	}
	for ip := range a.orphans {
		if held[ip] == nil {
			t.Fatalf("orphan %v is not held", ip)
		}
	}

	// Each space: a sound free set inside the ranges, counts that add up.
	if def != "" && (a.def == nil || a.def.Name != def || a.order[0] != a.def) {
		t.Fatalf("default pool %q is not the first in order", def)
	}
	for name, p := range a.pools {
		if p.Name != name {
			t.Fatalf("pool %q stored under %q", p.Name, name)
		}
		if !p.usable {
			if counters[name] != nil {
				t.Fatalf("unusable pool %q has counters %v", name, counters[name])
			}
			continue
		}
		for _, s := range p.spaces {
			if s == nil {
				continue
			}
			if s.pool != p {
				t.Fatalf("space of %q points at pool %q", name, s.pool.Name)
			}
			var in []span
			var total count
			for _, r := range s.ranges {
				if lo, hi, ok := s.positions(toU128(r.First), toU128(r.Last)); ok {
					if n := len(in); n > 0 && in[n-1].hi.inc() == lo {
						in[n-1].hi = hi // touching ranges make one interval
					} else {
						in = append(in, span{lo, hi})
					}
					total = total.plus(sizeOf(lo, hi))
				}
			}
			if total != s.total {
				t.Fatalf("pool %q %v: total %v, ranges hold %v", name, s.fam, s.total, total)
			}
			for _, f := range checkFreeSet(t, &s.free) {
				if !slices.ContainsFunc(in, func(r span) bool { return !f.lo.less(r.lo) && !r.hi.less(f.hi) }) {
					t.Fatalf("pool %q %v: free interval %v is outside the ranges", name, s.fam, f)
				}
			}
			if s.assigned != perSpace[s] {
				t.Fatalf("pool %q %v: assigned %d, recount %d", name, s.fam, s.assigned, perSpace[s])
			}
			avail := total.minus(count{v: u128{0, perSpace[s]}})
			if s.pool == a.def && !s.empty {
				if _, taken := a.holders[s.addr(s.first)]; !taken {
					avail = avail.minus(one)
				}
			}
			want := Counts{Assigned: perSpace[s], Available: avail.sat()}
			if got := counters[name][s.fam]; got != want {
				t.Fatalf("Counters(%q)[%v] = %+v, recount %+v", name, s.fam, got, want)
			}
		}
	}
}

func TestHelpersCatchBrokenState(t *testing.T) {
	// A checker that cannot fail is no check: break the state and see.
	a := newAllocator(t, pool("a", "10.0.0.0/30"))
	mustAllocate(t, a, svc("ns/x"), "10.0.0.1")
	a.mu.Lock()
	a.pools["a"].spaces[0].assigned++
	a.mu.Unlock()
	ft := &fakeT{}
	func() {
		defer func() { _ = recover() }()
		checkInvariants(ft, a)
	}()
	if !strings.Contains(ft.msg, "assigned 2, recount 1") {
		t.Fatalf("checker missed a wrong count: %q", ft.msg)
	}
}

// fakeT records the first failure and stops the check.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	if f.msg == "" {
		f.msg = strings.TrimSpace(fmt.Sprintf(format, args...))
	}
	panic("stop")
}
