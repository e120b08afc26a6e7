package exchange

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/route"
)

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serials = big.NewInt(100)

// newTestCA makes a root (parent nil) or an intermediate authority.
func newTestCA(t testing.TB, cn string, parent *testCA) *testCA {
	t.Helper()
	ca := &testCA{}
	ca.cert, ca.key = makeCert(t, parent, &x509.Certificate{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		IsCA:    true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
	return ca
}

// issue makes a client certificate for cn; edit changes its template.
func (ca *testCA) issue(t testing.TB, cn string, edit func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if edit != nil {
		edit(tmpl)
	}
	c, _ := makeCert(t, ca, tmpl)
	return c
}

// crl makes ca's revocation list naming revoked, valid until next.
func (ca *testCA) crl(t testing.TB, next time.Time, revoked ...*x509.Certificate) *x509.RevocationList {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: next, RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func makeCert(t testing.TB, parent *testCA, tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serials.Add(serials, big.NewInt(1))
	tmpl.SerialNumber = new(big.Int).Set(tmpl.SerialNumber)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func pool(cas ...*testCA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.cert)
	}
	return p
}

func TestClientCert(t *testing.T) {
	root, other := newTestCA(t, "Root CA", nil), newTestCA(t, "Other CA", nil)
	inter := newTestCA(t, "Intermediate CA", root)
	alice := root.issue(t, "alice", nil)
	bob := root.issue(t, "bob", nil)
	stranger := other.issue(t, "alice", nil)
	expired := root.issue(t, "alice", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	})
	server := root.issue(t, "alice", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
	carol := inter.issue(t, "carol", nil)
	selfSigned := newTestCA(t, "alice", nil).cert

	cfg := testConfig(t)
	cfg.ClientCertHosts = map[string]*x509.CertPool{"shop.example": pool(root), "plain.example": pool(root)}
	p := NewPolicy(Settings{})
	on := &ClientAuth{Roots: pool(root), Depth: 1}
	type want struct {
		status int
		body   string
		// fields sent upstream; "-" for none.
		verify, subject, issuer string
	}
	for _, c := range []struct {
		name  string
		auth  ClientAuth
		certs []*x509.Certificate
		host  string // shop.example unless set; plain.example is plain HTTP
		sni   string // host unless set
		want  want
	}{
		{name: "on, none", auth: *on, want: want{status: 400, body: "No required SSL certificate was sent"}},
		{name: "on, valid", auth: *on, certs: []*x509.Certificate{alice},
			want: want{verify: "SUCCESS", subject: "CN=alice,O=Example", issuer: "CN=Root CA,O=Example"}},
		{name: "on, other authority", auth: *on, certs: []*x509.Certificate{stranger}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "on, self-signed", auth: *on, certs: []*x509.Certificate{selfSigned}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "on, expired", auth: *on, certs: []*x509.Certificate{expired}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "on, server certificate", auth: *on, certs: []*x509.Certificate{server}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "optional, none", auth: ClientAuth{Verify: VerifyOptional, Roots: pool(root), Depth: 1}, want: want{verify: "NONE", subject: "-", issuer: "-"}},
		{name: "optional, other authority", auth: ClientAuth{Verify: VerifyOptional, Roots: pool(root), Depth: 1}, certs: []*x509.Certificate{stranger},
			want: want{status: 400, body: "The SSL certificate error"}},
		{name: "optional_no_ca, other authority", auth: ClientAuth{Verify: VerifyOptionalNoCA, Roots: pool(root), Depth: 1}, certs: []*x509.Certificate{stranger},
			want: want{verify: "FAILED:unable to get local issuer certificate", subject: "CN=alice,O=Example", issuer: "CN=Other CA,O=Example"}},
		{name: "optional_no_ca, self-signed", auth: ClientAuth{Verify: VerifyOptionalNoCA, Roots: pool(root), Depth: 1}, certs: []*x509.Certificate{selfSigned},
			want: want{verify: "FAILED:self-signed certificate", subject: "CN=alice,O=Example", issuer: "CN=alice,O=Example"}},
		{name: "optional_no_ca, expired", auth: ClientAuth{Verify: VerifyOptionalNoCA, Roots: pool(root), Depth: 1}, certs: []*x509.Certificate{expired},
			want: want{status: 400, body: "The SSL certificate error"}},
		{name: "off", auth: ClientAuth{Verify: VerifyOff, Roots: pool(root)}, certs: []*x509.Certificate{alice}, want: want{verify: "NONE", subject: "-", issuer: "-"}},
		{name: "error page", auth: ClientAuth{Roots: pool(root), ErrorPage: "https://errors.example/cert.html"}, want: want{status: 302}},
		{name: "match-cn", auth: ClientAuth{Roots: pool(root), Depth: 1, MatchCN: regexp.MustCompile("CN=(alice|dave)")}, certs: []*x509.Certificate{alice},
			want: want{verify: "SUCCESS", subject: "CN=alice,O=Example", issuer: "CN=Root CA,O=Example"}},
		{name: "match-cn, other name", auth: ClientAuth{Roots: pool(root), Depth: 1, MatchCN: regexp.MustCompile("CN=(alice|dave)")}, certs: []*x509.Certificate{bob},
			want: want{status: 403, body: "client certificate unauthorized"}},
		{name: "match-cn, optional, none", auth: ClientAuth{Verify: VerifyOptional, Roots: pool(root), Depth: 1, MatchCN: regexp.MustCompile("CN=alice")},
			want: want{status: 403, body: "client certificate unauthorized"}},
		{name: "intermediate, depth 1", auth: *on, certs: []*x509.Certificate{carol, inter.cert},
			want: want{verify: "SUCCESS", subject: "CN=carol,O=Example", issuer: "CN=Intermediate CA,O=Example"}},
		{name: "intermediate, depth 0", auth: ClientAuth{Roots: pool(root)}, certs: []*x509.Certificate{carol, inter.cert},
			want: want{status: 400, body: "The SSL certificate error"}},
		{name: "intermediate not sent", auth: *on, certs: []*x509.Certificate{carol}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "CRL, not revoked", auth: ClientAuth{Roots: pool(root), Depth: 1, CRLs: []*x509.RevocationList{root.crl(t, time.Now().Add(time.Hour), bob)}},
			certs: []*x509.Certificate{alice}, want: want{verify: "SUCCESS", subject: "CN=alice,O=Example", issuer: "CN=Root CA,O=Example"}},
		{name: "CRL, revoked", auth: ClientAuth{Roots: pool(root), Depth: 1, CRLs: []*x509.RevocationList{root.crl(t, time.Now().Add(time.Hour), bob)}},
			certs: []*x509.Certificate{bob}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "CRL, expired", auth: ClientAuth{Roots: pool(root), Depth: 1, CRLs: []*x509.RevocationList{root.crl(t, time.Now().Add(-time.Minute))}},
			certs: []*x509.Certificate{alice}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "CRL, none for the intermediate", auth: ClientAuth{Roots: pool(root), Depth: 1, CRLs: []*x509.RevocationList{root.crl(t, time.Now().Add(time.Hour))}},
			certs: []*x509.Certificate{carol, inter.cert}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "no roots trusts nothing", auth: ClientAuth{Depth: 1}, certs: []*x509.Certificate{alice}, want: want{status: 400, body: "The SSL certificate error"}},
		{name: "another server name asked for none", auth: *on, certs: []*x509.Certificate{alice}, sni: "other.example",
			want: want{status: 421}},
		{name: "plain HTTP, on", auth: *on, host: "plain.example", want: want{status: 400, body: "No required SSL certificate was sent"}},
		{name: "plain HTTP, optional", auth: ClientAuth{Verify: VerifyOptional, Roots: pool(root)}, host: "plain.example",
			want: want{verify: "NONE", subject: "-", issuer: "-"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := "shop.example"
			if c.host != "" {
				host = c.host
			}
			cfg.Rules = map[string]*Rules{"ns/shop": {ClientAuth: &c.auth}, "ns/plain": {ClientAuth: &c.auth}}
			req := get(host, "/", f("ssl-client-verify", "SUCCESS"), f("SSL-Client-Subject-DN", "CN=admin"), f("ssl-client-cert", "forged"))
			req.TLS = host == "shop.example"
			req.ServerName = host
			if c.sni != "" {
				req.ServerName = c.sni
			}
			if len(c.certs) > 0 {
				req.Peer = &Peer{Certs: c.certs}
			}
			var x Exchange
			p.Decide(cfg, req, time.Now(), &x)
			if c.want.status != 0 {
				if x.Outcome != Answer || x.Status != c.want.status || !strings.Contains(x.Body, c.want.body) {
					t.Fatalf("got outcome %d, %d %q; want %d saying %q", x.Outcome, x.Status, x.Body, c.want.status, c.want.body)
				}
				if c.want.status == 302 && value(x.AnswerFields(time.Now()), "Location") != "https://errors.example/cert.html" {
					t.Errorf("Location %q, want the error page", value(x.AnswerFields(time.Now()), "Location"))
				}
				return
			}
			if x.Outcome != Forward {
				t.Fatalf("got outcome %d, %d %q; want the request forwarded", x.Outcome, x.Status, x.Body)
			}
			for _, fw := range []struct{ name, want string }{
				{"ssl-client-verify", c.want.verify}, {"ssl-client-subject-dn", c.want.subject}, {"ssl-client-issuer-dn", c.want.issuer}, {"ssl-client-cert", "-"},
			} {
				var got []string
				for _, fl := range x.Out.Fields {
					if fl.Name == fw.name || equalFold(fl.Name, fw.name) {
						got = append(got, fl.Value)
					}
				}
				switch {
				case fw.want == "-" && len(got) != 0:
					t.Errorf("%s: %q sent, want none", fw.name, got)
				case fw.want != "-" && (len(got) != 1 || got[0] != fw.want):
					t.Errorf("%s: %q sent, want just %q", fw.name, got, fw.want)
				}
			}
		})
	}
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		ca, cb := a[i]|0x20, b[i]|0x20
		if ca != cb {
			return false
		}
	}
	return true
}

// pass-certificate-to-upstream sends the client's certificate as nginx's
// $ssl_client_escaped_cert: its PEM, URL-encoded.
func TestClientCertPassed(t *testing.T) {
	root := newTestCA(t, "Root CA", nil)
	alice := root.issue(t, "alice", nil)
	cfg := testConfig(t)
	cfg.ClientCertHosts = map[string]*x509.CertPool{"*.example": pool(root)}
	auth := &ClientAuth{Roots: pool(root), Depth: 1, PassCert: true}
	cfg.Rules = map[string]*Rules{"ns/shop": {ClientAuth: auth}}
	req := get("shop.example", "/")
	req.TLS, req.ServerName, req.Peer = true, "SHOP.example.", &Peer{Certs: []*x509.Certificate{alice}}
	var x Exchange
	NewPolicy(Settings{}).Decide(cfg, req, time.Now(), &x)
	if x.Outcome != Forward {
		t.Fatalf("%d %q, want the request forwarded", x.Status, x.Body)
	}
	sent := value(x.Out.Fields, "ssl-client-cert")
	pemText, err := url.PathUnescape(sent)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: alice.Raw})); pemText != want {
		t.Errorf("ssl-client-cert decodes to %q, want %q", pemText, want)
	}
	if regexp.MustCompile(`[^A-Za-z0-9%._~-]`).MatchString(sent) {
		t.Errorf("ssl-client-cert %q holds characters nginx escapes", sent)
	}
	// The verification is made once per connection and ClientAuth.
	first := req.Peer.last.Load()
	NewPolicy(Settings{}).Decide(cfg, req, time.Now(), &x)
	if req.Peer.last.Load() != first {
		t.Error("the second request verified the certificate again")
	}
}

// A client's own ssl-client-* fields never reach an endpoint, whether its
// route checks certificates or not.
func TestClientCertFieldsDropped(t *testing.T) {
	cfg := testConfig(t)
	var x Exchange
	req := get("plain.example", "/", f("Ssl-Client-Verify", "SUCCESS"), f("ssl-client-subject-dn", "CN=admin"),
		f("ssl-client-issuer-dn", "CN=Root"), f("SSL-CLIENT-CERT", "x"), f("ssl-client-certs", "kept"))
	NewPolicy(Settings{}).Decide(cfg, req, time.Now(), &x)
	if x.Outcome != Forward {
		t.Fatalf("%d %q", x.Status, x.Body)
	}
	for _, fl := range x.Out.Fields {
		if clientCertField(fl.Name) {
			t.Errorf("%s: %s sent upstream", fl.Name, fl.Value)
		}
	}
	if value(x.Out.Fields, "ssl-client-certs") != "kept" {
		t.Error("ssl-client-certs, not one of the proxy's fields, was dropped")
	}
}

// Names with bytes a header field cannot hold are escaped.
func TestDistinguishedName(t *testing.T) {
	root := newTestCA(t, "Root CA", nil)
	c := root.issue(t, "x\r\nInjected: 1", func(c *x509.Certificate) { c.Subject.Country = []string{"FR"} })
	if got, want := distinguishedName(c.RawSubject), `CN=x\0D\0AInjected: 1,O=Example,C=FR`; got != want {
		t.Errorf("DN %q, want %q", got, want)
	}
}

func TestClientCAs(t *testing.T) {
	a, b, any := x509.NewCertPool(), x509.NewCertPool(), x509.NewCertPool()
	cfg := &Config{ClientCertHosts: map[string]*x509.CertPool{"a.example": a, "*.b.example": b}}
	for _, c := range []struct {
		sni  string
		want *x509.CertPool
	}{{"a.example", a}, {"A.Example.", a}, {"x.b.example", b}, {"b.example", nil}, {"y.x.b.example", nil}, {"", nil}} {
		if got := cfg.ClientCAs(c.sni); got != c.want {
			t.Errorf("ClientCAs(%q) = %p, want %p", c.sni, got, c.want)
		}
	}
	cfg.ClientCertHosts[""] = any
	if cfg.ClientCAs("c.example") != any || cfg.ClientCAs("") != any || cfg.ClientCAs("a.example") != a {
		t.Error("the every-host authorities are not the fallback")
	}
	if (&Config{Routes: &route.Table{}}).ClientCAs("a.example") != nil {
		t.Error("a Config without client certificates asks for one")
	}
}
