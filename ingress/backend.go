package ingress

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// How an Ingress's endpoints are spoken to: backend-protocol, and the
// proxy-ssl-* annotations for the TLS ones, as ingress-nginx reads them.

// proxySSL collects the proxy-ssl-* annotations of an Ingress.
type proxySSL struct {
	set    bool   // any of them is set
	secret string // proxy-ssl-secret: "name" or "namespace/name"
	verify bool   // proxy-ssl-verify
	name   string // proxy-ssl-name
	sni    bool   // proxy-ssl-server-name
}

func parseProtocol(a *annotated, _, v string) error {
	p, ok := route.ParseProtocol(strings.TrimSpace(v))
	if !ok {
		return fmt.Errorf("%q is not a backend protocol Portico speaks: want HTTP, HTTPS, GRPC, GRPCS or H2C (AUTO_HTTP and FCGI are not supported); HTTP applies", v)
	}
	a.protocol = p
	return nil
}

// onOff reads nginx's on and off (and true and false).
func onOff(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is neither \"on\" nor \"off\"", v)
}

func parseProxySSL(a *annotated, name, v string) error {
	s := &a.proxySSL
	s.set = true
	var err error
	switch name {
	case "proxy-ssl-secret":
		s.secret = strings.TrimSpace(v)
		ns, n, cut := strings.Cut(s.secret, "/")
		if !cut {
			ns, n = "", ns
		}
		if len(validation.IsDNS1123Subdomain(n)) > 0 || cut && len(validation.IsDNS1123Label(ns)) > 0 {
			s.secret = ""
			err = fmt.Errorf("%q is not a Secret name (want name or namespace/name)", v)
		}
	case "proxy-ssl-verify":
		s.verify, err = onOff(v)
		if err != nil {
			s.verify = true // a check asked for in a typo is still made
			err = fmt.Errorf("%v; endpoints' certificates are verified until it is fixed", err)
		}
	case "proxy-ssl-name":
		s.name = strings.TrimSpace(v)
		if len(validation.IsDNS1123Subdomain(strings.TrimPrefix(s.name, "*."))) > 0 {
			s.name = ""
			err = fmt.Errorf("%q is not a DNS name; the Service's name (<service>.<namespace>.svc) applies", v)
		}
	case "proxy-ssl-server-name":
		s.sni, err = onOff(v)
	}
	return err
}

// backendTLS gives the rules of an Ingress whose endpoints speak TLS the
// settings its proxy-ssl-* annotations ask for, with the certificates of
// proxy-ssl-secret; and says what is wrong with them.
func backendTLS(ing *networkingv1.Ingress, a *annotated, secrets map[types.NamespacedName]*corev1.Secret) []problem {
	s := &a.proxySSL
	if !s.set {
		return nil
	}
	who := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
	if !a.protocol.TLS() {
		return []problem{{Ingress: who, Reason: ReasonInvalidAnnotation,
			Note: fmt.Sprintf("the proxy-ssl-* annotations apply to backend-protocol HTTPS or GRPCS only, and this Ingress's backends speak %v; they have no effect", a.protocol)}}
	}
	b := &exchange.BackendTLS{Verify: s.verify, Name: s.name, SNI: s.sni}
	key := fmt.Sprintf("verify=%t name=%q sni=%t", s.verify, s.name, s.sni)
	var probs []problem
	if s.secret != "" {
		ns, name, cut := strings.Cut(s.secret, "/")
		if !cut {
			ns, name = ing.Namespace, ns
		}
		roots, cert, version, err := proxySSLSecret(ns, ing.Namespace, secrets[types.NamespacedName{Namespace: ns, Name: name}])
		if err != nil {
			probs = append(probs, problem{Ingress: who, Reason: ReasonInvalidAnnotation,
				Note: fmt.Sprintf("annotation proxy-ssl-secret: Secret %s/%s: %v", ns, name, err)})
			if s.verify {
				roots = x509.NewCertPool() // trusts nothing: verification fails closed (502)
				probs[0].Note += "; no endpoint is trusted until it is fixed"
			}
		}
		b.Roots, b.Cert = roots, cert
		key += fmt.Sprintf(" secret=%s/%s@%s", ns, name, version)
	}
	sum := sha256.Sum256([]byte(key))
	b.Key = hex.EncodeToString(sum[:12])
	a.rulesOf().BackendTLS = b
	return probs
}

// proxySSLSecret reads a proxy-ssl-secret: ca.crt, the authorities that
// endpoints' certificates must chain to, and tls.crt with tls.key, the
// certificate presented to endpoints that ask for one. It must be in the
// Ingress's own namespace: a Secret of another namespace would let an
// Ingress's author present someone else's client certificate.
func proxySSLSecret(ns, own string, s *corev1.Secret) (*x509.CertPool, *tls.Certificate, string, error) {
	switch {
	case ns != own:
		return nil, nil, "", fmt.Errorf("is in another namespace than the Ingress, which Portico does not allow")
	case s == nil:
		return nil, nil, "", fmt.Errorf("not found")
	}
	var roots *x509.CertPool
	if pem := s.Data["ca.crt"]; len(pem) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, "", fmt.Errorf("ca.crt holds no PEM certificate")
		}
	}
	var cert *tls.Certificate
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) > 0 || len(key) > 0 {
		c, err := tls.X509KeyPair(crt, key)
		if err != nil {
			return nil, nil, "", fmt.Errorf("tls.crt and tls.key: %w", err)
		}
		cert = &c
	}
	if roots == nil && cert == nil {
		return nil, nil, "", fmt.Errorf("holds neither ca.crt nor tls.crt and tls.key")
	}
	return roots, cert, string(s.UID) + "/" + s.ResourceVersion, nil
}
