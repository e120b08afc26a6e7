package exchange

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

func TestParseHashKey(t *testing.T) {
	for _, c := range []struct {
		in, canonical string // "" canonical: refused
	}{
		{"$request_uri", "${request_uri}"},
		{"$request_uri$host", "${request_uri}${host}"},
		{"${request_uri}-text-value", "${request_uri}-text-value"},
		{"$uri.$remote_addr", "${uri}.${remote_addr}"},
		{"$http_x_user/$cookie_sid/$arg_id", "${http_x_user}/${cookie_sid}/${arg_id}"},
		{"plain", "plain"},
		{"", ""},
		{"$", ""},
		{"$-x", ""},
		{"${host", ""},
		{"${}", ""},
		{"${ho st}", ""},
		{"$request_id", ""},
		{"$http_", ""},
		{"$binary_remote_addr", ""},
	} {
		k, err := ParseHashKey(c.in)
		switch {
		case c.canonical == "" && err == nil:
			t.Errorf("ParseHashKey(%q) = %q, want an error", c.in, k)
		case c.canonical != "" && err != nil:
			t.Errorf("ParseHashKey(%q): %v", c.in, err)
		case c.canonical != "" && k.String() != c.canonical:
			t.Errorf("ParseHashKey(%q) = %q, want %q", c.in, k, c.canonical)
		}
	}
}

func TestHashKeyValue(t *testing.T) {
	k, err := ParseHashKey("$request_uri|$uri|$remote_addr|$host|$http_x_user|$cookie_sid|$arg_id|$arg_none")
	if err != nil {
		t.Fatal(err)
	}
	req := get("Shop.Example:8080", "/a%41?x=1&ID=7", h1.Field{Name: "X-User", Value: "ann"}, h1.Field{Name: "Cookie", Value: "a=1; sid=s9"})
	var x Exchange
	x.begin(NewPolicy(Settings{}), req, time.Now())
	got := string(k.append(nil, req, "/aA", &x))
	if want := "/a%41?x=1&ID=7|/aA|192.0.2.7|shop.example|ann|s9|7|"; got != want {
		t.Errorf("key %q, want %q", got, want)
	}
}

// upstream-hash-by: the same key, the same endpoint, request after
// request; and when an endpoint comes or goes, few keys move.
func TestHashBy(t *testing.T) {
	cfg := testConfig(t)
	k, _ := ParseHashKey("$arg_user")
	cfg.Rules = map[string]*Rules{"ns/plain": {HashBy: k}}
	addrs := func(n int) []string {
		var a []string
		for i := range n {
			a = append(a, fmt.Sprintf("10.0.%d.%d:80", i/200, i%200))
		}
		return a
	}
	p := NewPolicy(Settings{})
	where := func(user int) string {
		var x Exchange
		p.Decide(cfg, get("plain.example", fmt.Sprintf("/?user=%d", user)), time.Now(), &x)
		e, _ := x.Endpoint()
		return e
	}
	const users = 2000
	cfg.Upstreams[target("web")] = NewUpstream(addrs(10)...)
	before := map[int]string{}
	count := map[string]int{}
	for u := range users {
		before[u] = where(u)
		count[before[u]]++
		if again := where(u); again != before[u] {
			t.Fatalf("user %d went to %s, then %s", u, before[u], again)
		}
	}
	for e, n := range count {
		if n < users/10/2 || n > users/10*2 {
			t.Errorf("endpoint %s got %d of %d keys over 10 endpoints", e, n, users)
		}
	}
	cfg.Upstreams[target("web")] = NewUpstream(addrs(11)...) // one more, at the end
	moved := 0
	for u := range users {
		if e := where(u); e != before[u] {
			moved++
			if e != addrs(11)[10] {
				t.Errorf("user %d moved from %s to %s, not to the new endpoint", u, before[u], e)
			}
		}
	}
	if moved > users/11*2 {
		t.Errorf("%d of %d keys moved when an 11th endpoint came, want about 1/11", moved, users)
	}
	gone := addrs(10)[3]
	var rest []string
	for _, a := range addrs(10) {
		if a != gone {
			rest = append(rest, a)
		}
	}
	cfg.Upstreams[target("web")] = NewUpstream(rest...)
	for u := range users {
		if e := where(u); before[u] != gone && e != before[u] {
			t.Fatalf("user %d moved from %s to %s when only %s went", u, before[u], e, gone)
		}
	}
}

func FuzzParseHashKey(f *testing.F) {
	for _, s := range []string{"$request_uri", "${host}-x", "$http_x$arg_a$cookie_b", "$", "${", "a$b", "$uri$$"} {
		f.Add(s, "/p?a=1", "X: 1")
	}
	f.Fuzz(func(t *testing.T, s, target, header string) {
		k, err := ParseHashKey(s)
		if err != nil {
			return
		}
		again, err := ParseHashKey(k.String())
		if err != nil || again.String() != k.String() {
			t.Fatalf("%q reads as %q, which reads as %v, %v", s, k, again, err)
		}
		name, value, _ := stringsCut(header)
		req := &Request{Method: "GET", Target: target, Host: "h", Fields: []h1.Field{{Name: name, Value: value}}, Client: netip.MustParseAddrPort("192.0.2.1:1")}
		var x Exchange
		x.begin(NewPolicy(Settings{}), req, time.Now())
		k.append(nil, req, "/", &x)
	})
}

func stringsCut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
