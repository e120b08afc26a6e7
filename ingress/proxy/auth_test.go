package proxy

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// Basic authentication over real sockets, on plain HTTP/1.1 (the event
// loops, or the goroutine loop with -goroutine-loop) and on HTTP/2 over
// TLS: the same decisions, and the endpoint gets the Authorization field.
func TestBasicAuth(t *testing.T) {
	web := echo(t, "web")
	cert, _ := twoCerts(t)
	var users []exchange.User
	for _, line := range []string{
		`foo:$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0`,                          // bar (htpasswd -m)
		`carol:$2y$04$Il4EwTXzJE7W6mEiegpL1e2abjg1PG7rxgvZVKNwufdrRg5hVf8iC`, // c@rol:pass (htpasswd -B -C 4)
		`dave:{SHA}uE1+cBGmURe+4zihKsjfuHZgJbQ=`,                             // dave-pw (htpasswd -s)
	} {
		name, hashed, _ := strings.Cut(line, ":")
		u, err := exchange.ParseUser(name, hashed)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	auth := &exchange.Rules{Auth: exchange.NewBasicAuth("Staff only", users)}
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, ingress("auth", "auth.example", prefix("/", "web")), tlsIngress("secure", "a.example", "secure-tls", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(web))},
		Certs:     map[route.SecretRef]*tls.Certificate{{Namespace: "ns", Name: "secure-tls"}: cert},
		Rules:     map[string]*exchange.Rules{"ns/auth": auth, "ns/secure": auth},
	})
	basic := func(user, password string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	}
	cases := []struct {
		name   string
		fields []string // "Authorization: ..." lines
		status int
	}{
		{"none", nil, 401},
		{"apr1", []string{basic("foo", "bar")}, 200},
		{"bcrypt", []string{basic("carol", "c@rol:pass")}, 200},
		{"sha", []string{basic("dave", "dave-pw")}, 200},
		{"wrong password", []string{basic("foo", "Bar")}, 401},
		{"unknown user", []string{basic("bar", "foo")}, 401},
		{"huge", []string{"Basic " + strings.Repeat("Zm9vOmJhcg", 1000)}, 401},
		{"not base64", []string{"Basic Zm9v*mJhcg=="}, 401},
		{"no colon", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("foobar"))}, 401},
		{"control bytes", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("foo\x00:bar\r\n"))}, 401},
		{"empty", []string{"Basic"}, 401},
		{"two fields", []string{basic("foo", "bar"), basic("dave", "dave-pw")}, 400},
	}
	t.Run("HTTP/1.1", func(t *testing.T) {
		for _, c := range cases {
			req := "GET /x HTTP/1.1\r\nHost: auth.example\r\n"
			for _, f := range c.fields {
				req += "Authorization: " + f + "\r\n"
			}
			res := raw(t, p.plain, req+"\r\n")
			if res.StatusCode != c.status {
				t.Errorf("%s: %d, want %d", c.name, res.StatusCode, c.status)
				continue
			}
			if c.status == 401 && res.Header.Get("WWW-Authenticate") != `Basic realm="Staff only"` {
				t.Errorf("%s: WWW-Authenticate %q", c.name, res.Header.Get("WWW-Authenticate"))
			}
			if c.status == 200 {
				if got := decode(t, res).Header.Get("Authorization"); got != c.fields[0] {
					t.Errorf("%s: the endpoint got Authorization %q, want the client's", c.name, got)
				}
			}
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
		for _, c := range cases {
			req, _ := http.NewRequest("GET", "https://a.example/x", nil)
			for _, f := range c.fields {
				req.Header.Add("Authorization", f)
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if res.ProtoMajor != 2 {
				t.Fatalf("%s: %s, want HTTP/2", c.name, res.Proto)
			}
			if res.StatusCode != c.status {
				t.Errorf("%s: %d, want %d", c.name, res.StatusCode, c.status)
			} else if c.status == 200 {
				if got := decode(t, res).Header.Get("Authorization"); got != c.fields[0] {
					t.Errorf("%s: the endpoint got Authorization %q, want the client's", c.name, got)
				}
			}
			res.Body.Close()
		}
	})
}
