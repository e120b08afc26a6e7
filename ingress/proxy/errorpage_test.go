package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// Error pages over real sockets, on plain HTTP/1.1 (the event loops, or
// the goroutine loop with -goroutine-loop) and on HTTP/2 over TLS: the
// endpoint's answer with a listed status, or the proxy's own failure, is
// replaced by the error backend's; a route without endpoints goes there
// as it is.
func TestErrorPages(t *testing.T) {
	// web answers /404 with a large body (part of it reaches the proxy
	// with the head), /500 with a small one, anything else as echo.
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Backend", "web")
		switch {
		case strings.HasPrefix(r.URL.Path, "/404"):
			w.WriteHeader(404)
			_, _ = io.WriteString(w, strings.Repeat("web's own 404\n", 8<<10))
		case strings.HasPrefix(r.URL.Path, "/500"):
			w.WriteHeader(500)
			_, _ = io.WriteString(w, "web's own 500\n")
		default:
			_ = json.NewEncoder(w).Encode(seen{Method: r.Method, URI: r.RequestURI})
		}
	}))
	t.Cleanup(web.Close)
	// errs answers with the status it is told (X-Code), as ingress-nginx's
	// error backends do, and what it saw.
	errs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		code, _ := strconv.Atoi(r.Header.Get("X-Code"))
		w.Header().Set("X-Backend", "errors")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(max(code, 200))
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.RequestURI, r.Host, r.Proto, r.Header, string(body)})
	}))
	// Every byte the error backend gets: an intercepted request's body
	// must not be among them.
	got := &recorder{Listener: errs.Listener}
	errs.Listener = got
	errs.Start()
	t.Cleanup(errs.Close)
	cert, _ := twoCerts(t)
	pages := &exchange.Rules{Errors: &exchange.ErrorPages{Codes: []int{404, 502, 503}, Backend: target("errors")}}
	quiet := &exchange.Rules{Errors: &exchange.ErrorPages{Codes: []int{404, 502}, Backend: target("errors"), NoIntercept: true}}
	paths := []route.Path{prefix("/", "web"), prefix("/dead", "dead"), prefix("/empty", "empty")}
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes: table(t, ingress("pages", "pages.example", paths...), ingress("quiet", "quiet.example", paths...),
			tlsIngress("secure", "a.example", "secure-tls", paths...)),
		Upstreams: map[exchange.Target]*exchange.Upstream{
			target("web"):    exchange.NewUpstream(addr(web)),
			target("dead"):   exchange.NewUpstream(deadAddr(t)),
			target("empty"):  exchange.NewUpstream(),
			target("errors"): exchange.NewUpstream(addr(errs)),
		},
		Certs: map[route.SecretRef]*tls.Certificate{{Namespace: "ns", Name: "secure-tls"}: cert},
		Rules: map[string]*exchange.Rules{"ns/pages": pages, "ns/quiet": quiet, "ns/secure": pages},
	})
	type want struct {
		status  int
		backend string // X-Backend of the answer
		// What the error backend saw, when it answered.
		method, uri, code, service string
	}
	cases := []struct {
		name, host, method, target string
		want                       want
	}{
		{"listed status", "pages", "GET", "/404?x=1", want{404, "errors", "GET", "/", "404", "web"}},
		{"a POST's error page is a GET without the body", "pages", "POST", "/404", want{404, "errors", "GET", "/", "404", "web"}},
		{"HEAD", "pages", "HEAD", "/404", want{404, "errors", "HEAD", "/", "404", "web"}},
		{"status not listed", "pages", "GET", "/500", want{500, "web", "", "", "", ""}},
		{"success", "pages", "GET", "/ok", want{200, "web", "", "", "", ""}},
		{"no endpoint accepts", "pages", "GET", "/dead/x", want{502, "errors", "GET", "/", "502", "dead"}},
		{"no endpoint at all: the request as it is", "pages", "POST", "/empty/x", want{503, "errors", "POST", "/empty/x", "503", "empty"}},
		{"not intercepted: the endpoint's own 404", "quiet", "GET", "/404", want{404, "web", "", "", "", ""}},
		{"not intercepted: the proxy's 502 still is", "quiet", "GET", "/dead", want{502, "errors", "GET", "/", "502", "dead"}},
	}
	check := func(t *testing.T, name, method string, res *http.Response, w want, ingress, original, body string) {
		t.Helper()
		if res.StatusCode != w.status || res.Header.Get("X-Backend") != w.backend {
			t.Errorf("%s: %d from %q, want %d from %q", name, res.StatusCode, res.Header.Get("X-Backend"), w.status, w.backend)
			return
		}
		if w.backend != "errors" || method == "HEAD" {
			return
		}
		s := decode(t, res)
		h := s.Header
		if s.Method != w.method || s.URI != w.uri || s.Body != body {
			t.Errorf("%s: the error backend got %s %s with body %q, want %s %s with %q", name, s.Method, s.URI, s.Body, w.method, w.uri, body)
		}
		for k, v := range map[string]string{
			"X-Code": w.code, "X-Format": "text/html", "X-Original-URI": original, "X-Namespace": "ns",
			"X-Ingress-Name": ingress, "X-Service-Name": w.service, "X-Service-Port": "80",
		} {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", name, k, got, v)
			}
		}
		if h.Get("X-Request-Id") == "" || len(h["X-Code"]) != 1 {
			t.Errorf("%s: X-Request-ID %q, X-Code %q", name, h.Get("X-Request-Id"), h["X-Code"])
		}
	}
	t.Run("HTTP/1.1", func(t *testing.T) {
		// Every request on one connection: an answer dropped halfway must
		// leave it serving the next.
		c, err := net.Dial("tcp", p.plain)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for _, cs := range cases {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			req := cs.method + " " + cs.target + " HTTP/1.1\r\nHost: " + cs.host + ".example\r\nAccept: text/html\r\nX-Code: 200\r\n"
			body := ""
			if cs.method == "POST" {
				body = "hello" // the fallback's
				if cs.want.uri != cs.target {
					body = "secret-body"
				}
				req += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
			}
			if _, err := io.WriteString(c, req+"\r\n"+body); err != nil {
				t.Fatal(err)
			}
			hr, _ := http.NewRequest(cs.method, "/", nil)
			res, err := http.ReadResponse(br, hr)
			if err != nil {
				t.Fatalf("%s: %v", cs.name, err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body = io.NopCloser(strings.NewReader(string(b)))
			if cs.want.uri == cs.target {
				body = "hello" // the fallback's request goes as it is
			} else {
				body = ""
			}
			check(t, cs.name, cs.method, res, cs.want, cs.host, cs.target, body)
		}
		if got.has("secret-body") {
			t.Errorf("the error backend got an intercepted request's body")
		}
	})
	t.Run("HTTP/2", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: certPool(cert), ServerName: "a.example"},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, p.secure)
			},
		}}
		for _, cs := range cases {
			if cs.host != "pages" {
				continue
			}
			body := ""
			if cs.method == "POST" {
				body = "hello" // the fallback's
				if cs.want.uri != cs.target {
					body = "secret-body"
				}
			}
			req, _ := http.NewRequest(cs.method, "https://a.example"+cs.target, strings.NewReader(body))
			req.Header.Set("Accept", "text/html")
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", cs.name, err)
			}
			if res.ProtoMajor != 2 {
				t.Fatalf("%s: %s, want HTTP/2", cs.name, res.Proto)
			}
			if cs.want.uri != cs.target {
				body = ""
			}
			check(t, cs.name, cs.method, res, cs.want, "secure", cs.target, body)
			res.Body.Close()
		}
		if got.has("secret-body") {
			t.Errorf("the error backend got an intercepted request's body")
		}
	})
}

// recorder is a listener that keeps every byte read from its connections.
type recorder struct {
	net.Listener
	mu  sync.Mutex
	all []byte
}

func (r *recorder) Accept() (net.Conn, error) {
	c, err := r.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordedConn{Conn: c, r: r}, nil
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Contains(string(r.all), s)
}

type recordedConn struct {
	net.Conn
	r *recorder
}

func (c *recordedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.r.mu.Lock()
	c.r.all = append(c.r.all, p[:n]...)
	c.r.mu.Unlock()
	return n, err
}
