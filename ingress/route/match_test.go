package route

import (
	"strings"
	"testing"
	"time"
)

// hostIngress builds an Ingress with one rule, for host.
func hostIngress(name, host string, ps ...Path) Ingress {
	return Ingress{Namespace: "ns", Name: name, Created: t0, Rules: []Rule{{Host: host, Paths: ps}}}
}

func prefix(p, service string) Path { return Path{Path: p, Type: Prefix, Backend: svc(service, 80)} }
func exact(p, service string) Path  { return Path{Path: p, Type: Exact, Backend: svc(service, 80)} }

// TestSpecPathExamples encodes the examples table of the Ingress
// documentation (concepts/services-networking/ingress, "Examples").
func TestSpecPathExamples(t *testing.T) {
	tests := []struct {
		name  string
		paths []Path
		req   string
		want  string
	}{
		{"Prefix / matches all paths", []Path{prefix("/", "root")}, "/anything/at/all", "root"},
		{"Exact /foo matches /foo", []Path{exact("/foo", "foo")}, "/foo", "foo"},
		{"Exact /foo does not match /bar", []Path{exact("/foo", "foo")}, "/bar", ""},
		{"Exact /foo does not match /foo/", []Path{exact("/foo", "foo")}, "/foo/", ""},
		{"Exact /foo/ does not match /foo", []Path{exact("/foo/", "foo")}, "/foo", ""},
		{"Prefix /foo matches /foo", []Path{prefix("/foo", "foo")}, "/foo", "foo"},
		{"Prefix /foo matches /foo/", []Path{prefix("/foo", "foo")}, "/foo/", "foo"},
		{"Prefix /foo/ matches /foo", []Path{prefix("/foo/", "foo")}, "/foo", "foo"},
		{"Prefix /foo/ matches /foo/", []Path{prefix("/foo/", "foo")}, "/foo/", "foo"},
		{"Prefix /aaa/bb does not match /aaa/bbb", []Path{prefix("/aaa/bb", "bb")}, "/aaa/bbb", ""},
		{"Prefix /aaa/bbb matches /aaa/bbb", []Path{prefix("/aaa/bbb", "bbb")}, "/aaa/bbb", "bbb"},
		{"Prefix /aaa/bbb/ matches /aaa/bbb, ignoring the trailing slash", []Path{prefix("/aaa/bbb/", "bbb")}, "/aaa/bbb", "bbb"},
		{"Prefix /aaa/bbb matches /aaa/bbb/, matching the trailing slash", []Path{prefix("/aaa/bbb", "bbb")}, "/aaa/bbb/", "bbb"},
		{"Prefix /aaa/bbb matches subpath /aaa/bbb/ccc", []Path{prefix("/aaa/bbb", "bbb")}, "/aaa/bbb/ccc", "bbb"},
		{"Prefix /aaa/bbb does not match string prefix /aaa/bbbxyz", []Path{prefix("/aaa/bbb", "bbb")}, "/aaa/bbbxyz", ""},
		{"Prefix /, /aaa: /aaa/ccc matches /aaa", []Path{prefix("/", "root"), prefix("/aaa", "aaa")}, "/aaa/ccc", "aaa"},
		{"Prefix /, /aaa, /aaa/bbb: /aaa/bbb matches /aaa/bbb", []Path{prefix("/", "root"), prefix("/aaa", "aaa"), prefix("/aaa/bbb", "bbb")}, "/aaa/bbb", "bbb"},
		{"Prefix /, /aaa, /aaa/bbb: /ccc matches /", []Path{prefix("/", "root"), prefix("/aaa", "aaa"), prefix("/aaa/bbb", "bbb")}, "/ccc", "root"},
		{"Prefix /aaa does not match /ccc", []Path{prefix("/aaa", "aaa")}, "/ccc", ""},
		{"Mixed Prefix /foo and Exact /foo: /foo prefers Exact", []Path{prefix("/foo", "p"), exact("/foo", "e")}, "/foo", "e"},
		{"Mixed Prefix /foo and Exact /foo: /foo/ takes Prefix", []Path{prefix("/foo", "p"), exact("/foo", "e")}, "/foo/", "p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustBuild(t, hostIngress("spec", "spec.example", tt.paths...))
			checkRequests(t, tab, []request{{tt.req, "spec.example", tt.req, tt.want}})
		})
	}
}

func TestPathEdgeCases(t *testing.T) {
	tab := mustBuild(t, hostIngress("edges", "edge.example",
		prefix("/foo", "foo"),
		prefix("/foo/bar/", "foobar"),
		exact("/foo/bar", "foobar-exact"),
		Path{Path: "/impl", Type: ImplementationSpecific, Backend: svc("impl", 80)},
		exact("/re.*[a-z]+$", "literal"),
		exact("/Case", "case"),
		prefix("/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6/7/8/9/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p", "deep"),
	))
	long := "/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6/7/8/9/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p"
	checkRequests(t, tab, []request{
		{"longest prefix wins over shorter", "edge.example", "/foo/bar/baz", "foobar"},
		{"exact beats a prefix of the same path", "edge.example", "/foo/bar", "foobar-exact"},
		{"prefix with trailing slash in rule matches with trailing slash in request", "edge.example", "/foo/bar/", "foobar"},
		{"string prefix of an element does not match", "edge.example", "/foo/barbaz", "foo"},
		{"ImplementationSpecific is Prefix: itself", "edge.example", "/impl", "impl"},
		{"ImplementationSpecific is Prefix: subpath", "edge.example", "/impl/x", "impl"},
		{"ImplementationSpecific is Prefix: not a string prefix", "edge.example", "/implx", ""},
		{"Exact path with regex characters is literal", "edge.example", "/re.*[a-z]+$", "literal"},
		{"Exact path with regex characters does not match as a regex", "edge.example", "/reXabc", ""},
		{"Exact is case-sensitive", "edge.example", "/case", ""},
		{"Exact is case-sensitive, matching case", "edge.example", "/Case", "case"},
		{"dot-dot is not cleaned: /foo/../x stays under /foo", "edge.example", "/foo/../x", "foo"},
		{"double slash is an empty element: //foo is not under /foo", "edge.example", "//foo", ""},
		{"prefix with double slash inside the request", "edge.example", "/foo//bar", "foo"},
		{"empty path is /", "edge.example", "", ""},
		{"query-like text in path is literal", "edge.example", "/foo?x=1", ""},
		{"prefix longer than 64 bytes", "edge.example", long + "/q", "deep"},
		{"prefix longer than 64 bytes, not a string prefix", "edge.example", long + "q", ""},
		{"percent-encoded slash is literal", "edge.example", "/foo%2Fbar", ""},
	})

	tab = mustBuild(t,
		hostIngress("root", "root.example", prefix("/", "root"), exact("/", "root-exact")),
		hostIngress("empty", "empty.example", Path{Path: "", Type: ImplementationSpecific, Backend: svc("empty", 80)}),
	)
	checkRequests(t, tab, []request{
		{"Exact / beats Prefix /", "root.example", "/", "root-exact"},
		{"empty request path is /", "root.example", "", "root-exact"},
		{"Prefix / matches any path", "root.example", "/x/y", "root"},
		{"Prefix / does not match a path not starting with /", "root.example", "*", ""},
		{"empty ImplementationSpecific path is /", "empty.example", "/any/thing", "empty"},
		{"empty ImplementationSpecific path matches the empty request path", "empty.example", "", "empty"},
	})
}

func TestHostMatching(t *testing.T) {
	tab := mustBuild(t,
		hostIngress("exact", "foo.bar.com", prefix("/", "exact")),
		hostIngress("wild", "*.bar.com", prefix("/", "wild")),
		hostIngress("upper", "Mixed.Example.COM", prefix("/", "upper")),
		hostIngress("long", strings.Repeat("a", 63)+"."+strings.Repeat("b", 63)+"."+strings.Repeat("c", 63)+"."+strings.Repeat("d", 61), prefix("/", "long")),
	)
	longHost := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	checkRequests(t, tab, []request{
		{"exact host beats wildcard", "foo.bar.com", "/", "exact"},
		{"wildcard covers one label", "baz.bar.com", "/", "wild"},
		{"wildcard does not cover two labels", "a.baz.bar.com", "/", ""},
		{"wildcard does not cover the bare domain", "bar.com", "/", ""},
		{"wildcard needs a non-empty label", ".bar.com", "/", ""},
		{"host is case-insensitive", "FOO.Bar.COM", "/", "exact"},
		{"wildcard is case-insensitive", "BAZ.BAR.COM", "/", "wild"},
		{"rule host is case-insensitive", "mixed.example.com", "/", "upper"},
		{"port is ignored", "foo.bar.com:8080", "/", "exact"},
		{"empty port is ignored", "foo.bar.com:", "/", "exact"},
		{"port is ignored for wildcard", "baz.bar.com:443", "/", "wild"},
		{"trailing dot is ignored", "foo.bar.com.", "/", "exact"},
		{"trailing dot and port are ignored", "foo.bar.com.:80", "/", "exact"},
		{"two trailing dots are not a name", "foo.bar.com..", "/", ""},
		{"253-byte host matches", longHost, "/", "long"},
		{"253-byte host, upper case, with port", strings.ToUpper(longHost) + ":80", "/", "long"},
		{"254-byte host matches no host rule", "x" + longHost, "/", ""},
		{"IPv6 literal with port matches no host rule", "[::1]:80", "/", ""},
		{"IPv6 literal without port", "[::1]", "/", ""},
		{"bare IPv6 is not split at a colon", "::1", "/", ""},
		{"unclosed bracket", "[foo.bar.com", "/", ""},
		{"empty host", "", "/", ""},
		{"only a port", ":80", "/", ""},
		{"a host with a space", "foo bar.com", "/", ""},
	})

	// The same requests reach a host-less rule instead of nothing.
	catchAll := mustBuild(t,
		hostIngress("exact", "foo.bar.com", prefix("/", "exact")),
		hostIngress("any", "", prefix("/", "any")),
	)
	checkRequests(t, catchAll, []request{
		{"host-less rule catches an unknown host", "unknown.example", "/x", "any"},
		{"host-less rule catches an IPv6 literal", "[2001:db8::1]:8080", "/", "any"},
		{"host-less rule catches an empty host", "", "/", "any"},
		{"host-less rule catches a host longer than a DNS name", strings.Repeat("x", 300), "/", "any"},
		{"known host still wins", "FOO.bar.com:80", "/", "exact"},
	})
}

// TestFallThrough pins the order in which candidates are tried: exact host,
// wildcard host, host-less rules, defaultBackend, nothing. The conformance
// suite has no scenario that tells these apart; the Ingress API's wording
// ("defaultBackend ... handle[s] requests that don't match any rule", a rule
// without host routes "all traffic") decides.
func TestFallThrough(t *testing.T) {
	def := svc("default", 80)
	all := []Ingress{
		hostIngress("exact", "api.foo.com", prefix("/api", "exact-api"), exact("/only", "exact-only")),
		hostIngress("wild", "*.foo.com", prefix("/web", "wild-web"), prefix("/api/v2", "wild-api-v2")),
		hostIngress("any", "", prefix("/static", "any-static"), prefix("/api/v2/x", "any-api-v2-x")),
		{Namespace: "ns", Name: "default", Created: t0, DefaultBackend: &def},
	}
	tab := mustBuild(t, all...)
	checkRequests(t, tab, []request{
		{"exact host, its path", "api.foo.com", "/api/v1", "exact-api"},
		{"exact host first even when a wildcard path is longer", "api.foo.com", "/api/v2", "exact-api"},
		{"exact host first even when a host-less path is longer", "api.foo.com", "/api/v2/x", "exact-api"},
		{"exact host without that path falls to the wildcard", "api.foo.com", "/web/index.html", "wild-web"},
		{"exact host, Exact path mismatch falls through", "api.foo.com", "/only/", "default"},
		{"exact host and wildcard without that path fall to host-less rules", "api.foo.com", "/static/app.js", "any-static"},
		{"nothing matches the path: defaultBackend", "api.foo.com", "/other", "default"},
		{"wildcard host, its path", "www.foo.com", "/web", "wild-web"},
		{"wildcard host first even when a host-less path is longer", "www.foo.com", "/api/v2/x", "wild-api-v2"},
		{"wildcard host without that path falls to host-less rules", "www.foo.com", "/static", "any-static"},
		{"wildcard host, nothing matches: defaultBackend", "www.foo.com", "/", "default"},
		{"unknown host: host-less rules", "other.example", "/static/x", "any-static"},
		{"unknown host, nothing matches: defaultBackend", "other.example", "/", "default"},
	})

	// Without the defaultBackend, the last rows are 404s.
	tab = mustBuild(t, all[:3]...)
	checkRequests(t, tab, []request{
		{"no defaultBackend: exact host, no path anywhere", "api.foo.com", "/other", ""},
		{"no defaultBackend: wildcard host, no path anywhere", "www.foo.com", "/", ""},
		{"no defaultBackend: unknown host, no path", "other.example", "/", ""},
		{"no defaultBackend: host-less still reached", "api.foo.com", "/static", "any-static"},
	})

	// A defaultBackend on an Ingress that also has rules is the table's
	// defaultBackend, for every host.
	withRules := hostIngress("rules-and-default", "a.example", prefix("/a", "a"))
	withRules.DefaultBackend = &def
	tab = mustBuild(t, withRules, hostIngress("b", "b.example", prefix("/b", "b")))
	checkRequests(t, tab, []request{
		{"defaultBackend of an Ingress with rules: its host", "a.example", "/x", "default"},
		{"defaultBackend of an Ingress with rules: another host", "b.example", "/x", "default"},
		{"defaultBackend of an Ingress with rules: unknown host", "c.example", "/", "default"},
		{"rules still win", "b.example", "/b/c", "b"},
	})
}

func TestResourceBackend(t *testing.T) {
	res := Path{Path: "/static", Type: Prefix, Backend: Backend{Resource: "k8s.example.com/StorageBucket/static-assets"}}
	tab := mustBuild(t, hostIngress("res", "res.example", res))
	got, ok := tab.Match("res.example", "/static/logo.png")
	want := Backend{Namespace: "ns", Resource: "k8s.example.com/StorageBucket/static-assets", Ingress: "ns/res", RulePath: "/static"}
	if !ok || got != want {
		t.Errorf("Match = %+v, %v; want %+v, true", got, ok, want)
	}
}

func TestEmptyTables(t *testing.T) {
	var nilTable *Table
	for name, tab := range map[string]*Table{"nil": nilTable, "zero": {}, "built from nothing": mustBuild(t)} {
		if got, ok := tab.Match("foo.com", "/"); ok {
			t.Errorf("%s table: Match = %+v, want no match", name, got)
		}
		if got, ok := tab.TLS("foo.com"); ok {
			t.Errorf("%s table: TLS = %+v, want none", name, got)
		}
	}
}

func TestTLS(t *testing.T) {
	a := hostIngress("a", "a.example", prefix("/", "a"))
	a.TLS = []TLS{
		{Hosts: []string{"a.example", "*.wild.example"}, SecretName: "a-cert"},
		{Hosts: []string{"exact.wild.example"}, SecretName: "exact-cert"},
		{Hosts: []string{"Upper.Example"}, SecretName: "upper-cert"},
		{Hosts: []string{"nosecret.example"}},
	}
	b := Ingress{Namespace: "other", Name: "b", Created: t0, Rules: []Rule{
		{Host: "b1.example", Paths: []Path{prefix("/", "b")}},
		{Host: "*.b2.example", Paths: []Path{prefix("/", "b")}},
		{Host: "", Paths: []Path{prefix("/", "b")}},
	}, TLS: []TLS{{SecretName: "b-cert"}}}
	tab := mustBuild(t, a, b)
	tests := []struct {
		sni  string
		want SecretRef
		ok   bool
	}{
		{"a.example", SecretRef{"ns", "a-cert"}, true},
		{"A.EXAMPLE", SecretRef{"ns", "a-cert"}, true},
		{"a.example.", SecretRef{"ns", "a-cert"}, true},
		{"x.wild.example", SecretRef{"ns", "a-cert"}, true},
		{"exact.wild.example", SecretRef{"ns", "exact-cert"}, true},
		{"x.y.wild.example", SecretRef{}, false},
		{"wild.example", SecretRef{}, false},
		{"upper.example", SecretRef{"ns", "upper-cert"}, true},
		{"nosecret.example", SecretRef{"ns", ""}, true},
		{"b1.example", SecretRef{"other", "b-cert"}, true},
		{"x.b2.example", SecretRef{"other", "b-cert"}, true},
		{"unknown.example", SecretRef{}, false},
		{"", SecretRef{}, false},
	}
	for _, tt := range tests {
		got, ok := tab.TLS(tt.sni)
		if got != tt.want || ok != tt.ok {
			t.Errorf("TLS(%q) = %v, %v; want %v, %v", tt.sni, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tab := benchTable(100, 10)
	reqs := [][2]string{
		{"host-7.example.com", "/p3/x/y"},
		{"HOST-7.Example.COM:8080", "/p3"},
		{"x.wild-7.example.com", "/p9/z"},
		{"nope.example.com", "/nothing"},
		{"[::1]:80", "/"},
	}
	for _, r := range reqs {
		if n := testing.AllocsPerRun(100, func() { tab.Match(r[0], r[1]) }); n != 0 {
			t.Errorf("Match(%q, %q) allocates %v times, want 0", r[0], r[1], n)
		}
		if n := testing.AllocsPerRun(100, func() { tab.TLS(r[0]) }); n != 0 {
			t.Errorf("TLS(%q) allocates %v times, want 0", r[0], n)
		}
	}
}

// Regular-expression paths, as ingress-nginx makes them with use-regex or
// rewrite-target: every non-Exact path of the host is (?i)^PATH, whichever
// Ingress defines it, longest first; Exact stays exact; other hosts are
// untouched; a path that does not compile is rejected.
func TestRegexPaths(t *testing.T) {
	regex := hostIngress("regex", "r.example", Path{Path: "/api/v[0-9]+", Backend: svc("api", 80)}, Path{Path: "/.*\\.png", Backend: svc("img", 80)})
	regex.Regex = true
	plain := hostIngress("plain", "r.example", prefix("/api/v1/admin", "admin"), exact("/health", "health"), prefix("/", "root"))
	plain.Created = t0.Add(time.Second)
	other := hostIngress("other", "o.example", prefix("/api", "other"))
	broken := hostIngress("broken", "b.example", Path{Path: "/(", Backend: svc("b", 80)})
	broken.Regex = true
	tab, rej := Build([]Ingress{regex, plain, other, broken})
	if len(rej) != 1 || rej[0].Ingress != "ns/broken" || rej[0].Kind != Invalid || !strings.Contains(rej[0].Reason, "regular expression") {
		t.Fatalf("rejections %v, want the broken pattern's only", rej)
	}
	for _, c := range []struct{ host, path, want string }{
		{"r.example", "/api/v2/users", "api"},
		{"r.example", "/API/V3", "api"}, // case-insensitive, as ~*
		{"r.example", "/api/v1/admin/x", "admin"},
		{"r.example", "/api/v1/adminx", "admin"}, // a regex prefix, not path elements
		{"r.example", "/img/a.png", "img"},
		{"r.example", "/health", "health"},
		{"r.example", "/health/x", "root"}, // Exact stays exact
		{"r.example", "/anything", "root"},
		{"o.example", "/apix", ""}, // another host keeps Prefix rules
		{"o.example", "/api/x", "other"},
	} {
		be, ok := tab.Match(c.host, c.path)
		got := ""
		if ok {
			got = be.Service
		}
		if got != c.want {
			t.Errorf("%s%s: %q, want %q", c.host, c.path, got, c.want)
		}
	}
}
