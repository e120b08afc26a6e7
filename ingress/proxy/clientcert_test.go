package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// issue makes a certificate for cn signed by parent (self-signed when
// parent is nil), a CA when ca is set.
func issue(t *testing.T, cn string, parent *tls.Certificate, ca bool) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage, tmpl.ExtKeyUsage = true, true, x509.KeyUsageCertSign, nil
	}
	signer, signKey := tmpl, any(key)
	if parent != nil {
		signer, signKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// Client certificates over real sockets, HTTP/1.1 and HTTP/2 over TLS:
// the handshake of a host with client-certificate authentication asks
// for one (naming its authority), the core decides, the endpoint hears
// the result; other hosts' handshakes ask for nothing.
func TestClientCertificates(t *testing.T) {
	web := echo(t, "web")
	root, other := issue(t, "Root CA", nil, true), issue(t, "Other CA", nil, true)
	alice, bob, stranger := issue(t, "alice", root, false), issue(t, "bob", root, false), issue(t, "alice", other, false)
	serverCert, err := SelfSigned("server", "m.example", "open.example")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root.Leaf)
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes: table(t,
			tlsIngress("m", "m.example", "tls", prefix("/", "web")),
			tlsIngress("open", "open.example", "tls", prefix("/", "web")),
		),
		Upstreams: map[exchange.Target]*exchange.Upstream{target("web"): exchange.NewUpstream(addr(web))},
		Certs:     map[route.SecretRef]*tls.Certificate{{Namespace: "ns", Name: "tls"}: serverCert},
		Rules: map[string]*exchange.Rules{"ns/m": {ClientAuth: &exchange.ClientAuth{
			Roots: roots, Depth: 1, MatchCN: regexp.MustCompile("CN=alice"),
		}}},
		ClientCertHosts: map[string]*x509.CertPool{"m.example": roots},
	})

	for _, h2 := range []bool{false, true} {
		proto := "HTTP/1.1"
		if h2 {
			proto = "HTTP/2"
		}
		for _, c := range []struct {
			name      string
			host, sni string
			cert      *tls.Certificate
			status    int
			body      string // in the proxy's answer
			subject   string // ssl-client-subject-dn the endpoint hears
		}{
			{name: "no certificate", host: "m.example", status: 400, body: "No required SSL certificate was sent"},
			{name: "right authority", host: "m.example", cert: alice, status: 200, subject: "CN=alice,O=Example"},
			{name: "wrong authority", host: "m.example", cert: stranger, status: 400, body: "The SSL certificate error"},
			{name: "CN does not match", host: "m.example", cert: bob, status: 403, body: "client certificate unauthorized"},
			{name: "host without client authentication", host: "open.example", cert: alice, status: 200},
			{name: "SNI of a host that asks for none", host: "m.example", sni: "open.example", cert: alice, status: 421},
		} {
			t.Run(proto+"/"+c.name, func(t *testing.T) {
				sni := c.host
				if c.sni != "" {
					sni = c.sni
				}
				asked := false
				var acceptable [][]byte
				tc := &tls.Config{ServerName: sni, InsecureSkipVerify: true,
					GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
						asked, acceptable = true, cri.AcceptableCAs
						if c.cert == nil {
							return &tls.Certificate{}, nil
						}
						return c.cert, nil
					}}
				tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2,
					DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
						return (&net.Dialer{}).DialContext(ctx, network, p.secure)
					}}
				if !h2 {
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				defer tr.CloseIdleConnections()
				req, _ := http.NewRequest("GET", "https://"+c.host+"/", nil)
				req.Header.Set("ssl-client-verify", "SUCCESS") // forged: never reaches the endpoint
				req.Header.Set("ssl-client-subject-dn", "CN=admin")
				res, err := (&http.Client{Transport: tr}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				if wantMajor := map[bool]int{false: 1, true: 2}[h2]; res.ProtoMajor != wantMajor {
					t.Fatalf("served over %s", res.Proto)
				}
				if wantAsked := sni == "m.example"; asked != wantAsked {
					t.Errorf("the handshake for %s asked for a certificate: %t, want %t", sni, asked, wantAsked)
				}
				if asked && (len(acceptable) != 1 || string(acceptable[0]) != string(root.Leaf.RawSubject)) {
					t.Errorf("the handshake names %d authorities, want the route's root", len(acceptable))
				}
				if res.StatusCode != c.status {
					body, _ := io.ReadAll(res.Body)
					t.Fatalf("status %d (%q), want %d", res.StatusCode, body, c.status)
				}
				if c.status != 200 {
					body, _ := io.ReadAll(res.Body)
					if !strings.Contains(string(body), c.body) {
						t.Errorf("body %q, want it to say %q", body, c.body)
					}
					return
				}
				s := decode(t, res)
				verify, subject := s.Header.Values("Ssl-Client-Verify"), s.Header.Values("Ssl-Client-Subject-Dn")
				switch {
				case c.subject == "" && (len(verify)+len(subject) != 0):
					t.Errorf("the endpoint heard ssl-client-verify %q, ssl-client-subject-dn %q; want neither", verify, subject)
				case c.subject != "" && (len(verify) != 1 || verify[0] != "SUCCESS" || len(subject) != 1 || subject[0] != c.subject):
					t.Errorf("the endpoint heard ssl-client-verify %q, ssl-client-subject-dn %q; want SUCCESS and %q", verify, subject, c.subject)
				}
			})
		}
	}
}
