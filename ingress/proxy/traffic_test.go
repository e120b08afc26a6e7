package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// from-to-www-redirect over a socket: www.shop.example redirects to the
// rule's host, ACME challenges excepted.
func TestFromToWWWRedirect(t *testing.T) {
	b := echo(t, "shop")
	ing := ingress("shop", "shop.example", prefix("/", "shop"))
	ing.FromToWWW = true
	p := start(t, Options{})
	p.Store(&exchange.Config{Routes: table(t, ing), Upstreams: map[exchange.Target]*exchange.Upstream{target("shop"): exchange.NewUpstream(addr(b))}})
	res := raw(t, p.plain, "GET /a/b?c=d HTTP/1.1\r\nHost: www.shop.example\r\n\r\n")
	if res.StatusCode != 308 || res.Header.Get("Location") != "http://shop.example/a/b?c=d" {
		t.Errorf("www: %d Location %q, want 308 to http://shop.example/a/b?c=d", res.StatusCode, res.Header.Get("Location"))
	}
	res = raw(t, p.plain, "GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: www.shop.example\r\n\r\n")
	if s := decode(t, res); s.URI != "/.well-known/acme-challenge/tok" || s.Host != "www.shop.example" {
		t.Errorf("an ACME challenge reached the backend as %+v", s)
	}
	res = raw(t, p.plain, "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
	if res.StatusCode != 200 {
		t.Errorf("the rule's host: %d, want 200", res.StatusCode)
	}
}

// slowBackend answers each request once release is closed; started
// counts the requests it holds.
func slowBackend(t *testing.T) (addr string, started chan struct{}, release func()) {
	t.Helper()
	gate := make(chan struct{})
	started = make(chan struct{}, 100)
	b := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow")
	}))
	var once sync.Once
	return b, started, func() { once.Do(func() { close(gate) }) }
}

// limit-connections over a socket: two slow requests in flight from
// 127.0.0.1, a third refused (503) while they last; once all are done,
// the one whose client gave up mid-request too, nothing is counted.
func TestLimitConnections(t *testing.T) {
	be, started, release := slowBackend(t)
	defer release()
	l := exchange.NewConnLimit(2)
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("slow", "slow.example", prefix("/", "slow"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("slow"): exchange.NewUpstream(be)},
		Rules:     map[string]*exchange.Rules{"ns/slow": {ConnLimit: l}},
	})
	const req = "GET / HTTP/1.1\r\nHost: slow.example\r\n\r\n"
	// One that will give up.
	quitter, err := net.Dial("tcp", p.plain)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(quitter, req)
	<-started
	var wg sync.WaitGroup
	statuses := make(chan int, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		statuses <- raw(t, p.plain, req).StatusCode
	}()
	<-started
	if res := raw(t, p.plain, req); res.StatusCode != 503 {
		t.Errorf("a third request while two are in flight: %d, want 503", res.StatusCode)
	}
	quitter.Close()
	release() // the goroutine loop sees the quitter gone only once the endpoint answers
	wg.Wait()
	if s := <-statuses; s != 200 {
		t.Errorf("a request within the limit: %d, want 200", s)
	}
	waitFor(t, "every place to be freed", func() bool { return l.InFlight() == 0 })
	if res := raw(t, p.plain, req); res.StatusCode != 200 {
		t.Errorf("afterwards: %d, want 200", res.StatusCode)
	}
	waitFor(t, "every place to be freed", func() bool { return l.InFlight() == 0 })
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String()
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5 s for %s", what)
		}
	}
}

// stickyProxy serves sticky.example from three echo endpoints under rules.
func stickyProxy(t *testing.T, rules *exchange.Rules) (p *proxy, backends map[string]string) {
	t.Helper()
	backends = map[string]string{}
	var addrs []string
	for _, name := range []string{"b1", "b2", "b3"} {
		a := addr(echo(t, name))
		backends[a] = name
		addrs = append(addrs, a)
	}
	p = start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("sticky", "sticky.example", prefix("/app", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addrs...)},
		Rules:     map[string]*exchange.Rules{"ns/sticky": rules},
	})
	return p, backends
}

// affinity: cookie over a socket: the first answer sets the cookie, and
// every request with it goes to the same one of three endpoints, over
// HTTP/1.1 and HTTP/2 alike.
func TestAffinityOverSockets(t *testing.T) {
	for _, persistent := range []bool{true, false} {
		p, _ := stickyProxy(t, &exchange.Rules{Affinity: &exchange.Affinity{Cookie: "INGRESSCOOKIE", Persistent: persistent, MaxAge: 60, SameSite: "Lax"}})
		res := raw(t, p.plain, "GET /app HTTP/1.1\r\nHost: sticky.example\r\n\r\n")
		cookies := res.Cookies()
		if len(cookies) != 1 || cookies[0].Name != "INGRESSCOOKIE" || cookies[0].Path != "/app" || cookies[0].MaxAge != 60 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteLaxMode {
			t.Fatalf("persistent %v: Set-Cookie %q, want INGRESSCOOKIE with Path=/app, Max-Age=60, HttpOnly, SameSite=Lax", persistent, res.Header.Values("Set-Cookie"))
		}
		first := res.Header.Get("X-Backend")
		for i := range 12 {
			res := raw(t, p.plain, "GET /app/x HTTP/1.1\r\nHost: sticky.example\r\nCookie: other=1; INGRESSCOOKIE="+cookies[0].Value+"\r\n\r\n")
			if got := res.Header.Get("X-Backend"); got != first || res.Header.Get("Set-Cookie") != "" {
				t.Fatalf("persistent %v, request %d with the cookie: %s (Set-Cookie %q), want %s and no cookie", persistent, i, got, res.Header.Get("Set-Cookie"), first)
			}
		}
		// Without the cookie, the requests spread.
		seen := map[string]bool{}
		for range 12 {
			seen[raw(t, p.plain, "GET /app HTTP/1.1\r\nHost: sticky.example\r\n\r\n").Header.Get("X-Backend")] = true
		}
		if len(seen) < 2 {
			t.Errorf("persistent %v: 12 new sessions all went to %v", persistent, seen)
		}
		// HTTP/2 through the TLS listener: the same endpoint.
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}
		req, _ := http.NewRequest("GET", "https://"+p.secure+"/app", nil)
		req.Host = "sticky.example"
		req.AddCookie(cookies[0])
		r2, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		c.CloseIdleConnections()
		if r2.ProtoMajor != 2 || r2.Header.Get("X-Backend") != first {
			t.Errorf("persistent %v over %s: %s, want %s over HTTP/2", persistent, r2.Proto, r2.Header.Get("X-Backend"), first)
		}
	}
}

// upstream-hash-by over a socket: a key always reaches the same endpoint.
func TestUpstreamHashByOverSockets(t *testing.T) {
	k, err := exchange.ParseHashKey("$http_x_user")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := stickyProxy(t, &exchange.Rules{HashBy: k})
	users := map[string]string{}
	spread := map[string]bool{}
	for round := range 3 {
		for u := range 10 {
			user := fmt.Sprint("user-", u)
			got := raw(t, p.plain, "GET /app HTTP/1.1\r\nHost: sticky.example\r\nX-User: "+user+"\r\n\r\n").Header.Get("X-Backend")
			if round > 0 && got != users[user] {
				t.Errorf("%s went to %s, then %s", user, users[user], got)
			}
			users[user] = got
			spread[got] = true
		}
	}
	if len(spread) < 2 {
		t.Errorf("10 keys all went to %v", spread)
	}
}
