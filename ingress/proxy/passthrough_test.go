package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// ssl-passthrough: the TLS connections for a passed-through server name
// reach the backend unterminated (the client sees the backend's
// certificate and talks HTTP/2 with it end to end); other names are
// Portico's as before; a refused client or a Service with no endpoint is
// a closed connection; what is not TLS is closed too.
func TestSSLPassthrough(t *testing.T) {
	beCert, err := SelfSigned("the backend itself", "pass.example")
	if err != nil {
		t.Fatal(err)
	}
	be := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.Host, r.TLS.ServerName)
	}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{*beCert}, NextProtos: []string{"h2", "http/1.1"}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = be.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { be.Close() })
	web := echo(t, "web")

	p := start(t, Options{})
	passIng := func(name, host, svc string) route.Ingress {
		ing := ingress(name, host, prefix("/", svc))
		ing.Passthrough = true
		return ing
	}
	p.Store(&exchange.Config{
		Routes: table(t, passIng("pass", "pass.example", "tls-web"), passIng("closed", "closed.example", "tls-web"),
			passIng("empty", "empty.example", "nobody"), ingress("web", "web.example", prefix("/", "web"))),
		Upstreams: map[exchange.Target]*exchange.Upstream{
			target("tls-web"): exchange.NewUpstream(ln.Addr().String()),
			target("nobody"):  exchange.NewUpstream(),
			target("web"):     exchange.NewUpstream(addr(web)),
		},
		Rules: map[string]*exchange.Rules{"ns/closed": {Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
	})
	client := func(sni string) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{ServerName: sni, RootCAs: certPool(beCert)},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, p.secure)
			},
		}}
	}
	res, err := client("pass.example").Get("https://pass.example/x")
	if err != nil {
		t.Fatalf("through the passthrough, verified against the backend's own certificate: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "HTTP/2.0 pass.example pass.example" || res.Header.Get("Server") == "portico" {
		t.Errorf("got %q (Server %q): want the backend's own HTTP/2 answer, untouched", body, res.Header.Get("Server"))
	}

	// Another name is Portico's, the ClientHello read twice as it were.
	conn, err := tls.Dial("tcp", p.secure, &tls.Config{ServerName: "web.example", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "portico default certificate" {
		t.Errorf("web.example got the certificate of %q, want Portico's", cn)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: web.example\r\nConnection: close\r\n\r\n")
	if b, _ := io.ReadAll(conn); len(b) < 12 || string(b[:12]) != "HTTP/1.1 200" {
		t.Errorf("web.example over Portico's TLS: %.40q", b)
	}
	conn.Close()

	for _, sni := range []string{"closed.example", "empty.example"} {
		if _, err := tls.Dial("tcp", p.secure, &tls.Config{ServerName: sni, InsecureSkipVerify: true}); err == nil {
			t.Errorf("%s: a handshake succeeded, want the connection closed", sni)
		}
	}
	raw, err := net.Dial("tcp", p.secure)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "GET / HTTP/1.1\r\nHost: pass.example\r\n\r\n")
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := raw.Read(make([]byte, 64)); err == nil {
		t.Errorf("plain HTTP on the TLS port got %d bytes, want the connection closed", n)
	}
}
