package route

import (
	"testing"
	"time"
)

// The tests in this file encode every scenario of the path_rules, host_rules
// and default_backend features of kubernetes-sigs/ingress-controller-conformance
// (release-1.19 features, networking.k8s.io/v1). Each feature creates its
// Ingress in a fresh namespace and deletes it afterwards, so each test builds
// a table of that one Ingress. "200, served by X" becomes Match returning
// service X; "404" becomes Match returning false.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func svc(name string, port int32) Backend { return Backend{Service: name, Port: Port{Number: port}} }

func svcNamed(name, port string) Backend { return Backend{Service: name, Port: Port{Name: port}} }

type request struct {
	name string // scenario, with the example in brackets
	host string
	path string
	want string // service that must serve it; "" for 404
}

func checkRequests(t *testing.T, tab *Table, reqs []request) {
	t.Helper()
	for _, r := range reqs {
		t.Run(r.name, func(t *testing.T) {
			got, ok := tab.Match(r.host, r.path)
			switch {
			case r.want == "" && ok:
				t.Errorf("Match(%q, %q) = %+v, want no match (404)", r.host, r.path, got)
			case r.want != "" && !ok:
				t.Errorf("Match(%q, %q) = no match (404), want service %q", r.host, r.path, r.want)
			case r.want != "" && got.Service != r.want:
				t.Errorf("Match(%q, %q) = service %q, want %q", r.host, r.path, got.Service, r.want)
			}
		})
	}
}

func mustBuild(t *testing.T, ings ...Ingress) *Table {
	t.Helper()
	tab, rej := Build(ings)
	if len(rej) != 0 {
		t.Fatalf("Build rejected input: %v", rej)
	}
	return tab
}

func TestConformancePathRules(t *testing.T) {
	tab := mustBuild(t, Ingress{
		Namespace: "conformance", Name: "path-rules", Created: t0,
		Rules: []Rule{
			{Host: "exact-path-rules", Paths: []Path{
				{Path: "/foo", Type: Exact, Backend: svc("foo-exact", 8080)},
			}},
			{Host: "prefix-path-rules", Paths: []Path{
				{Path: "/foo", Type: Prefix, Backend: svc("foo-prefix", 8080)},
				{Path: "/aaa/bbb", Type: Prefix, Backend: svc("aaa-slash-bbb-prefix", 8080)},
				{Path: "/aaa", Type: Prefix, Backend: svc("aaa-prefix", 8080)},
			}},
			{Host: "mixed-path-rules", Paths: []Path{
				{Path: "/foo", Type: Prefix, Backend: svc("foo-prefix", 8080)},
				{Path: "/foo", Type: Exact, Backend: svc("foo-exact", 8080)},
			}},
			{Host: "trailing-slash-path-rules", Paths: []Path{
				{Path: "/aaa/bbb/", Type: Prefix, Backend: svc("aaa-slash-bbb-slash-prefix", 8080)},
				{Path: "/foo/", Type: Exact, Backend: svc("foo-slash-exact", 8080)},
			}},
		},
	})
	checkRequests(t, tab, []request{
		{"An Ingress with exact path rules should send traffic to the matching backend service (exact /foo matches request /foo)",
			"exact-path-rules", "/foo", "foo-exact"},
		{"An Ingress with exact path rules should not match requests with trailing slash (exact /foo does not match request /foo/)",
			"exact-path-rules", "/foo/", ""},
		{"An Ingress with exact path rules should be case sensitive (exact /foo does not match request /FOO)",
			"exact-path-rules", "/FOO", ""},
		{"An Ingress with exact path rules should not match any other label (exact /foo does not match request /bar)",
			"exact-path-rules", "/bar", ""},
		{"An Ingress with prefix path rules should send traffic to the matching backend service (prefix /foo matches request /foo)",
			"prefix-path-rules", "/foo", "foo-prefix"},
		{"An Ingress with prefix path rules should ignore the request trailing slash and send traffic to the matching backend service (prefix /foo matches request /foo/)",
			"prefix-path-rules", "/foo/", "foo-prefix"},
		{"An Ingress with prefix path rules should be case sensitive (prefix /foo does not match request /FOO)",
			"prefix-path-rules", "/FOO", ""},
		{"An Ingress with prefix path rules should match multiple labels, match the longest path, and send traffic to the matching backend service (prefix /aaa/bbb matches request /aaa/bbb)",
			"prefix-path-rules", "/aaa/bbb", "aaa-slash-bbb-prefix"},
		{"An Ingress with prefix path rules should match multiple labels, match the longest path, and subpaths and send traffic to the matching backend service (prefix /aaa/bbb matches request /aaa/bbb/ccc)",
			"prefix-path-rules", "/aaa/bbb/ccc", "aaa-slash-bbb-prefix"},
		{"An Ingress with prefix path rules should and send traffic to the matching backend service (prefix /aaa matches request /aaa/ccc)",
			"prefix-path-rules", "/aaa/ccc", "aaa-prefix"},
		{"An Ingress with prefix path rules should match each labels string prefix (prefix /aaa does not match request /aaaccc)",
			"prefix-path-rules", "/aaaccc", ""},
		// The feature lists this scenario twice, word for word.
		{"An Ingress with prefix path rules should ignore the request trailing slash and send traffic to the matching backend service (prefix /foo matches request /foo/), second copy",
			"prefix-path-rules", "/foo/", "foo-prefix"},
		{"An Ingress with mixed path rules should send traffic to the matching backend service where Exact is preferred (exact /foo matches request /foo)",
			"mixed-path-rules", "/foo", "foo-exact"},
		{"An Ingress with a trailing slashes in a prefix path rule should ignore the trailing slash and send traffic to the matching backend service (prefix /aaa/bbb/ matches request /aaa/bbb)",
			"trailing-slash-path-rules", "/aaa/bbb", "aaa-slash-bbb-slash-prefix"},
		{"An Ingress with a trailing slashes in a prefix path rule should ignore the trailing slash and send traffic to the matching backend service (prefix /aaa/bbb/ matches request /aaa/bbb/)",
			"trailing-slash-path-rules", "/aaa/bbb/", "aaa-slash-bbb-slash-prefix"},
		{"An Ingress with a trailing slashes in an exact path rule should not match requests without a trailing slash (exact /foo/ does not match request /foo)",
			"trailing-slash-path-rules", "/foo", ""},
	})
}

func TestConformanceHostRules(t *testing.T) {
	tab := mustBuild(t, Ingress{
		Namespace: "conformance", Name: "host-rules", Created: t0,
		TLS: []TLS{{Hosts: []string{"foo.bar.com"}, SecretName: "conformance-tls"}},
		Rules: []Rule{
			{Host: "*.foo.com", Paths: []Path{
				{Path: "/", Type: Prefix, Backend: svc("wildcard-foo-com", 8080)},
			}},
			{Host: "foo.bar.com", Paths: []Path{
				{Path: "/", Type: Prefix, Backend: svcNamed("foo-bar-com", "http")},
			}},
		},
	})

	t.Run("An Ingress with a host rule should send TLS traffic to the matching backend service (host foo.bar.com matches request foo.bar.com)", func(t *testing.T) {
		// The client sends SNI foo.bar.com and Host foo.bar.com.
		sec, ok := tab.TLS("foo.bar.com")
		if want := (SecretRef{Namespace: "conformance", Name: "conformance-tls"}); !ok || sec != want {
			t.Errorf("TLS(foo.bar.com) = %v, %v; want %v, true", sec, ok, want)
		}
		got, ok := tab.Match("foo.bar.com", "/")
		if !ok || got.Service != "foo-bar-com" || got.Port != (Port{Name: "http"}) {
			t.Errorf("Match(foo.bar.com, /) = %+v, %v; want service foo-bar-com port http", got, ok)
		}
	})
	checkRequests(t, tab, []request{
		{"An Ingress with a host rule should send traffic to the matching backend service (host foo.bar.com matches request foo.bar.com)",
			"foo.bar.com", "/", "foo-bar-com"},
		{"An Ingress with a host rule should not route traffic when hostname does not match (host foo.bar.com does not match request subdomain.bar.com)",
			"subdomain.bar.com", "/", ""},
		{"An Ingress with a wildcard host rule should send traffic to the matching backend service (Matches based on shared suffix)",
			"bar.foo.com", "/", "wildcard-foo-com"},
		{"An Ingress with a wildcard host rule should not route traffic matching on more than a single dns label (No match, wildcard only covers a single DNS label)",
			"baz.bar.foo.com", "/", ""},
		{"An Ingress with a wildcard host rule should not route traffic matching no dns label (No match, wildcard only covers a single DNS label)",
			"foo.com", "/", ""},
	})
}

func TestConformanceDefaultBackend(t *testing.T) {
	be := svc("echo-service", 8080)
	tab := mustBuild(t, Ingress{Namespace: "conformance", Name: "default-backend", Created: t0, DefaultBackend: &be})

	// The suite sends http://<host>/<path>; an empty <host> leaves the Host
	// header at the Ingress's address from its status.
	const address = "192.0.2.10"
	checkRequests(t, tab, []request{
		{"An Ingress with no rules should send all requests to the default backend (GET my-host )", "my-host", "/", "echo-service"},
		{"An Ingress with no rules should send all requests to the default backend (GET my-host sub-path)", "my-host", "/sub-path", "echo-service"},
		{"An Ingress with no rules should send all requests to the default backend (POST some-host )", "some-host", "/", "echo-service"},
		{"An Ingress with no rules should send all requests to the default backend (PUT  resource)", address, "/resource", "echo-service"},
		{"An Ingress with no rules should send all requests to the default backend (DELETE some-host resource)", "some-host", "/resource", "echo-service"},
		{"An Ingress with no rules should send all requests to the default backend (PATCH my-host resource)", "my-host", "/resource", "echo-service"},
	})
	got, _ := tab.Match("my-host", "/")
	if want := (Backend{Namespace: "conformance", Service: "echo-service", Port: Port{Number: 8080}, Ingress: "conformance/default-backend"}); got != want {
		t.Errorf("default backend = %+v, want %+v", got, want)
	}
}
