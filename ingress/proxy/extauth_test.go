package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// authSeen is what the test's authentication service got.
type authSeen struct {
	method, uri, host string
	header            http.Header
	body              int
	length            int64
	chunked           bool
}

// authService is a real authentication service: its answer depends on
// the path it is asked on.
type authService struct {
	*httptest.Server
	mu   sync.Mutex
	seen []authSeen
}

func newAuthService(t *testing.T) *authService {
	a := &authService{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.seen = append(a.seen, authSeen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), len(body), r.ContentLength, len(r.TransferEncoding) > 0})
		a.mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("X-Auth-Request-User", "alice")
			w.Header().Set("X-Not-Copied", "no")
			io.WriteString(w, "fine")
		case "/deny":
			w.Header().Set("WWW-Authenticate", `Bearer realm="test"`)
			w.WriteHeader(401)
		case "/forbid":
			w.WriteHeader(403)
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *authService) last(t *testing.T) authSeen {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		t.Fatal("the authentication service was not asked")
	}
	return a.seen[len(a.seen)-1]
}

// countingEcho is the echo backend, counting the requests it got.
func countingEcho(t *testing.T) (*httptest.Server, *atomic.Int64) {
	web := echo(t, "web")
	var n atomic.Int64
	inner := web.Config.Handler
	web.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		inner.ServeHTTP(w, r)
	})
	return web, &n
}

// External authentication over real sockets: plain HTTP/1.1 (the event
// loops, which hand the request to the goroutine loop; or the goroutine
// loop alone with -goroutine-loop) and HTTP/2 over TLS. The request goes
// upstream, body whole, only after the service's 2xx.
func TestExternalAuth(t *testing.T) {
	auth := newAuthService(t)
	web, hits := countingEcho(t)
	ext := func(path string, tweak ...func(*exchange.ExternalAuth)) *exchange.Rules {
		u, err := exchange.ParseAuthURL(auth.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		e := &exchange.ExternalAuth{URL: u, ResponseHeaders: []string{"X-Auth-Request-User", "X-Auth-Request-Email"}}
		for _, f := range tweak {
			f(e)
		}
		return &exchange.Rules{ExternalAuth: e}
	}
	signin, err := exchange.ParseSignin("https://login.example/start", "")
	if err != nil {
		t.Fatal(err)
	}
	slow := ext("/slow")
	slow.Limits = exchange.Limits{ConnectTimeout: 200 * time.Millisecond, SendTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond}
	down, _ := exchange.ParseAuthURL("http://" + deadAddr(t) + "/")
	rules := map[string]*exchange.Rules{
		"ns/ok":     ext("/ok"),
		"ns/deny":   ext("/deny"),
		"ns/signin": ext("/deny", func(e *exchange.ExternalAuth) { e.Signin = signin }),
		"ns/forbid": ext("/forbid"),
		"ns/odd":    ext("/teapot"),
		"ns/slow":   slow,
		"ns/down":   {ExternalAuth: &exchange.ExternalAuth{URL: down}},
	}
	var ings []route.Ingress
	for k := range rules {
		name := strings.TrimPrefix(k, "ns/")
		ings = append(ings, ingress(name, name+".example", prefix("/", "web")))
	}
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, ings...),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(web))},
		Rules:     rules,
	})

	type reply struct {
		status int
		header http.Header
		body   string
		took   time.Duration
	}
	h1 := func(t *testing.T, host, method, body string) reply {
		req := fmt.Sprintf("%s /app/page?q=1 HTTP/1.1\r\nHost: %s\r\nCookie: session=s1\r\nX-Auth-Request-User: mallory\r\nX-Auth-Request-Email: m@evil\r\n", method, host)
		if body != "" {
			req += fmt.Sprintf("Content-Length: %d\r\n", len(body))
		}
		begin := time.Now()
		res := raw(t, p.plain, req+"\r\n"+body)
		b, _ := io.ReadAll(res.Body)
		return reply{res.StatusCode, res.Header, string(b), time.Since(begin)}
	}
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the default certificate
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, p.secure)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	h2 := func(t *testing.T, host, method, body string) reply {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, "https://"+host+"/app/page?q=1", rd)
		req.Header.Set("Cookie", "session=s1")
		req.Header.Set("X-Auth-Request-User", "mallory")
		req.Header.Set("X-Auth-Request-Email", "m@evil")
		begin := time.Now()
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.ProtoMajor != 2 {
			t.Fatalf("%s, want HTTP/2", res.Proto)
		}
		b, _ := io.ReadAll(res.Body)
		return reply{res.StatusCode, res.Header, string(b), time.Since(begin)}
	}

	for _, proto := range []struct {
		name   string
		do     func(*testing.T, string, string, string) reply
		scheme string
	}{{"HTTP/1.1", h1, "http"}, {"HTTP/2", h2, "https"}} {
		t.Run(proto.name, func(t *testing.T) {
			t.Run("2xx", func(t *testing.T) {
				before := hits.Load()
				r := proto.do(t, "ok.example", "POST", "hello, body")
				if r.status != 200 {
					t.Fatalf("status %d %q, want 200", r.status, r.body)
				}
				var s seen
				if err := jsonDecode(r.body, &s); err != nil {
					t.Fatalf("not the echo's answer: %v %q", err, r.body)
				}
				if hits.Load() != before+1 {
					t.Errorf("backend hits %d, want 1", hits.Load()-before)
				}
				if s.Body != "hello, body" || s.Method != "POST" {
					t.Errorf("the backend got %s with body %q, want the POST whole", s.Method, s.Body)
				}
				if got := s.Header.Values("X-Auth-Request-User"); len(got) != 1 || got[0] != "alice" {
					t.Errorf("backend X-Auth-Request-User %q, want the service's alice only", got)
				}
				if got := s.Header.Values("X-Auth-Request-Email"); len(got) != 0 {
					t.Errorf("backend X-Auth-Request-Email %q, want the client's dropped", got)
				}
				if s.Header.Get("X-Not-Copied") != "" {
					t.Error("a field the route does not name was copied")
				}
				a := auth.last(t)
				if a.method != "GET" || a.uri != "/ok" || a.body != 0 || a.length > 0 || a.chunked {
					t.Errorf("the service got %s %s with %d body bytes (length %d, chunked %v), want GET without a body", a.method, a.uri, a.body, a.length, a.chunked)
				}
				u, _ := url.Parse(auth.URL)
				for name, want := range map[string]string{
					"X-Original-Url":          proto.scheme + "://ok.example/app/page?q=1",
					"X-Original-Method":       "POST",
					"X-Sent-From":             "nginx-ingress-controller",
					"X-Auth-Request-Redirect": "/app/page?q=1",
					"X-Real-Ip":               "127.0.0.1",
					"X-Forwarded-For":         "127.0.0.1",
					"X-Forwarded-Proto":       proto.scheme,
					"X-Forwarded-Host":        "ok.example",
					"Cookie":                  "session=s1",
					"X-Request-Id":            s.Header.Get("X-Request-Id"),
				} {
					if got := a.header.Get(name); got != want {
						t.Errorf("the service got %s %q, want %q", name, got, want)
					}
				}
				if a.host != u.Host {
					t.Errorf("the service got Host %q, want its own %q", a.host, u.Host)
				}
			})
			for _, c := range []struct {
				host     string
				status   int
				location string
				slow     bool
			}{
				{host: "deny.example", status: 401},
				{host: "signin.example", status: 302, location: "https://login.example/start?rd=" + proto.scheme + "://signin.example%2Fapp%2Fpage%3Fq%3D1"},
				{host: "forbid.example", status: 403},
				{host: "odd.example", status: 500},
				{host: "down.example", status: 500},
				{host: "slow.example", status: 500, slow: true},
			} {
				t.Run(c.host, func(t *testing.T) {
					before := hits.Load()
					r := proto.do(t, c.host, "POST", "secret body")
					if r.status != c.status {
						t.Fatalf("status %d %q, want %d", r.status, r.body, c.status)
					}
					if hits.Load() != before {
						t.Errorf("the backend was sent the request")
					}
					if got := r.header.Get("Location"); got != c.location {
						t.Errorf("Location %q, want %q", got, c.location)
					}
					if c.status == 401 && r.header.Get("WWW-Authenticate") != `Bearer realm="test"` {
						t.Errorf("WWW-Authenticate %q, want the service's", r.header.Get("WWW-Authenticate"))
					}
					if c.slow && r.took > 3*time.Second {
						t.Errorf("took %v, want the route's timeouts (under a second)", r.took)
					}
				})
			}
		})
	}
}

func jsonDecode(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// On HTTP/1.1 a refused request's body is read through, not taken for the
// next request, and a client waiting for 100 Continue is not told to send
// its body before the service said yes.
func TestExternalAuthConnection(t *testing.T) {
	auth := newAuthService(t)
	web, hits := countingEcho(t)
	u, _ := exchange.ParseAuthURL(auth.URL + "/forbid")
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("forbid", "forbid.example", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(web))},
		Rules:     map[string]*exchange.Rules{"ns/forbid": {ExternalAuth: &exchange.ExternalAuth{URL: u}}},
	})
	c, err := net.Dial("tcp", p.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// A body that looks like a request: were it read as one, a third
	// answer would come.
	smuggled := "GET /x HTTP/1.1\r\nHost: forbid.example\r\n\r\n"
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: forbid.example\r\nContent-Length: %d\r\n\r\n%sGET / HTTP/1.1\r\nHost: forbid.example\r\nConnection: close\r\n\r\n", len(smuggled), smuggled)
	all, _ := io.ReadAll(c)
	if n := strings.Count(string(all), "HTTP/1.1 403"); n != 2 || strings.Count(string(all), "HTTP/1.1 ") != 2 {
		t.Errorf("answers:\n%s\nwant two 403s", all)
	}
	if hits.Load() != 0 {
		t.Error("the backend was sent a request")
	}

	c2, err := net.Dial("tcp", p.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c2, "PUT / HTTP/1.1\r\nHost: forbid.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	buf := make([]byte, 4096)
	n, _ := c2.Read(buf)
	if got := string(buf[:n]); !strings.HasPrefix(got, "HTTP/1.1 403") {
		t.Errorf("first answer %q, want 403 without 100 Continue", got)
	}
}
