package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// The auth-tls-* annotations, in both spellings: what they settle on, and
// that whatever asks for client certificates and cannot get them refuses.
func TestClientTLSAnnotations(t *testing.T) {
	const nginx, ours = NginxPrefix, PorticoPrefix
	ca := types.NamespacedName{Namespace: "ns", Name: "ca"}
	type settled struct {
		ref       types.NamespacedName
		verify    exchange.VerifyClient
		depth     int
		errorPage string
		pass      bool
		matchCN   string
	}
	for _, c := range []struct {
		name    string
		ann     map[string]string
		want    settled // zero ref: no client certificates
		refused bool
		reasons []string
	}{
		{"defaults", map[string]string{nginx + "auth-tls-secret": "ca"}, settled{ref: ca, depth: 1}, false, nil},
		{"all of them", map[string]string{nginx + "auth-tls-secret": "ns/ca", nginx + "auth-tls-verify-client": "optional_no_ca", nginx + "auth-tls-verify-depth": "3",
			nginx + "auth-tls-error-page": "https://errors.example/cert.html", nginx + "auth-tls-pass-certificate-to-upstream": "true", nginx + "auth-tls-match-cn": "CN=(alice|bob)"},
			settled{ca, exchange.VerifyOptionalNoCA, 3, "https://errors.example/cert.html", true, "CN=(alice|bob)"}, false, nil},
		{"ours wins", map[string]string{nginx + "auth-tls-secret": "other", ours + "auth-tls-secret": "ca", ours + "auth-tls-verify-client": "optional", nginx + "auth-tls-verify-client": "off"},
			settled{ref: ca, verify: exchange.VerifyOptional, depth: 1}, false, nil},
		{"off", map[string]string{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-verify-client": "off"}, settled{ref: ca, verify: exchange.VerifyOff, depth: 1}, false, nil},
		{"depth 0 is the default", map[string]string{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-verify-depth": "0"}, settled{ref: ca, depth: 1}, false, nil},
		{"an unknown verify is on", map[string]string{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-verify-client": "yes"}, settled{ref: ca, depth: 1}, false, []string{ReasonInvalidAnnotation}},
		{"a bad depth is 1", map[string]string{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-verify-depth": "-2"}, settled{ref: ca, depth: 1}, false, []string{ReasonInvalidAnnotation}},
		{"a bad error page is none", map[string]string{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-error-page": "/error.html"}, settled{ref: ca, depth: 1}, false, []string{ReasonInvalidAnnotation}},
		{"a bad pass is false", map[string]string{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-pass-certificate-to-upstream": "yes"}, settled{ref: ca, depth: 1}, false, []string{ReasonInvalidAnnotation}},
		{"a bad match-cn refuses", map[string]string{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-match-cn": "CN=(alice"}, settled{}, true, []string{ReasonInvalidAnnotation}},
		{"another namespace's secret", map[string]string{nginx + "auth-tls-secret": "kube-system/ca"}, settled{}, true, []string{ReasonInvalidAnnotation}},
		{"a bad secret name", map[string]string{nginx + "auth-tls-secret": "CA!"}, settled{}, true, []string{ReasonInvalidAnnotation}},
		{"verify without a secret", map[string]string{nginx + "auth-tls-verify-client": "on"}, settled{}, true, []string{ReasonInvalidAnnotation}},
		{"match-cn without a secret", map[string]string{nginx + "auth-tls-match-cn": "CN=alice"}, settled{}, true, []string{ReasonInvalidAnnotation}},
		{"depth without a secret", map[string]string{nginx + "auth-tls-verify-depth": "2", nginx + "auth-tls-verify-client": "off"}, settled{}, false,
			[]string{ReasonInvalidAnnotation, ReasonInvalidAnnotation}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := readAnnotations(types.NamespacedName{Namespace: "ns", Name: "x"}, c.ann)
			var reasons []string
			for _, p := range a.probs {
				reasons = append(reasons, p.Reason)
			}
			if !slices.Equal(reasons, c.reasons) {
				t.Errorf("problems %v, want %v", a.probs, c.reasons)
			}
			if refused := a.rules != nil && a.rules.Refuse != ""; refused != c.refused {
				t.Errorf("refused %v, want %v", refused, c.refused)
			}
			s := a.clientTLS
			got := settled{ref: s.ref}
			if s.ref.Name != "" {
				got = settled{s.ref, s.verify, s.depth, s.errorPage, s.passCert, ""}
				if s.matchCN != nil {
					got.matchCN = s.matchCN.String()
				}
			}
			if got != c.want {
				t.Errorf("settled %+v, want %+v", got, c.want)
			}
		})
	}

	// Ingresses that claim a route with different client certificates
	// do not merge.
	policy := func(ann map[string]string) string {
		return readAnnotations(types.NamespacedName{Namespace: "ns", Name: "x"}, ann).policy
	}
	on := map[string]string{nginx + "auth-tls-secret": "ca"}
	for _, other := range []map[string]string{
		nil,
		{nginx + "auth-tls-secret": "other-ca"},
		{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-verify-client": "optional"},
		{nginx + "auth-tls-secret": "ca", nginx + "auth-tls-match-cn": "CN=alice"},
	} {
		if policy(on) == policy(other) {
			t.Errorf("the Policy of %v is that of %v", other, on)
		}
	}
	if !strings.Contains(policy(on), `auth-tls-secret-ref="ns/ca"`) {
		t.Errorf("Policy %q does not name the Secret", policy(on))
	}
}

// testCA returns a new authority, its certificate as PEM, and a client
// certificate it issued for cn.
func testCA(t *testing.T, cn string) (caPEM []byte, ca *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca, key
}

func clientOf(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func clientTLSIngress(name, secret string, extra map[string]string) *networkingv1.Ingress {
	i := authIngress(name, secret, extra)
	delete(i.Annotations, NginxPrefix+"auth-type")
	delete(i.Annotations, NginxPrefix+"auth-secret")
	i.Annotations[NginxPrefix+"auth-tls-secret"] = secret
	return i
}

// The compiler reads the authorities out of the Secret each Ingress
// names, in its own namespace; a Secret it cannot use closes the route
// (403) with a Warning, never serves it unauthenticated. The hosts of the
// Ingresses that check certificates ask for one in their handshakes.
func TestCompileClientTLS(t *testing.T) {
	caPEM, ca, caKey := testCA(t, "Root CA")
	_, otherCA, otherKey := testCA(t, "Other CA")
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour)}, ca, caKey)
	if err != nil {
		t.Fatal(err)
	}
	crlPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})
	ings := []*networkingv1.Ingress{
		clientTLSIngress("good", "ca", map[string]string{NginxPrefix + "auth-tls-match-cn": "CN=alice"}),
		clientTLSIngress("tls", "tls-ca", nil),
		clientTLSIngress("crl", "with-crl", nil),
		clientTLSIngress("off", "ca", map[string]string{NginxPrefix + "auth-tls-verify-client": "off"}),
		clientTLSIngress("missing", "absent", nil),
		clientTLSIngress("nokey", "nokey", nil),
		clientTLSIngress("garbage", "garbage", nil),
		clientTLSIngress("badcrl", "badcrl", nil),
		clientTLSIngress("elsewhere", "kube-system/ca", nil),
		authIngress("plain", "users", nil), // no client certificates
	}
	delete(ings[len(ings)-1].Annotations, NginxPrefix+"auth-type")
	delete(ings[len(ings)-1].Annotations, NginxPrefix+"auth-secret")
	secrets := []*corev1.Secret{
		authSecretOf("ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(caPEM)}),
		authSecretOf("tls-ca", corev1.SecretTypeTLS, map[string]string{"ca.crt": string(caPEM), "tls.crt": "x", "tls.key": "y"}),
		authSecretOf("with-crl", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(caPEM), "ca.crl": string(crlPEM)}),
		authSecretOf("nokey", corev1.SecretTypeOpaque, map[string]string{"ca.pem": string(caPEM)}),
		authSecretOf("garbage", corev1.SecretTypeOpaque, map[string]string{"ca.crt": "not a certificate"}),
		authSecretOf("badcrl", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(caPEM), "ca.crl": "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"}),
	}
	ks := authSecretOf("ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(caPEM)})
	ks.Namespace, ks.UID = "kube-system", "ks-ca"
	secrets = append(secrets, ks)
	var cp compiler
	cl := cluster{class: Class{Name: "portico", Found: true}, ingresses: ings, secrets: secrets}
	cfg, probs := cp.compile(cl)
	notes := map[string][]string{}
	for _, p := range probs {
		notes[p.Ingress.Name] = append(notes[p.Ingress.Name], p.Reason+": "+p.Note)
	}
	for ing, want := range map[string]string{
		"missing":   ReasonInvalidAuthTLSSecret + ": annotation auth-tls-secret: Secret ns/absent: not found",
		"nokey":     ReasonInvalidAuthTLSSecret + ": annotation auth-tls-secret: Secret ns/nokey: has no key ca.crt",
		"garbage":   "ca.crt holds no PEM certificate",
		"badcrl":    "ca.crl: list 1:",
		"elsewhere": ReasonInvalidAnnotation + ": annotation nginx.ingress.kubernetes.io/auth-tls-secret names a Secret of namespace kube-system",
	} {
		if len(notes[ing]) != 1 || !strings.Contains(notes[ing][0], want) {
			t.Errorf("%s: problems %q, want one saying %q", ing, notes[ing], want)
		}
	}
	for _, ing := range []string{"good", "tls", "crl", "off", "plain"} {
		if len(notes[ing]) != 0 {
			t.Errorf("%s: problems %q", ing, notes[ing])
		}
	}
	// Every Ingress checking certificates asks for them; "off" and the
	// others do not.
	var hosts []string
	for h := range cfg.ClientCertHosts {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	if want := []string{"crl.example", "good.example", "tls.example"}; !slices.Equal(hosts, want) {
		t.Errorf("the handshakes of %v ask for certificates, want %v", hosts, want)
	}
	if cfg.ClientCAs("off.example") != nil || cfg.ClientCAs("missing.example") != nil || cfg.ClientCAs("plain.example") != nil {
		t.Error("a host without a usable client authentication asks for certificates")
	}

	cfg.Upstreams[exchange.Target{Namespace: "ns", Service: "web", Port: route.Port{Number: 80}}] = exchange.NewUpstream("10.0.0.1:80")
	alice, stranger := clientOf(t, "alice", ca, caKey), clientOf(t, "alice", otherCA, otherKey)
	decide := func(host string, cert *x509.Certificate) int {
		req := &exchange.Request{Method: "GET", Target: "/", Host: host, Proto: exchange.HTTP11, TLS: true, ServerName: host,
			Client: netip.MustParseAddrPort("192.0.2.1:1")}
		if cert != nil {
			req.Peer = &exchange.Peer{Certs: []*x509.Certificate{cert}}
		}
		var x exchange.Exchange
		exchange.NewPolicy(exchange.Settings{}).Decide(cfg, req, time.Now(), &x)
		return x.Status
	}
	for _, c := range []struct {
		host   string
		cert   *x509.Certificate
		status int
	}{
		{"good.example", alice, 0}, {"good.example", nil, 400}, {"good.example", stranger, 400},
		{"tls.example", alice, 0}, {"crl.example", alice, 0}, {"off.example", nil, 0}, {"plain.example", nil, 0},
		{"missing.example", alice, 403}, {"nokey.example", alice, 403}, {"garbage.example", alice, 403},
		{"badcrl.example", alice, 403}, {"elsewhere.example", alice, 403},
	} {
		if got := decide(c.host, c.cert); got != c.status {
			t.Errorf("%s with %v: %d, want %d", c.host, c.cert != nil, got, c.status)
		}
	}

	// The same Secret version keeps the ClientAuth (and the connections'
	// verifications) from compile to compile; a new version replaces it.
	before := cfg.Rules["ns/good"].ClientAuth
	cfg, _ = cp.compile(cl)
	if cfg.Rules["ns/good"].ClientAuth != before {
		t.Error("a compile with nothing changed made a new ClientAuth")
	}
	changed := authSecretOf("ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(caPEM)})
	changed.ResourceVersion = "2"
	cl.secrets = append([]*corev1.Secret{changed}, secrets[1:]...)
	cfg, _ = cp.compile(cl)
	if cfg.Rules["ns/good"].ClientAuth == before {
		t.Error("a new version of the Secret kept the old ClientAuth")
	}
	if len(cp.clientAuths) != 8 {
		t.Errorf("%d ClientAuths kept, want one per Ingress that names a Secret of its namespace", len(cp.clientAuths))
	}
}

// Two Ingresses that claim the same route with different client
// certificates conflict; on different paths of one host, each route keeps
// its own, and the host's handshakes name both authorities.
func TestClientTLSSharedHost(t *testing.T) {
	caPEM, ca, _ := testCA(t, "Root CA")
	otherPEM, other, _ := testCA(t, "Other CA")
	a := clientTLSIngress("a", "ca", nil)
	b := clientTLSIngress("b", "other-ca", nil)
	b.Spec.Rules[0].Host = "a.example"
	b.CreationTimestamp.Time = time.Now() // newer: it loses
	secrets := []*corev1.Secret{
		authSecretOf("ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(caPEM)}),
		authSecretOf("other-ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(otherPEM)}),
	}
	var cp compiler
	_, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true}, ingresses: []*networkingv1.Ingress{a, b}, secrets: secrets})
	if len(probs) != 1 || probs[0].Reason != ReasonRouteConflict || probs[0].Ingress.Name != "b" {
		t.Errorf("problems %v, want a RouteConflict for b", probs)
	}
	b.Spec.Rules[0].HTTP.Paths[0].Path = "/b"
	cfg, probs := cp.compile(cluster{class: Class{Name: "portico", Found: true}, ingresses: []*networkingv1.Ingress{a, b}, secrets: secrets})
	if len(probs) != 0 {
		t.Errorf("problems %v", probs)
	}
	pool := cfg.ClientCAs("a.example")
	if pool == nil {
		t.Fatal("a.example asks for no certificate")
	}
	//lint:ignore SA1019 the subjects are what a CertificateRequest names
	if subjects := pool.Subjects(); len(subjects) != 2 || !slices.ContainsFunc(subjects, func(s []byte) bool { return string(s) == string(ca.RawSubject) }) ||
		!slices.ContainsFunc(subjects, func(s []byte) bool { return string(s) == string(other.RawSubject) }) {
		t.Errorf("a.example's handshakes name %d authorities, want both Ingresses'", len(subjects))
	}
}
