package ingress

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// Client-certificate authentication, ingress-nginx's auth-tls-*
// annotations: auth-tls-secret names a Secret of the Ingress's namespace
// (Opaque or kubernetes.io/tls) whose ca.crt holds the authorities the
// clients' certificates must chain to, and ca.crl, optionally, their
// revocation lists; auth-tls-verify-client (on, optional, optional_no_ca,
// off), auth-tls-verify-depth, auth-tls-error-page,
// auth-tls-pass-certificate-to-upstream and auth-tls-match-cn say how.
// The check is the proxy core's (exchange.ClientAuth); the handshakes of
// the Ingress's hosts ask for a certificate. It fails closed: a Secret
// that cannot be used, or annotations that ask for client certificates
// and cannot be applied, refuse every request (403), as ingress-nginx
// does when it cannot read the authorities.

// ReasonInvalidAuthTLSSecret: the Secret of auth-tls-secret is missing or
// holds no usable authority.
const ReasonInvalidAuthTLSSecret = "InvalidAuthTLSSecret"

// clientTLSSpec collects the auth-tls-* annotations as written; settle
// reads them.
type clientTLSSpec struct {
	raw map[string]string
	// Settled:
	ref       types.NamespacedName // the Secret, when the annotations are usable
	verify    exchange.VerifyClient
	depth     int
	errorPage string
	passCert  bool
	matchCN   *regexp.Regexp
}

// clientTLSValue is the parse of every auth-tls-* annotation: they are
// read together, once all are known (settleClientTLS).
func clientTLSValue(a *annotated, name, v string) error {
	if a.clientTLS.raw == nil {
		a.clientTLS.raw = map[string]string{}
	}
	a.clientTLS.raw[name] = strings.TrimSpace(v)
	return nil
}

// settleClientTLS reads the auth-tls-* annotations and settles the Secret
// of the authorities.
func (a *annotated) settleClientTLS(ing types.NamespacedName, spelled map[string]string, warn func(reason, format string, args ...any)) {
	s := &a.clientTLS
	if s.raw == nil {
		return
	}
	refuse := func(format string, args ...any) {
		a.rulesOf().Refuse = refused
		warn(ReasonInvalidAnnotation, format+"; every request to this Ingress is refused (403) until it is fixed", args...)
	}
	secret, withSecret := s.raw["auth-tls-secret"]
	if !withSecret {
		for _, n := range []string{"auth-tls-verify-client", "auth-tls-match-cn"} {
			if v, ok := s.raw[n]; ok && !(n == "auth-tls-verify-client" && v == "off") {
				refuse("annotation %s asks for client certificates, and auth-tls-secret, the Secret of their authorities, is not set", spelled[n])
				return
			}
		}
		for _, n := range []string{"auth-tls-verify-client", "auth-tls-verify-depth", "auth-tls-error-page", "auth-tls-pass-certificate-to-upstream"} {
			if k, ok := spelled[n]; ok {
				warn(ReasonInvalidAnnotation, "annotation %s has no effect without auth-tls-secret", k)
			}
		}
		return
	}
	ns, name, qualified := strings.Cut(secret, "/")
	if !qualified {
		ns, name = ing.Namespace, secret
	}
	if len(validation.IsDNS1123Subdomain(name)) > 0 || len(validation.IsDNS1123Label(ns)) > 0 {
		refuse("annotation %s: %q is not a Secret name, or namespace/name", spelled["auth-tls-secret"], secret)
		return
	}
	if ns != ing.Namespace {
		// As proxy-ssl-secret and auth-secret: an Ingress does not get to
		// trust (nor to read, through Events) another namespace's
		// authorities.
		refuse("annotation %s names a Secret of namespace %s: client certificate authorities are read from the Ingress's own namespace only", spelled["auth-tls-secret"], ns)
		return
	}
	s.verify, s.depth = exchange.VerifyOn, 1
	if v, ok := s.raw["auth-tls-verify-client"]; ok {
		switch v {
		case "on":
		case "optional":
			s.verify = exchange.VerifyOptional
		case "optional_no_ca":
			s.verify = exchange.VerifyOptionalNoCA
		case "off":
			s.verify = exchange.VerifyOff
		default:
			warn(ReasonInvalidAnnotation, "annotation %s: %q is not on, off, optional or optional_no_ca; on applies", spelled["auth-tls-verify-client"], v)
		}
	}
	if v, ok := s.raw["auth-tls-verify-depth"]; ok {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0 || n > 100:
			warn(ReasonInvalidAnnotation, "annotation %s: %q is not a depth from 1 to 100; 1 applies", spelled["auth-tls-verify-depth"], v)
		case n > 0: // 0 is ingress-nginx's default, 1
			s.depth = n
		}
	}
	if v, ok := s.raw["auth-tls-error-page"]; ok {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !printable(v) {
			warn(ReasonInvalidAnnotation, "annotation %s: %q is not an absolute http or https URL; clients without a valid certificate are answered 400", spelled["auth-tls-error-page"], v)
		} else {
			s.errorPage = v
		}
	}
	if v, ok := s.raw["auth-tls-pass-certificate-to-upstream"]; ok {
		b, err := parseBool(v)
		if err != nil {
			warn(ReasonInvalidAnnotation, "annotation %s: %v; the certificate is not passed", spelled["auth-tls-pass-certificate-to-upstream"], err)
		}
		s.passCert = b
	}
	if v, ok := s.raw["auth-tls-match-cn"]; ok {
		re, err := regexp.Compile(v)
		if err != nil || !printable(v) {
			refuse("annotation %s: %q is not a regular expression (RE2 syntax) to match the subject with, such as CN=(alice|bob)", spelled["auth-tls-match-cn"], v)
			return
		}
		s.matchCN = re
	}
	s.ref = types.NamespacedName{Namespace: ns, Name: name}
}

// clientAuthKey identifies a ClientAuth the compiler made: the same
// Ingress, Secret version and settings make the same one, so that the
// connections' verifications (cached by ClientAuth) survive compiles.
type clientAuthKey struct {
	ingress  string
	secret   types.NamespacedName
	uid      types.UID
	version  string
	settings string
}

type clientAuthEntry struct {
	auth *exchange.ClientAuth
	cas  []*x509.Certificate
	err  error
}

// clientCerts is what a compile gathers of client certificates.
type clientCerts struct {
	used map[clientAuthKey]bool
	// hosts are the authorities the handshakes of each rule host name.
	hosts map[string][]*x509.Certificate
}

func newClientCerts() *clientCerts {
	return &clientCerts{used: map[clientAuthKey]bool{}, hosts: map[string][]*x509.Certificate{}}
}

// clientTLS gives the rules of ing the ClientAuth its annotations ask for,
// notes its hosts for the handshakes, and returns what is wrong with its
// Secret.
func (cp *compiler) clientTLS(ing route.Ingress, a *annotated, secrets map[types.NamespacedName]*corev1.Secret, cc *clientCerts) []problem {
	spec := &a.clientTLS
	if spec.ref.Name == "" {
		return nil
	}
	s := secrets[spec.ref]
	k := clientAuthKey{ingress: ing.Namespace + "/" + ing.Name, secret: spec.ref,
		settings: fmt.Sprintf("%d %d %q %t %v", spec.verify, spec.depth, spec.errorPage, spec.passCert, spec.matchCN)}
	if s != nil {
		k.uid, k.version = s.UID, s.ResourceVersion
	}
	cc.used[k] = true
	e, ok := cp.clientAuths[k]
	if !ok {
		roots, cas, crls, err := clientCAs(s)
		e = clientAuthEntry{cas: cas, err: err}
		if err == nil {
			e.auth = &exchange.ClientAuth{Verify: spec.verify, Roots: roots, CRLs: crls, Depth: spec.depth,
				ErrorPage: spec.errorPage, PassCert: spec.passCert, MatchCN: spec.matchCN}
		}
		if cp.clientAuths == nil {
			cp.clientAuths = map[clientAuthKey]clientAuthEntry{}
		}
		cp.clientAuths[k] = e
	}
	who := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
	if e.err != nil {
		a.rulesOf().Refuse = "the authorities of this route's client certificates cannot be read: it is closed until its Ingress's auth-tls-secret is fixed"
		return []problem{{who, ReasonInvalidAuthTLSSecret, fmt.Sprintf("annotation auth-tls-secret: Secret %s: %v; every request to this Ingress is refused (403) until it is fixed", spec.ref, e.err)}}
	}
	a.rulesOf().ClientAuth = e.auth
	if spec.verify == exchange.VerifyOff {
		return nil
	}
	add := func(host string) {
		host = strings.ToLower(host)
		cc.hosts[host] = append(cc.hosts[host], e.cas...)
	}
	if ing.DefaultBackend != nil {
		add("") // every host's requests may come to it
	}
	for _, r := range ing.Rules {
		add(r.Host)
	}
	return nil
}

// clientCAs reads a CA Secret: the certificates of ca.crt, and the
// revocation lists of ca.crl when it has one.
func clientCAs(s *corev1.Secret) (*x509.CertPool, []*x509.Certificate, []*x509.RevocationList, error) {
	switch {
	case s == nil:
		return nil, nil, nil, errors.New("not found (Portico reads CA Secrets of type Opaque or kubernetes.io/tls)")
	case s.Type != corev1.SecretTypeOpaque && s.Type != corev1.SecretTypeTLS && s.Type != "":
		return nil, nil, nil, fmt.Errorf("has type %q, want Opaque or kubernetes.io/tls", s.Type)
	}
	data := s.Data["ca.crt"]
	if len(data) == 0 {
		return nil, nil, nil, errors.New("has no key ca.crt (the PEM certificates of the authorities)")
	}
	roots := x509.NewCertPool()
	var cas []*x509.Certificate
	for i := 1; ; i++ {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("ca.crt: certificate %d: %w", i, err)
		}
		roots.AddCert(c)
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, nil, nil, errors.New("ca.crt holds no PEM certificate")
	}
	var crls []*x509.RevocationList
	if data := s.Data["ca.crl"]; len(data) > 0 {
		for i := 1; ; i++ {
			var b *pem.Block
			if b, data = pem.Decode(data); b == nil {
				break
			}
			if b.Type != "X509 CRL" {
				continue
			}
			l, err := x509.ParseRevocationList(b.Bytes)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("ca.crl: list %d: %w", i, err)
			}
			crls = append(crls, l)
		}
		if len(crls) == 0 {
			return nil, nil, nil, errors.New("ca.crl holds no PEM revocation list (X509 CRL)")
		}
	}
	return roots, cas, crls, nil
}

// forget drops the ClientAuths no Ingress uses any more.
func (cp *compiler) forgetClientAuths(cc *clientCerts) {
	for k := range cp.clientAuths {
		if !cc.used[k] {
			delete(cp.clientAuths, k)
		}
	}
}

// pools returns the authorities each host's handshakes name.
func (cc *clientCerts) pools() map[string]*x509.CertPool {
	if len(cc.hosts) == 0 {
		return nil
	}
	out := make(map[string]*x509.CertPool, len(cc.hosts))
	for h, cas := range cc.hosts {
		p := x509.NewCertPool()
		for _, c := range cas {
			p.AddCert(c) // a certificate already in p is not added twice
		}
		out[h] = p
	}
	return out
}
