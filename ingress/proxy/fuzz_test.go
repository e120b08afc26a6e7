package proxy

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/portico-lb/portico/ingress/route"
)

// FuzzCheckPath: CheckPath never panics, and a path it accepts is one a route
// can judge: it starts with '/', has no dot segment and no control byte, and
// its escaped form has no encoded slash.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a/../b", "/%2e%2e/", "/a%2Fb", "a", "", "/a/.", "/..", "//x", "/a%00", "/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, escaped string) {
		path, err := url.PathUnescape(escaped)
		if err != nil {
			return // the server refuses such a request line before routing
		}
		if CheckPath(path, escaped) != nil {
			return
		}
		if path[0] != '/' {
			t.Fatalf("accepted %q, which does not start with /", path)
		}
		for _, seg := range strings.Split(path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("accepted %q, which has a dot segment", path)
			}
		}
		if strings.Contains(strings.ToLower(escaped), "%2f") {
			t.Fatalf("accepted %q, which has an encoded slash", escaped)
		}
		for _, c := range []byte(path) {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("accepted %q, which has a control byte", path)
			}
		}
	})
}

// FuzzServeHTTP: whatever request net/http can parse, the handler answers
// without panicking.
func FuzzServeHTTP(f *testing.F) {
	s, err := New(Options{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	tab, _ := route.Build([]route.Ingress{
		{Namespace: "ns", Name: "a", Rules: []route.Rule{{Host: "a.example", Paths: []route.Path{{Path: "/", Backend: svc("none")}}}},
			TLS: []route.TLS{{Hosts: []string{"a.example"}}}},
		{Namespace: "ns", Name: "b", DefaultBackend: &route.Backend{Resource: "x/Y/z"}},
	})
	s.Store(&Config{Routes: tab, Upstreams: map[Target]*Upstream{}})
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
		"GET /x/../y HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET http://a.example/%2F HTTP/1.1\r\nHost: a.example:99\r\n\r\n",
		"POST /u?x HTTP/1.0\r\nContent-Length: 3\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nabc",
		"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		r.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code < 300 || w.Code > 599 {
			t.Fatalf("status %d with no endpoint anywhere", w.Code)
		}
	})
}
