package exchange

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// Client-certificate authentication, ingress-nginx's auth-tls-*
// annotations. The TLS front-end asks the client for a certificate on the
// hosts whose routes need one (Config.ClientCAs) and hands the core what
// it received (Request.Peer), unverified; the core verifies it against
// the route's ClientAuth, once per connection and ClientAuth, and decides
// as nginx's ssl_verify_client does:
//
//   - verify "on": no certificate → 400 "No required SSL certificate was
//     sent"; one that does not verify → 400 "The SSL certificate error"
//     (or a 302 to the error page);
//   - "optional": no certificate passes, one that does not verify → 400;
//   - "optional_no_ca": a certificate whose authority is unknown passes
//     too, its failure said to the endpoint in ssl-client-verify;
//   - "off": nothing is asked for, ssl-client-verify says NONE.
//
// Then the match-cn expression is matched against the subject's DN (403
// "client certificate unauthorized" when it does not match), and the
// endpoint is told the result in ssl-client-verify, ssl-client-subject-dn,
// ssl-client-issuer-dn and, when asked, ssl-client-cert (the URL-encoded
// PEM). Those fields, when a client sends them, are always dropped.

// VerifyClient is how a route verifies client certificates
// (auth-tls-verify-client).
type VerifyClient uint8

const (
	VerifyOn VerifyClient = iota
	VerifyOptional
	VerifyOptionalNoCA
	VerifyOff
)

// ClientAuth is a route's client-certificate authentication. It is
// immutable once in a Config.
type ClientAuth struct {
	Verify VerifyClient
	// Roots are the authorities a client's certificate must chain to
	// (ca.crt). Nil trusts nothing.
	Roots *x509.CertPool
	// CRLs, when not empty, are the revocation lists of ca.crl. Every
	// certificate of a chain but its authority must then be covered by a
	// current one that its issuer signed, as OpenSSL checks with ssl_crl.
	CRLs []*x509.RevocationList
	// Depth is the most intermediate certificates between the client's
	// and its authority (auth-tls-verify-depth, as OpenSSL counts it).
	Depth int
	// ErrorPage, when set, is where a client whose certificate is
	// missing or invalid is redirected (302) instead of answered 400.
	ErrorPage string
	// PassCert sends the client's certificate upstream in ssl-client-cert.
	PassCert bool
	// MatchCN, when set, must match the subject's DN (auth-tls-match-cn,
	// matched as nginx's ~ against $ssl_client_s_dn).
	MatchCN *regexp.Regexp
}

// Peer is what a TLS front-end received of a client's certificates, for
// all of a connection's requests (an HTTP/2 connection's streams at once).
type Peer struct {
	// Certs are the certificates the client sent, its own first, as
	// received: not verified.
	Certs []*x509.Certificate
	last  atomic.Pointer[peerCheck]
}

// peerCheck is the verification of a Peer's certificates against one
// ClientAuth; immutable.
type peerCheck struct {
	auth *ClientAuth
	// verify is ssl-client-verify: SUCCESS, FAILED:reason or NONE.
	verify string
	// untrusted: the failure is an unknown authority, which
	// optional_no_ca lets pass.
	untrusted bool
	// subject and issuer are the DNs of the client's certificate, cert
	// its URL-encoded PEM when the ClientAuth passes it on.
	subject, issuer, cert string
}

var noCert = &peerCheck{verify: "NONE"}

// check returns the verification of p against a, from the cache when the
// connection's last request was checked against a too.
func (p *Peer) check(a *ClientAuth, now time.Time) *peerCheck {
	if p == nil || len(p.Certs) == 0 {
		return noCert
	}
	if c := p.last.Load(); c != nil && c.auth == a {
		return c
	}
	c := a.verify(p.Certs, now)
	p.last.Store(c)
	return c
}

// verify checks certs, the client's first, against a.
func (a *ClientAuth) verify(certs []*x509.Certificate, now time.Time) *peerCheck {
	leaf := certs[0]
	c := &peerCheck{auth: a, subject: distinguishedName(leaf.RawSubject), issuer: distinguishedName(leaf.RawIssuer)}
	if a.PassCert {
		c.cert = escapeComponent(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
	}
	if a.Roots == nil { // never the system's roots
		c.verify, c.untrusted = "FAILED:unable to get local issuer certificate", true
		return c
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: a.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		reason, untrusted := failure(err, certs, now)
		c.verify, c.untrusted = "FAILED:"+reason, untrusted
		return c
	}
	reason := "certificate chain too long"
	for _, ch := range chains {
		if len(ch) > a.Depth+2 { // the client's, Depth intermediates, the authority
			continue
		}
		if r := a.revoked(ch, now); r != "" {
			reason = r
			continue
		}
		c.verify = "SUCCESS"
		return c
	}
	c.verify = "FAILED:" + reason
	return c
}

// failure says why Verify failed in OpenSSL's words (the reasons nginx's
// $ssl_client_verify gives), and whether the authority is unknown.
func failure(err error, certs []*x509.Certificate, now time.Time) (string, bool) {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		last := certs[len(certs)-1]
		switch {
		case !bytes.Equal(last.RawIssuer, last.RawSubject):
			return "unable to get local issuer certificate", true
		case len(certs) == 1:
			return "self-signed certificate", true
		}
		return "self-signed certificate in certificate chain", true
	case errors.As(err, &invalid):
		switch invalid.Reason {
		case x509.Expired:
			if invalid.Cert != nil && now.Before(invalid.Cert.NotBefore) {
				return "certificate is not yet valid", false
			}
			return "certificate has expired", false
		case x509.IncompatibleUsage:
			return "unsupported certificate purpose", false
		case x509.TooManyIntermediates:
			return "certificate chain too long", false
		case x509.NotAuthorizedToSign:
			return "invalid CA certificate", false
		}
	}
	return "certificate verify failed", false
}

// revoked says why chain fails the revocation lists, or "" when it does
// not: each certificate but the authority needs a list from its issuer
// that is current and does not name it.
func (a *ClientAuth) revoked(chain []*x509.Certificate, now time.Time) string {
	if len(a.CRLs) == 0 {
		return ""
	}
	for i, c := range chain[:len(chain)-1] {
		issuer := chain[i+1]
		found := false
		for _, l := range a.CRLs {
			if !bytes.Equal(l.RawIssuer, c.RawIssuer) || l.CheckSignatureFrom(issuer) != nil {
				continue
			}
			found = true
			if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
				return "CRL has expired"
			}
			for _, e := range l.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
					return "certificate revoked"
				}
			}
		}
		if !found {
			return "unable to get certificate CRL"
		}
	}
	return ""
}

// distinguishedName writes a DER name as RFC 2253 does, as nginx's
// $ssl_client_s_dn: most specific first ("CN=client,O=Example"). Bytes
// that could not go in a header field are escaped as \XX.
func distinguishedName(der []byte) string {
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdn); err != nil || len(rest) > 0 {
		return ""
	}
	s := rdn.String()
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] >= 0x7f {
			var b strings.Builder
			for j := 0; j < len(s); j++ {
				if c := s[j]; c < ' ' || c >= 0x7f {
					b.WriteByte('\\')
					b.WriteByte(upperHex[c>>4])
					b.WriteByte(upperHex[c&15])
				} else {
					b.WriteByte(c)
				}
			}
			return b.String()
		}
	}
	return s
}

const upperHex = "0123456789ABCDEF"

// escapeComponent escapes b as nginx's URI-component escaping does
// ($ssl_client_escaped_cert): everything but letters, digits and "-._~".
func escapeComponent(b []byte) string {
	var out strings.Builder
	out.Grow(len(b) * 5 / 4)
	for _, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			out.WriteByte(c)
			continue
		}
		out.WriteByte('%')
		out.WriteByte(upperHex[c>>4])
		out.WriteByte(upperHex[c&15])
	}
	return out.String()
}

// clientCert decides whether req passes a; when not, x is the answer and
// it returns false. A request that passes has its verification noted for
// the fields sent upstream.
func (x *Exchange) clientCert(cfg *Config, a *ClientAuth, req *Request) bool {
	if a.Verify == VerifyOff {
		x.peer = noCert
		return true
	}
	if req.TLS && cfg.ClientCAs(req.ServerName) == nil {
		// The handshake, for another server name, asked for no
		// certificate (HTTP/2 connection reuse, or a client naming one
		// host in SNI and another in Host), as nginx answers then.
		x.answer(421, "this host asks for a client certificate: connect with its name as the TLS server name")
		return false
	}
	var c *peerCheck
	if req.TLS {
		c = req.Peer.check(a, x.Record.Start)
	} else {
		c = noCert // plain HTTP carries no certificate: never served as if it did
	}
	switch {
	case c == noCert && a.Verify == VerifyOn:
		x.certError("No required SSL certificate was sent", a)
		return false
	case c != noCert && c.verify != "SUCCESS" && !(c.untrusted && a.Verify == VerifyOptionalNoCA):
		x.certError("The SSL certificate error", a)
		return false
	case a.MatchCN != nil && !a.MatchCN.MatchString(c.subject):
		x.answer(403, "client certificate unauthorized")
		return false
	}
	x.peer = c
	return true
}

// certError answers a request whose certificate is missing or invalid:
// 400, as nginx (its 495 and 496), or a redirect to the error page.
func (x *Exchange) certError(why string, a *ClientAuth) {
	if a.ErrorPage != "" {
		x.answer(302, "", h1.Field{Name: "Location", Value: a.ErrorPage})
		return
	}
	x.answer(400, why)
}

// clientCertField reports the fields in which the proxy tells an endpoint
// about the client's certificate; a client's own are dropped.
func clientCertField(name string) bool {
	if len(name) < 15 || !h1.Is(name[:11], "ssl-client-") {
		return false
	}
	switch rest := name[11:]; len(rest) {
	case 4:
		return h1.Is(rest, "cert")
	case 6:
		return h1.Is(rest, "verify")
	case 9:
		return h1.Is(rest, "issuer-dn")
	case 10:
		return h1.Is(rest, "subject-dn")
	}
	return false
}

// addClientCertFields tells the endpoint what became of the client's
// certificate, as ingress-nginx does; empty values are left out, as
// nginx's proxy_set_header leaves them.
func (x *Exchange) addClientCertFields() {
	c := x.peer
	if c == nil {
		return
	}
	out := &x.Out
	out.Fields = append(out.Fields, h1.Field{Name: "ssl-client-verify", Value: c.verify})
	for _, f := range [...]h1.Field{{Name: "ssl-client-subject-dn", Value: c.subject}, {Name: "ssl-client-issuer-dn", Value: c.issuer}, {Name: "ssl-client-cert", Value: c.cert}} {
		if f.Value != "" {
			out.Fields = append(out.Fields, f)
		}
	}
}

// ClientCAs returns the authorities a TLS handshake for serverName names
// when it asks the client for a certificate, or nil when it asks for none:
// the host has no route with client-certificate authentication.
func (c *Config) ClientCAs(serverName string) *x509.CertPool {
	if len(c.ClientCertHosts) == 0 {
		return nil
	}
	h := strings.TrimSuffix(strings.ToLower(serverName), ".")
	if h != "" {
		if p := c.ClientCertHosts[h]; p != nil {
			return p
		}
		if dot := strings.IndexByte(h, '.'); dot > 0 {
			if p := c.ClientCertHosts["*"+h[dot:]]; p != nil {
				return p
			}
		}
	}
	return c.ClientCertHosts[""]
}
