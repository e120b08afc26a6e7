package exchange

import (
	"cmp"
	"fmt"
	"net/url"
	"strings"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// External authentication, ingress-nginx's auth-url (nginx's
// auth_request): before a request of the route goes anywhere, the proxy
// asks an authentication service about it with a subrequest that carries
// the request's head but not its body. A 2xx lets the request through,
// with the fields the service named copied into it; 401 and 403 are the
// client's answer (401 a redirect to the sign-in page when the route has
// one); anything else, or no answer at all, is 500. The request is never
// sent upstream unless the service said 2xx.
//
// The core decides; the front-ends do the I/O. Decide makes a request of
// such a route Authorize, with AuthOut the subrequest's head and the rest
// of the decision (forward, tunnel, or an answer of the proxy's own, as
// 503 for a backend with no endpoint) held back; the front-end sends
// AuthOut to AuthURL and gives the service's answer to Authorized, which
// makes the exchange what it would have been, or the refusal.

// ExternalAuth is a route's external authentication (auth-url and the
// annotations that go with it). It is immutable once made.
type ExternalAuth struct {
	// URL is the authentication service's, absolute http or https, no
	// userinfo (auth-url). Its host is resolved when the request is sent.
	URL *url.URL
	// Method is the subrequest's method; GET when empty (auth-method).
	Method string
	// ResponseHeaders are the fields of the service's 2xx answer copied
	// into the request upstream (auth-response-headers). The client's
	// fields of those names are dropped first, whether the service sent
	// them or not: a client cannot speak for the service.
	ResponseHeaders []string
	// RequestRedirect is sent as X-Auth-Request-Redirect; the request's
	// target when empty (auth-request-redirect).
	RequestRedirect string
	// Signin, when set, is where a client the service answered 401 is
	// redirected (302), with the URL it asked for in SigninParam ("rd")
	// unless Signin's query has that parameter already (auth-signin,
	// auth-signin-redirect-param).
	Signin      *Signin
	SigninParam string
}

// ParseAuthURL reads an auth-url: an absolute http or https URL without
// userinfo or fragment. nginx variables are refused: one that takes the
// service's host from the request ($host) would let a client name the
// service that vouches for it.
func ParseAuthURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil, !printableASCII(s):
		return nil, fmt.Errorf("%q is not a URL", s)
	case strings.Contains(s, "$"):
		return nil, fmt.Errorf("%q holds an nginx variable; Portico takes a fixed URL, such as the service's in the cluster (http://oauth2-proxy.auth.svc.cluster.local/oauth2/auth)", s)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.Opaque != "":
		return nil, fmt.Errorf("%q is not an absolute http or https URL", s)
	case u.User != nil:
		return nil, fmt.Errorf("%q holds credentials (userinfo), which are not sent", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Errorf("%q has a fragment", s)
	}
	return u, nil
}

// Signin is an auth-signin URL. It may use a few of nginx's variables, as
// ingress-nginx's users write them: $scheme, $host, $http_host,
// $best_http_host, $pass_access_scheme, $request_uri and
// $escaped_request_uri, each replaced by what the request says.
type Signin struct {
	parts []signinPart
	// hasParam: the query names the redirect parameter already.
	hasParam bool
}

type signinPart struct {
	lit string
	v   signinVar
}

type signinVar uint8

const (
	litPart signinVar = iota
	varScheme
	varHost
	varHTTPHost
	varRequestURI
	varEscapedRequestURI
)

var signinVars = map[string]signinVar{
	"scheme": varScheme, "pass_access_scheme": varScheme,
	"host": varHost, "http_host": varHTTPHost, "best_http_host": varHTTPHost,
	"request_uri": varRequestURI, "escaped_request_uri": varEscapedRequestURI,
}

// ParseSignin reads an auth-signin URL; param is the redirect parameter
// (auth-signin-redirect-param, "rd" when empty).
func ParseSignin(s, param string) (*Signin, error) {
	if param == "" {
		param = "rd"
	}
	if !printableASCII(s) {
		return nil, fmt.Errorf("%q is not a URL", s)
	}
	var sg Signin
	var plain strings.Builder // s with each variable as "x", to check it is a URL
	for rest := s; rest != ""; {
		i := strings.IndexByte(rest, '$')
		if i < 0 {
			sg.parts = append(sg.parts, signinPart{lit: rest})
			plain.WriteString(rest)
			break
		}
		if i > 0 {
			sg.parts = append(sg.parts, signinPart{lit: rest[:i]})
			plain.WriteString(rest[:i])
		}
		rest = rest[i+1:]
		n := 0
		for n < len(rest) && (rest[n] == '_' || 'a' <= rest[n] && rest[n] <= 'z' || 'A' <= rest[n] && rest[n] <= 'Z' || '0' <= rest[n] && rest[n] <= '9') {
			n++
		}
		v, ok := signinVars[rest[:n]]
		if !ok {
			return nil, fmt.Errorf("%q uses $%s, which Portico does not fill in: it knows $scheme, $host, $http_host, $best_http_host, $pass_access_scheme, $request_uri and $escaped_request_uri", s, rest[:n])
		}
		sg.parts = append(sg.parts, signinPart{v: v})
		plain.WriteString("x")
		rest = rest[n:]
	}
	u, err := url.Parse(plain.String())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "x") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not an absolute http or https URL", s)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%q has a query that cannot be read", s)
	}
	sg.hasParam = q.Has(param)
	return &sg, nil
}

// ValidParam reports whether name can be a query parameter's name as it
// is: letters, digits, '-', '_' and '.'.
func ValidParam(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return name != ""
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return s != ""
}

// authStep is what an Exchange keeps of its request's external
// authentication while the front-end asks the service.
type authStep struct {
	ext *ExternalAuth
	// then is the decision held back until the service says 2xx;
	// closeAnswered is Close should it be an answer.
	then          Outcome
	closeAnswered bool
	// The plan is held too: a front-end that took Authorize for Forward
	// would find no endpoint to send the request to.
	upstream *Upstream
	attempt  attempt
	// What the sign-in redirect is made of: views of the request.
	scheme, host, target string
	fields               []h1.Field // AuthOut's
}

// AuthURL is where AuthOut goes, when Outcome is Authorize.
func (x *Exchange) AuthURL() *url.URL { return x.auth.ext.URL }

// authorize holds x's decision back, when the route asks its
// authentication service first, and writes the subrequest into AuthOut.
func (p *Policy) authorize(req *Request, x *Exchange) {
	a := &x.auth
	a.then = x.Outcome
	a.closeAnswered = req.BodyLength != 0 && (req.BodyLength < 0 || req.BodyLength > MaxDiscard || req.Continue)
	a.scheme, a.host, a.target = x.scheme(req), req.Host, req.Target
	if x.Outcome == Answer {
		// The subrequest carries the fields an endpoint would see.
		p.forwardHead(req, x)
	}
	ext := a.ext
	out := &x.AuthOut
	*out = Head{Method: ext.Method, Target: ext.URL.RequestURI(), Host: ext.URL.Host, Fields: a.fields[:0]}
	if out.Method == "" {
		out.Method = "GET"
	}
	for _, f := range x.Out.Fields {
		switch {
		case len(f.Name) == 2 && h1.Is(f.Name, "Te"), h1.Is(f.Name, "Connection"), h1.Is(f.Name, "Upgrade"):
			continue // the upstream request's, not the subrequest's
		case authSets(f.Name):
			continue // the proxy's word, not the client's
		}
		out.Fields = append(out.Fields, f)
	}
	add := func(name, value string) { out.Fields = append(out.Fields, h1.Field{Name: name, Value: value}) }
	start := len(x.scratch)
	x.scratch = append(x.scratch, a.scheme...)
	x.scratch = append(x.scratch, "://"...)
	x.scratch = append(x.scratch, req.Host...)
	x.scratch = append(x.scratch, req.Target...)
	add("X-Original-URL", view(x.scratch[start:]))
	add("X-Original-URI", req.Target)
	add("X-Original-Method", req.Method)
	add("X-Scheme", a.scheme)
	add("X-Sent-From", "nginx-ingress-controller")
	add("X-Auth-Request-Redirect", cmp.Or(ext.RequestRedirect, req.Target))
	a.fields = out.Fields
	x.Outcome = Authorize
	a.upstream, a.attempt = x.Upstream, x.attempt
	x.Upstream, x.attempt = nil, attempt{}
}

// authSets reports the fields the subrequest carries of the proxy's own.
func authSets(name string) bool {
	for _, n := range [...]string{"X-Original-URL", "X-Original-URI", "X-Original-Method", "X-Scheme", "X-Sent-From", "X-Auth-Request-Redirect"} {
		if h1.Is(name, n) {
			return true
		}
	}
	return false
}

// Authorized gives x the authentication service's answer to AuthOut: its
// status and fields, or status 0 when none came (it could not be reached,
// did not answer within the request's connect and read timeouts, or its
// answer could not be read). x becomes the decision held back, or the
// refusal.
func (x *Exchange) Authorized(status int, fields []h1.Field) {
	if x.Outcome != Authorize {
		return
	}
	a := &x.auth
	switch {
	case 200 <= status && status < 300:
		x.Outcome = a.then
		x.Upstream, x.attempt = a.upstream, a.attempt
		if x.Outcome == Answer {
			x.Close = a.closeAnswered
			return
		}
		x.copyAuthFields(fields)
		return
	case status == 401 && a.ext.Signin != nil:
		x.answer(302, "", h1.Field{Name: "Location", Value: x.signinURL()})
	case status == 401:
		var challenges []h1.Field
		for _, f := range fields {
			if h1.Is(f.Name, "WWW-Authenticate") {
				challenges = append(challenges, f)
			}
		}
		x.answer(401, "the authentication service asks for credentials", challenges...)
	case status == 403:
		x.answer(403, "the authentication service refused the request")
	case status == 0:
		x.answer(500, "the authentication service did not answer")
	default:
		x.answer(500, fmt.Sprintf("the authentication service answered %d, neither 2xx, 401 nor 403", status))
	}
	x.Close = a.closeAnswered
}

// copyAuthFields replaces the fields of the upstream request that the
// route copies from the service's answer by the answer's.
func (x *Exchange) copyAuthFields(fields []h1.Field) {
	names := x.auth.ext.ResponseHeaders
	if len(names) == 0 {
		return
	}
	listed := func(name string) bool {
		for _, n := range names {
			if h1.Is(name, n) {
				return true
			}
		}
		return false
	}
	kept := x.Out.Fields[:0]
	for _, f := range x.Out.Fields {
		if !listed(f.Name) {
			kept = append(kept, f)
		}
	}
	for _, n := range names {
		for _, f := range fields {
			if h1.Is(f.Name, n) && h1.ValidValue(f.Value) {
				kept = append(kept, f)
			}
		}
	}
	x.Out.Fields = kept
}

// signinURL is the sign-in page's URL for x's request.
func (x *Exchange) signinURL() string {
	a := &x.auth
	sg := a.ext.Signin
	start := len(x.scratch)
	for _, p := range sg.parts {
		x.scratch = a.appendVar(x.scratch, p)
	}
	if !sg.hasParam {
		if strings.IndexByte(view(x.scratch[start:]), '?') >= 0 {
			x.scratch = append(x.scratch, '&')
		} else {
			x.scratch = append(x.scratch, '?')
		}
		x.scratch = append(x.scratch, cmp.Or(a.ext.SigninParam, "rd")...)
		x.scratch = append(x.scratch, '=')
		x.scratch = append(x.scratch, a.scheme...)
		x.scratch = append(x.scratch, "://"...)
		x.scratch = append(x.scratch, a.host...)
		x.scratch = appendEscaped(x.scratch, a.target)
	}
	return view(x.scratch[start:])
}

func (a *authStep) appendVar(b []byte, p signinPart) []byte {
	switch p.v {
	case varScheme:
		return append(b, a.scheme...)
	case varHost:
		return append(b, strings.ToLower(hostOnly(a.host))...)
	case varHTTPHost:
		return append(b, a.host...)
	case varRequestURI:
		return append(b, a.target...)
	case varEscapedRequestURI:
		return appendEscaped(b, a.target)
	}
	return append(b, p.lit...)
}

// appendEscaped appends s with every byte but the unreserved ones
// percent-encoded, as ingress-nginx's $escaped_request_uri.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return b
}
