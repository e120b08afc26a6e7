package exchange

import (
	"net/netip"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// Rules are the policies of the requests one Ingress routes, set by its
// annotations (ingress-nginx's and Portico's own). The zero value changes
// nothing: the proxy-wide Settings apply.
type Rules struct {
	// Refuse, when not empty, answers every request 403 and says why: an
	// access restriction Portico cannot enforce, or one whose value is
	// invalid, fails closed rather than serving the route unprotected.
	Refuse string
	// Allow, when not empty, are the only client addresses served
	// (whitelist-source-range); Deny are client addresses refused
	// (denylist-source-range). Others get 403. Deny is checked first.
	Allow, Deny []netip.Prefix
	// Limits replace the proxy-wide ones field by field where not zero
	// (MaxBodySize: negative for no limit).
	Limits Limits
	// Tries and NextUpstream replace the proxy-wide ones where not zero.
	Tries        int
	NextUpstream NextUpstream
	// RedirectCode, when set, answers every request with it and
	// RedirectURL as Location (permanent-redirect, temporal-redirect).
	RedirectCode int
	RedirectURL  string
	// ForceSSLRedirect sends plain HTTP to HTTPS even when the host has
	// no TLS in the routes (TLS ended in front of the proxy).
	ForceSSLRedirect bool
	// AppRoot, when set, redirects requests for "/" there (302).
	AppRoot string
	// CORS, when set, is the route's cross-origin policy.
	CORS *CORS
	// UpstreamHost, when set, is the Host sent upstream (upstream-vhost);
	// X-Forwarded-Host keeps the client's.
	UpstreamHost string
	// ForwardedPrefix, when set, is sent as X-Forwarded-Prefix
	// (x-forwarded-prefix), replacing the client's.
	ForwardedPrefix string
	// RateLimits are the request limits per client address (limit-rps,
	// limit-rpm); LimitExempt the addresses they do not count
	// (limit-whitelist).
	RateLimits  []*RateLimit
	LimitExempt []netip.Prefix
	// BackendTLS, when set, is how the Ingress's endpoints are spoken to
	// over TLS (the proxy-ssl-* annotations).
	BackendTLS *BackendTLS
	// Auth, when set, is the route's Basic authentication (auth-type),
	// checked after the redirects and CORS preflights, as nginx's access
	// phase comes after its rewrites: credentials are never asked for
	// over plain HTTP on a host that redirects to HTTPS.
	Auth *BasicAuth
	// ClientAuth, when set, is the route's client-certificate
	// authentication (auth-tls-*, clientcert.go), checked first.
	ClientAuth *ClientAuth
	// ExternalAuth, when set, asks the route's authentication service
	// about each request, after Auth (auth-url; extauth.go).
	ExternalAuth *ExternalAuth
	// ConnLimit, when set, limits the requests each client address has in
	// flight (limit-connections); LimitExempt are not counted either.
	ConnLimit *ConnLimit
	// Affinity, when set, keeps each client on one endpoint (affinity:
	// cookie); else HashBy, when set, chooses the endpoint by a hash of
	// the request (upstream-hash-by).
	Affinity *Affinity
	HashBy   *HashKey
	// Errors, when set, are the route's error pages (custom-http-errors,
	// default-backend; errorpage.go).
	Errors *ErrorPages
}

// admitConn counts x's request from a in r's ConnLimit, reporting false
// when a has too many in flight.
func (r *Rules) admitConn(a netip.Addr, x *Exchange) bool {
	if r.ConnLimit == nil {
		return true
	}
	a = a.Unmap().WithZone("")
	return in(r.LimitExempt, a) || x.hold(r.ConnLimit, a)
}

// limited reports whether a request from a is over one of r's rate limits.
func (r *Rules) limited(a netip.Addr, now time.Time) bool {
	if len(r.RateLimits) == 0 {
		return false
	}
	a = a.Unmap().WithZone("")
	if in(r.LimitExempt, a) {
		return false
	}
	over := false
	for _, l := range r.RateLimits {
		over = !l.Allow(a, now) || over // every limit counts the request, as nginx's do
	}
	return over
}

// admit reports why the client at a is refused by r, or "" when it is
// served.
func (r *Rules) admit(a netip.Addr) string {
	if r.Refuse != "" {
		return r.Refuse
	}
	// A link-local peer comes with its zone, which no prefix contains.
	a = a.Unmap().WithZone("")
	if !a.IsValid() && len(r.Allow)+len(r.Deny) > 0 {
		return "the client address is unknown"
	}
	if in(r.Deny, a) {
		return "the client address is denied on this route"
	}
	if len(r.Allow) > 0 && !in(r.Allow, a) {
		return "the client address is not allowed on this route"
	}
	return ""
}

// apply lays r's limits over l.
func (r *Rules) apply(l *Limits) {
	over(&l.ConnectTimeout, r.Limits.ConnectTimeout)
	over(&l.SendTimeout, r.Limits.SendTimeout)
	over(&l.ReadTimeout, r.Limits.ReadTimeout)
	over(&l.ClientBodyTimeout, r.Limits.ClientBodyTimeout)
	over(&l.ClientSendTimeout, r.Limits.ClientSendTimeout)
	over(&l.TunnelIdleTimeout, r.Limits.TunnelIdleTimeout)
	over(&l.MaxBodySize, r.Limits.MaxBodySize)
}

// over sets *dst to v unless v is zero.
func over[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// adjustHead applies r's changes to the head sent upstream.
func (r *Rules) adjustHead(out *Head) {
	over(&out.Host, r.UpstreamHost)
	if r.ForwardedPrefix == "" {
		return
	}
	fs := out.Fields[:0]
	for _, f := range out.Fields {
		if !h1.Is(f.Name, "X-Forwarded-Prefix") {
			fs = append(fs, f)
		}
	}
	out.Fields = append(fs, h1.Field{Name: "X-Forwarded-Prefix", Value: r.ForwardedPrefix})
}
