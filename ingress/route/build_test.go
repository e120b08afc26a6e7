package route

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func at(ing Ingress, minutes int) Ingress {
	ing.Created = t0.Add(time.Duration(minutes) * time.Minute)
	return ing
}

func in(ns string, ing Ingress) Ingress {
	ing.Namespace = ns
	return ing
}

func TestMerge(t *testing.T) {
	tab := mustBuild(t,
		hostIngress("api", "shop.example", prefix("/api", "api")),
		hostIngress("web", "shop.example", prefix("/", "web"), exact("/api", "api-exact")),
		hostIngress("wild", "*.shop.example", prefix("/", "wild")),
	)
	checkRequests(t, tab, []request{
		{"path from the first Ingress", "shop.example", "/api/cart", "api"},
		{"path from the second Ingress", "shop.example", "/index.html", "web"},
		{"Exact from the second Ingress beats Prefix of the first", "shop.example", "/api", "api-exact"},
		{"wildcard host unaffected", "www.shop.example", "/api", "wild"},
	})
	got, _ := tab.Match("shop.example", "/api/cart")
	if got.Ingress != "ns/api" || got.Namespace != "ns" {
		t.Errorf("backend attributed to %q in namespace %q, want ns/api in ns", got.Ingress, got.Namespace)
	}
	got, _ = tab.Match("shop.example", "/")
	if got.Ingress != "ns/web" {
		t.Errorf("backend attributed to %q, want ns/web", got.Ingress)
	}
}

func TestBackendNamespaceIsTheIngresses(t *testing.T) {
	p := prefix("/", "web")
	p.Backend.Namespace = "elsewhere" // an Ingress cannot point into another namespace
	p.Backend.Ingress = "forged/name"
	tab := mustBuild(t, in("team-a", hostIngress("web", "a.example", p)))
	got, _ := tab.Match("a.example", "/")
	if got.Namespace != "team-a" || got.Ingress != "team-a/web" {
		t.Errorf("Match = %+v, want namespace team-a and Ingress team-a/web", got)
	}
}

func TestConflicts(t *testing.T) {
	def := func(name string) *Backend { b := svc(name, 80); return &b }
	withDefault := func(name string, minutes int, service string) Ingress {
		return Ingress{Namespace: "ns", Name: name, Created: t0.Add(time.Duration(minutes) * time.Minute), DefaultBackend: def(service)}
	}
	tests := []struct {
		name string
		ings []Ingress
		// Match(host, path) must give service want.
		host, path, want string
		// Rejections, as "Kind loser winner host path".
		rejected []string
	}{
		{
			name: "same host, path and type: the older Ingress wins",
			ings: []Ingress{
				at(hostIngress("new", "a.example", prefix("/x", "new")), 5),
				at(hostIngress("old", "a.example", prefix("/x", "old")), 1),
			},
			host: "a.example", path: "/x", want: "old",
			rejected: []string{"Conflict ns/new ns/old a.example /x"},
		},
		{
			name: "same age: namespace decides",
			ings: []Ingress{
				in("b", hostIngress("x", "a.example", prefix("/x", "from-b"))),
				in("a", hostIngress("z", "a.example", prefix("/x", "from-a"))),
			},
			host: "a.example", path: "/x", want: "from-a",
			rejected: []string{"Conflict b/x a/z a.example /x"},
		},
		{
			name: "same age and namespace: name decides",
			ings: []Ingress{
				hostIngress("zeta", "a.example", prefix("/x", "zeta")),
				hostIngress("alpha", "a.example", prefix("/x", "alpha")),
			},
			host: "a.example", path: "/x", want: "alpha",
			rejected: []string{"Conflict ns/zeta ns/alpha a.example /x"},
		},
		{
			name: "age beats name",
			ings: []Ingress{
				at(hostIngress("alpha", "a.example", prefix("/x", "alpha")), 2),
				at(hostIngress("zeta", "a.example", prefix("/x", "zeta")), 1),
			},
			host: "a.example", path: "/x", want: "zeta",
			rejected: []string{"Conflict ns/alpha ns/zeta a.example /x"},
		},
		{
			name: "same backend twice is no conflict",
			ings: []Ingress{
				at(hostIngress("new", "a.example", prefix("/x", "same")), 2),
				at(hostIngress("old", "a.example", prefix("/x", "same")), 1),
			},
			host: "a.example", path: "/x", want: "same",
		},
		{
			name: "same service on another port conflicts",
			ings: []Ingress{
				at(hostIngress("new", "a.example", Path{Path: "/x", Type: Prefix, Backend: svc("s", 81)}), 2),
				at(hostIngress("old", "a.example", Path{Path: "/x", Type: Prefix, Backend: svc("s", 80)}), 1),
			},
			host: "a.example", path: "/x", want: "s",
			rejected: []string{"Conflict ns/new ns/old a.example /x"},
		},
		{
			name: "same service name in another namespace conflicts",
			ings: []Ingress{
				at(in("team-b", hostIngress("web", "a.example", prefix("/x", "s"))), 2),
				at(in("team-a", hostIngress("web", "a.example", prefix("/x", "s"))), 1),
			},
			host: "a.example", path: "/x", want: "s",
			rejected: []string{"Conflict team-b/web team-a/web a.example /x"},
		},
		{
			name: "Prefix /x/ and Prefix /x are the same path",
			ings: []Ingress{
				at(hostIngress("new", "a.example", prefix("/x/", "new")), 2),
				at(hostIngress("old", "a.example", prefix("/x", "old")), 1),
			},
			host: "a.example", path: "/x/y", want: "old",
			rejected: []string{"Conflict ns/new ns/old a.example /x/"},
		},
		{
			name: "ImplementationSpecific and Prefix are the same type",
			ings: []Ingress{
				at(hostIngress("new", "a.example", Path{Path: "/x", Type: ImplementationSpecific, Backend: svc("new", 80)}), 2),
				at(hostIngress("old", "a.example", prefix("/x", "old")), 1),
			},
			host: "a.example", path: "/x", want: "old",
			rejected: []string{"Conflict ns/new ns/old a.example /x"},
		},
		{
			name: "Exact and Prefix on the same path do not conflict",
			ings: []Ingress{
				at(hostIngress("new", "a.example", exact("/x", "new")), 2),
				at(hostIngress("old", "a.example", prefix("/x", "old")), 1),
			},
			host: "a.example", path: "/x", want: "new",
		},
		{
			name: "Exact /x/ and Exact /x are different paths",
			ings: []Ingress{
				at(hostIngress("new", "a.example", exact("/x/", "new")), 2),
				at(hostIngress("old", "a.example", exact("/x", "old")), 1),
			},
			host: "a.example", path: "/x/", want: "new",
		},
		{
			name: "host case does not make a different host",
			ings: []Ingress{
				at(hostIngress("new", "A.Example", prefix("/x", "new")), 2),
				at(hostIngress("old", "a.example", prefix("/x", "old")), 1),
			},
			host: "a.example", path: "/x", want: "old",
			rejected: []string{"Conflict ns/new ns/old A.Example /x"},
		},
		{
			name: "a wildcard and an exact host do not conflict",
			ings: []Ingress{
				at(hostIngress("new", "*.example", prefix("/x", "new")), 2),
				at(hostIngress("old", "a.example", prefix("/x", "old")), 1),
			},
			host: "b.example", path: "/x", want: "new",
		},
		{
			name: "one Ingress contradicting itself: the first path wins",
			ings: []Ingress{
				hostIngress("self", "a.example", prefix("/x", "first"), prefix("/x", "second")),
			},
			host: "a.example", path: "/x", want: "first",
			rejected: []string{"Conflict ns/self ns/self a.example /x"},
		},
		{
			name: "two defaultBackends: the older wins",
			ings: []Ingress{
				withDefault("new", 2, "new"),
				withDefault("old", 1, "old"),
				withDefault("newest", 3, "newest"),
			},
			host: "any.example", path: "/", want: "old",
			rejected: []string{"Conflict ns/new ns/old  ", "Conflict ns/newest ns/old  "},
		},
		{
			name: "two defaultBackends to the same Service: no conflict",
			ings: []Ingress{
				withDefault("new", 2, "same"),
				withDefault("old", 1, "same"),
			},
			host: "any.example", path: "/", want: "same",
		},
		{
			name: "a defaultBackend from an Ingress with rules conflicts too",
			ings: []Ingress{
				withDefault("catch-all", 2, "catch-all"),
				func() Ingress {
					i := at(hostIngress("rules", "a.example", prefix("/a", "a")), 1)
					i.DefaultBackend = def("rules-default")
					return i
				}(),
			},
			host: "b.example", path: "/", want: "rules-default",
			rejected: []string{"Conflict ns/catch-all ns/rules  "},
		},
		{
			name: "host-less rules merge and conflict like hosts",
			ings: []Ingress{
				at(hostIngress("new", "", prefix("/x", "new"), prefix("/y", "y")), 2),
				at(hostIngress("old", "", prefix("/x", "old")), 1),
			},
			host: "whatever.example", path: "/x", want: "old",
			rejected: []string{"Conflict ns/new ns/old  /x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, rej := Build(tt.ings)
			if got := rejectionKeys(rej); !slices.Equal(got, tt.rejected) {
				t.Errorf("rejections = %q, want %q\n%v", got, tt.rejected, rej)
			}
			for _, r := range rej {
				if !strings.Contains(r.Reason, r.Winner) {
					t.Errorf("reason %q does not name the winner %s", r.Reason, r.Winner)
				}
			}
			checkRequests(t, tab, []request{{"match", tt.host, tt.path, tt.want}})
		})
	}
}

func TestTLSConflicts(t *testing.T) {
	a := at(hostIngress("new", "a.example", prefix("/", "a")), 2)
	a.TLS = []TLS{{Hosts: []string{"a.example", "*.a.example"}, SecretName: "new-cert"}}
	b := at(hostIngress("old", "a.example", prefix("/", "a")), 1)
	b.TLS = []TLS{
		{Hosts: []string{"a.example"}, SecretName: "old-cert"},
		{Hosts: []string{"a.example"}, SecretName: "old-cert"},   // repeated: fine
		{Hosts: []string{"a.example"}, SecretName: "other-cert"}, // contradicts itself
	}
	tab, rej := Build([]Ingress{a, b})
	want := []string{"Conflict ns/old ns/old a.example ", "Conflict ns/new ns/old a.example "}
	if got := rejectionKeys(rej); !slices.Equal(got, want) {
		t.Errorf("rejections = %q, want %q", got, want)
	}
	if got, _ := tab.TLS("a.example"); got.Name != "old-cert" {
		t.Errorf("TLS(a.example) = %v, want old-cert", got)
	}
	if got, _ := tab.TLS("x.a.example"); got.Name != "new-cert" {
		t.Errorf("TLS(x.a.example) = %v, want new-cert (no conflict on the wildcard)", got)
	}
}

func TestInvalidInput(t *testing.T) {
	good := prefix("/ok", "ok")
	tests := []struct {
		name string
		ing  Ingress
		// substring of the reason
		reason string
	}{
		{"path not starting with /", hostIngress("i", "a.example", good, prefix("foo", "x")), "must start with '/'"},
		{"Exact path not starting with /", hostIngress("i", "a.example", good, exact("foo", "x")), "must start with '/'"},
		{"empty Prefix path", hostIngress("i", "a.example", good, prefix("", "x")), "must start with '/'"},
		{"ImplementationSpecific not starting with /", hostIngress("i", "a.example", good, Path{Path: "x", Backend: svc("x", 80)}), "must start with '/'"},
		{"double slash in Prefix", hostIngress("i", "a.example", good, prefix("/a//b", "x")), "must not contain '//'"},
		{"dot-dot segment in Exact", hostIngress("i", "a.example", good, exact("/a/../b", "x")), "must not contain '/../'"},
		{"dot segment", hostIngress("i", "a.example", good, prefix("/a/./b", "x")), "must not contain '/./'"},
		{"encoded slash", hostIngress("i", "a.example", good, prefix("/a%2Fb", "x")), "must not contain '%2F'"},
		{"ends with dot-dot", hostIngress("i", "a.example", good, prefix("/a/..", "x")), "must not end with '/..'"},
		{"ends with dot", hostIngress("i", "a.example", good, exact("/a/.", "x")), "must not end with '/.'"},
		{"unknown path type", hostIngress("i", "a.example", good, Path{Path: "/x", Type: 7, Backend: svc("x", 80)}), "unknown path type"},
		{"no service name", hostIngress("i", "a.example", good, Path{Path: "/x", Type: Prefix, Backend: Backend{Port: Port{Number: 80}}}), "names no service"},
		{"no port", hostIngress("i", "a.example", good, Path{Path: "/x", Type: Prefix, Backend: Backend{Service: "s"}}), "port number 0"},
		{"port out of range", hostIngress("i", "a.example", good, Path{Path: "/x", Type: Prefix, Backend: svc("s", 65536)}), "port number 65536"},
		{"port name and number", hostIngress("i", "a.example", good, Path{Path: "/x", Type: Prefix, Backend: Backend{Service: "s", Port: Port{Number: 80, Name: "http"}}}), "both a port name and a port number"},
		{"resource and service", hostIngress("i", "a.example", good, Path{Path: "/x", Type: Prefix, Backend: Backend{Service: "s", Port: Port{Number: 80}, Resource: "g/K/n"}}), "both a resource and a service"},
		{"IPv4 host", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "10.0.0.1", Paths: []Path{good}}}}, "is an IP address"},
		{"IPv6 host", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "::1", Paths: []Path{good}}}}, "is an IP address"},
		{"host with port", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "b.example:80", Paths: []Path{good}}}}, "not a DNS name"},
		{"wildcard in the middle", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "a.*.example", Paths: []Path{good}}}}, "not a DNS name"},
		{"bare wildcard", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "*", Paths: []Path{good}}}}, "not a DNS name"},
		{"wildcard without a name", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "*.", Paths: []Path{good}}}}, "no name after the wildcard"},
		{"partial wildcard label", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "foo*.example", Paths: []Path{good}}}}, "not a DNS name"},
		{"empty label", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "b..example", Paths: []Path{good}}}}, "not a DNS name"},
		{"label starting with a hyphen", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "-b.example", Paths: []Path{good}}}}, "must not start or end with '-'"},
		{"label of 64 characters", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: strings.Repeat("b", 64) + ".example", Paths: []Path{good}}}}, "1 to 63 characters"},
		{"host of 254 characters", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: strings.Repeat("b.", 126) + "bb", Paths: []Path{good}}}}, "longer than 253"},
		{"underscore in host", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}, {Host: "b_c.example", Paths: []Path{good}}}}, "only letters, digits"},
		{"neither rules nor defaultBackend", Ingress{Namespace: "ns", Name: "i", TLS: []TLS{{Hosts: []string{"a.example"}, SecretName: "s"}}}, "neither rules nor a defaultBackend"},
		{"invalid defaultBackend", Ingress{Namespace: "ns", Name: "i", DefaultBackend: &Backend{Service: "s"}, Rules: []Rule{{Host: "a.example", Paths: []Path{good}}}}, "defaultBackend service \"s\" has port number 0"},
		{"TLS without hosts and without rule hosts", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Paths: []Path{good}}}, TLS: []TLS{{SecretName: "s"}}}, "lists no hosts"},
		{"TLS host invalid", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}}, TLS: []TLS{{Hosts: []string{"a.example", "x y"}, SecretName: "s"}}}, "TLS host \"x y\""},
		{"TLS host empty", Ingress{Namespace: "ns", Name: "i", Rules: []Rule{{Host: "a.example", Paths: []Path{good}}}, TLS: []TLS{{Hosts: []string{"a.example", ""}, SecretName: "s"}}}, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, rej := Build([]Ingress{tt.ing})
			if len(rej) != 1 {
				t.Fatalf("got %d rejections, want 1: %v", len(rej), rej)
			}
			r := rej[0]
			if r.Kind != Invalid || r.Ingress != "ns/i" || r.Winner != "" || !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("rejection = %+v, want Invalid for ns/i with reason containing %q", r, tt.reason)
			}
			// What was valid still routes.
			if len(tt.ing.Rules) > 0 {
				if _, ok := tab.Match("a.example", "/ok"); !ok {
					t.Errorf("the valid rest of the Ingress does not route")
				}
			}
		})
	}
}

func TestDuplicateIngress(t *testing.T) {
	first := hostIngress("dup", "a.example", prefix("/", "first"))
	second := hostIngress("dup", "a.example", prefix("/", "second"))
	tab, rej := Build([]Ingress{first, second})
	if got, want := rejectionKeys(rej), []string{"Invalid ns/dup   "}; !slices.Equal(got, want) {
		t.Errorf("rejections = %q, want %q", got, want)
	}
	checkRequests(t, tab, []request{{"first copy wins", "a.example", "/", "first"}})
}

// TestBuildDeterministic: the order of the input does not matter.
func TestBuildDeterministic(t *testing.T) {
	ings := benchIngresses(50, 4)
	// Add conflicts and ties so that order would show.
	for i := range 10 {
		dup := hostIngress("dup-"+string(rune('a'+i)), "host-1.example.com", prefix("/p1", "dup"), prefix("/x", "x"+string(rune('a'+i))))
		dup.Created = ings[i].Created
		d := svc("default-"+string(rune('a'+i)), 80)
		dup.DefaultBackend = &d
		dup.TLS = []TLS{{Hosts: []string{"host-1.example.com"}, SecretName: "s" + string(rune('a'+i))}}
		ings = append(ings, dup)
	}
	want, wantRej := Build(ings)
	if len(wantRej) == 0 {
		t.Fatal("the input should have conflicts")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(ings)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, gotRej := Build(shuffled)
		if !reflect.DeepEqual(got, want) {
			t.Fatal("Build of shuffled input gave a different Table")
		}
		if !reflect.DeepEqual(gotRej, wantRej) {
			t.Fatalf("Build of shuffled input gave different rejections:\n%v\nwant\n%v", gotRej, wantRej)
		}
	}
}

func rejectionKeys(rej []Rejection) []string {
	var keys []string
	for _, r := range rej {
		keys = append(keys, strings.Join([]string{r.Kind.String(), r.Ingress, r.Winner, r.Host, r.Path}, " "))
	}
	return keys
}

func TestNoSSLRedirectFollowsItsIngress(t *testing.T) {
	off := hostIngress("off", "shop.example", prefix("/api", "api"))
	off.NoSSLRedirect = true
	off.DefaultBackend = &Backend{Service: "fallback", Port: Port{Number: 80}}
	on := hostIngress("on", "shop.example", prefix("/", "web"), prefix("/api", "api"))
	tab := mustBuild(t, at(off, 0), at(on, 1))
	for _, c := range []struct {
		host, path string
		want       bool
	}{
		{"shop.example", "/api/x", true}, // the older Ingress "off" owns /api; the same target in "on" is no conflict
		{"shop.example", "/", false},
		{"other.example", "/", true}, // defaultBackend of "off"
	} {
		got, ok := tab.Match(c.host, c.path)
		if !ok || got.NoSSLRedirect != c.want {
			t.Errorf("Match(%q, %q) = %+v, %v; want NoSSLRedirect %v", c.host, c.path, got, ok, c.want)
		}
	}
}

// A canary joins the route of the same host and path, whichever Ingress is
// older; a canary without a main route, or a second canary, is rejected.
func TestCanaryRoutes(t *testing.T) {
	canary := func(name string, ps ...Path) Ingress {
		i := hostIngress(name, "c.example", ps...)
		i.Canary = &Canary{Weight: 10, WeightTotal: 100}
		return i
	}
	first := canary("first", prefix("/", "v2"), prefix("/orphan", "v2"))
	second := canary("second", prefix("/", "v3"))
	second.Created = t0.Add(time.Second)
	main := hostIngress("main", "c.example", prefix("/", "v1"))
	main.Created = t0.Add(2 * time.Second)
	tab, rej := Build([]Ingress{second, main, first})
	be, ok := tab.Match("c.example", "/x")
	if !ok || be.Service != "v1" || be.Canary == nil || be.Canary.Backend.Service != "v2" || be.Canary.Backend.Ingress != "ns/first" || be.Canary.Weight != 10 {
		t.Fatalf("c.example/x: %+v, want v1 with the first canary", be)
	}
	if _, ok := tab.Match("c.example", "/orphan"); !ok {
		t.Error("/orphan should still match the main route's /")
	}
	if len(rej) != 2 || rej[0].Ingress != "ns/first" || rej[0].Kind != Invalid || rej[0].Path != "/orphan" ||
		rej[1].Ingress != "ns/second" || rej[1].Kind != Conflict {
		t.Errorf("rejections %v, want first's orphan path (Invalid) and second (Conflict)", rej)
	}
}
