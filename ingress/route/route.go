// Package route is the ingress routing table: it turns the Ingresses the
// controller serves into an immutable Table that answers, for every request,
// which backend gets it, and, for every TLS handshake, which Secret holds the
// certificate.
//
// The package is plain data and the standard library only. The controller
// converts networking.k8s.io/v1 Ingress objects into the input types below,
// calls Build on every change and swaps the result in with
// atomic.Pointer[Table]; the HTTP handler calls Match on every request. A
// Table is never modified after Build, so any number of goroutines may use it.
//
// # Matching
//
// Matching follows the Ingress v1 API and the Kubernetes ingress conformance
// suite (kubernetes-sigs/ingress-controller-conformance, features path_rules,
// host_rules and default_backend):
//
//   - Hosts compare case-insensitively; a port and one trailing dot in the
//     request's Host are ignored, as are the brackets of an IPv6 literal.
//     "*.foo.com" matches "bar.foo.com" only: exactly one extra, non-empty
//     label. A Host longer than 253 bytes is not a DNS name and matches only
//     rules without a host.
//   - Paths compare case-sensitively and as given; Build never cleans them and
//     Match never decodes or cleans the request path (see Match).
//   - Exact matches the whole path only: "/foo" does not match "/foo/".
//   - Prefix matches whole path elements: "/foo" matches "/foo", "/foo/" and
//     "/foo/bar" but not "/foobar"; trailing slashes of the rule are ignored
//     ("/foo/" is "/foo"); "/" matches every path. ImplementationSpecific is
//     Prefix, and an empty ImplementationSpecific path is "/".
//   - Among the paths of one host, Exact beats Prefix and the longest Prefix
//     wins, as the Ingress API documents ("longest matching path first, then
//     Exact over Prefix": an Exact match is never shorter than a Prefix one).
//
// A request is tried against the candidates below in order; the first that
// has a matching path wins:
//
//  1. the rules whose host equals the request's host,
//  2. the rules whose wildcard host covers it,
//  3. the rules without a host,
//  4. the defaultBackend,
//  5. nothing: Match reports false and the server answers 404.
//
// The Ingress API defines a rule without a host as applying to all traffic
// and defaultBackend as "the backend that should handle requests that don't
// match any rule"; the default_backend feature says "If none of the hosts or
// paths match the HTTP request ... the traffic is routed to your default
// backend". A request whose host has rules but whose path matches none of them
// matches no rule of that host, so it goes on down the list. Every scenario of
// the suite behaves the same either way; the fall-through is what the API text
// says. ingress-nginx differs here: a host that has rules never falls through
// to host-less rules or to another host's wildcard, and its unmatched paths go
// to the defaultBackend of the Ingress that first defined the host, or to the
// controller's 404 backend.
//
// # Merging and conflicts
//
// Ingresses are taken oldest first (Created, then namespace, then name).
// Rules for the same host from several Ingresses merge. When two of them claim
// the same host, path and path type (ImplementationSpecific counts as Prefix)
// for different backends, or both set a defaultBackend, or list the same TLS
// host with different Secrets, the older one keeps it and the newer one is
// reported as a Rejection of kind Conflict so the controller can post a
// Warning Event on it. Claims for the same backend are not conflicts.
//
// Input the Kubernetes API would refuse (a path not starting with "/", an IP
// address as host, a backend without service or port, ...) never panics and
// is never dropped silently: Build leaves it out and reports a Rejection of
// kind Invalid.
package route

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PathType says how a rule's path is compared with the request's path.
type PathType int

const (
	// ImplementationSpecific is matched as Prefix. It is the zero value.
	ImplementationSpecific PathType = iota
	// Exact matches the whole request path, case-sensitively.
	Exact
	// Prefix matches the request path element by element.
	Prefix
)

func (t PathType) String() string {
	switch t {
	case ImplementationSpecific:
		return "ImplementationSpecific"
	case Exact:
		return "Exact"
	case Prefix:
		return "Prefix"
	}
	return "PathType(" + strconv.Itoa(int(t)) + ")"
}

// Port names a Service port by number or by name; exactly one is set.
type Port struct {
	Number int32
	Name   string
}

func (p Port) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Number))
}

// Backend is where matching requests go: a Service port, or a resource
// backend, which Portico does not support; Match still returns it so that the
// server can answer 503 and say why.
type Backend struct {
	// Namespace of the Service. Build sets it to the Ingress's namespace,
	// since an Ingress can only name Services of its own namespace.
	Namespace string
	Service   string
	Port      Port
	// Resource, when not empty, describes a resource backend
	// ("apiGroup/Kind/name"); Service and Port are then empty.
	Resource string
	// Ingress is "namespace/name" of the Ingress that defined this backend;
	// Build sets it.
	Ingress string
	// NoSSLRedirect is copied by Build from the Ingress that defined this
	// backend: the server must not redirect plain HTTP requests routed here
	// to HTTPS, even when their host has TLS. It is not part of the target
	// (two Ingresses routing to one Service with different settings do not
	// conflict).
	NoSSLRedirect bool
	// Rewrite, when set, is the path the request is sent upstream with
	// instead of its own (rewrite-target): Pattern is matched against the
	// request's path, and $1 to $9 in Rewrite stand for its groups. Both
	// are copied from the Ingress onto its paths' backends.
	Rewrite string
	Pattern *regexp.Regexp
	// ServiceUpstream is copied by Build from the Ingress: requests go to
	// the Service's cluster IP, not to its endpoints (service-upstream).
	ServiceUpstream bool
	// Protocol is copied by Build from the Ingress: how its endpoints are
	// spoken to (backend-protocol).
	Protocol Protocol
	// RulePath is the path of the rule that defined this backend, as
	// written; "" for a defaultBackend. Build sets it.
	RulePath string
	// policy is the Policy of the Ingress that defined this backend.
	policy string
	// Canary, when set, is the canary of this route: another Ingress's
	// backend for the same host and path, and when to choose it.
	Canary *Canary
}

// Canary says when a request goes to a route's canary backend instead of
// its own, as ingress-nginx's canary annotations do, in this order: the
// Header (Portico reads "always" and "never", or HeaderValue when set),
// then the Cookie ("always", "never"), then Weight out of WeightTotal.
type Canary struct {
	Header, HeaderValue string
	Cookie              string
	Weight, WeightTotal int
	// Backend is the canary Ingress's backend, set by Build.
	Backend Backend
}

// sameTarget reports whether b and o send traffic to the same place,
// whichever Ingress defined them.
func (b Backend) sameTarget(o Backend) bool {
	return b.Namespace == o.Namespace && b.Service == o.Service && b.Port == o.Port && b.Resource == o.Resource
}

func (b Backend) String() string {
	if b.Resource != "" {
		return "resource " + b.Resource
	}
	return "service " + b.Service + ":" + b.Port.String()
}

// Path is one path of a rule.
type Path struct {
	Path    string
	Type    PathType
	Backend Backend
}

// Rule routes the requests for Host by their path. An empty Host matches
// every host; "*.example.com" matches one label in front of example.com.
type Rule struct {
	Host  string
	Paths []Path
}

// TLS says which Secret holds the certificate for Hosts. An empty Hosts list
// stands for the hosts of the Ingress's rules. An empty SecretName means the
// hosts use TLS with the server's default certificate.
type TLS struct {
	Hosts      []string
	SecretName string
}

// Ingress is the part of a networking.k8s.io/v1 Ingress that routing needs.
type Ingress struct {
	Namespace, Name string
	// Created is the creation timestamp; the older Ingress wins conflicts.
	Created        time.Time
	DefaultBackend *Backend
	Rules          []Rule
	TLS            []TLS
	// NoSSLRedirect turns off the HTTP → HTTPS redirect for the requests
	// this Ingress's backends receive (annotation portico.dev/ssl-redirect:
	// "false").
	NoSSLRedirect bool
	// Regex makes the paths of every host this Ingress has rules for
	// regular expressions, whichever Ingress defines them, as ingress-nginx
	// does for use-regex (and rewrite-target): each non-Exact path P
	// matches the paths that (?i)^P matches, longest P first, and Exact
	// paths still match exactly.
	Regex bool
	// RewriteTarget is the rewrite-target of the Ingress's paths; see
	// Backend.Rewrite. It implies Regex.
	RewriteTarget string
	// ServiceUpstream sends the requests of this Ingress's backends to
	// their Services' cluster IPs (service-upstream).
	ServiceUpstream bool
	// Protocol is how the endpoints of this Ingress's backends are spoken
	// to (backend-protocol).
	Protocol Protocol
	// Passthrough: the TLS connections for the Ingress's rule hosts go to
	// their first path's backend unterminated (ssl-passthrough).
	Passthrough bool
	// Canary makes this Ingress a canary: its paths are not routes of
	// their own but the canaries of the same host and path of another
	// Ingress; a path no other Ingress routes is rejected.
	Canary *Canary
	// FromToWWW: requests for the other host of each rule host ("www."
	// added or taken off) are redirected to it (from-to-www-redirect),
	// unless some Ingress has rules for that host (see Table.WWWRedirect).
	FromToWWW bool
	// Policy stands for everything else the Ingress sets on how its routes
	// are served (access, limits, redirects: its annotations), compared
	// only for equality. Two Ingresses that claim the same route for the
	// same backend with different Policies conflict, so that the newer
	// one's restrictions are never dropped without a word.
	Policy string
}

func (i *Ingress) key() string { return i.Namespace + "/" + i.Name }

// SecretRef names a kubernetes.io/tls Secret. An empty Name means "use the
// default certificate".
type SecretRef struct {
	Namespace, Name string
}

// Kind says why Build left a piece of input out of the Table.
type Kind int

const (
	// Invalid input: the Kubernetes API would have refused it, or it routes
	// nothing.
	Invalid Kind = iota + 1
	// Conflict: an older Ingress already claimed the same thing.
	Conflict
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "Invalid"
	case Conflict:
		return "Conflict"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// A Rejection is a piece of input that Build left out of the Table. The
// controller turns each into a Warning Event on Ingress.
type Rejection struct {
	Kind Kind
	// Ingress is "namespace/name" of the Ingress whose input was left out:
	// the loser of a conflict.
	Ingress string
	// Winner is "namespace/name" of the Ingress that kept the claim; set for
	// conflicts only. It equals Ingress when one Ingress contradicts itself.
	Winner string
	// Host and Path locate the input; both empty for a defaultBackend.
	Host, Path string
	// Reason says what was wrong and what to do, for people.
	Reason string
}

func (r Rejection) String() string {
	return fmt.Sprintf("%s %s: %s", r.Kind, r.Ingress, r.Reason)
}

// Protocol is how a backend's endpoints are spoken to, as ingress-nginx's
// backend-protocol names it. The zero value is HTTP/1.1 in the clear.
type Protocol uint8

const (
	HTTP  Protocol = iota
	HTTPS          // HTTP/1.1 over TLS
	GRPC           // gRPC: HTTP/2 in the clear (prior knowledge)
	GRPCS          // gRPC over TLS (HTTP/2 by ALPN)
	H2C            // HTTP/2 in the clear (prior knowledge)
)

var protocolNames = [...]string{HTTP: "HTTP", HTTPS: "HTTPS", GRPC: "GRPC", GRPCS: "GRPCS", H2C: "H2C"}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol reads a backend-protocol value, in any case.
func ParseProtocol(s string) (Protocol, bool) {
	for i, n := range protocolNames {
		if strings.EqualFold(s, n) {
			return Protocol(i), true
		}
	}
	return HTTP, false
}

// TLS reports whether the endpoints are spoken to over TLS.
func (p Protocol) TLS() bool { return p == HTTPS || p == GRPCS }

// GRPC reports whether the endpoints speak gRPC.
func (p Protocol) GRPC() bool { return p == GRPC || p == GRPCS }

// HTTP2 reports whether the endpoints are spoken to in HTTP/2.
func (p Protocol) HTTP2() bool { return p == GRPC || p == GRPCS || p == H2C }
