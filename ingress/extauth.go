package ingress

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// External authentication, ingress-nginx's way: auth-url names an
// authentication service (oauth2-proxy, Authelia, ...) that the proxy asks
// about every request of the Ingress before it goes anywhere; auth-method,
// auth-response-headers, auth-request-redirect, auth-signin and
// auth-signin-redirect-param say how. The decision is the proxy core's
// (exchange.ExternalAuth). It fails closed: any of these annotations that
// is invalid, or set without auth-url, refuses every request (403) rather
// than serving the routes with less checking than asked for.

// extAuthSpec is what the external authentication annotations ask for.
type extAuthSpec struct {
	url             *url.URL
	method          string
	responseHeaders []string
	requestRedirect string
	signin          string
	signinParam     string
}

// extAuthAnnotations are the annotations that go with auth-url.
var extAuthAnnotations = []string{"auth-method", "auth-response-headers", "auth-request-redirect", "auth-signin", "auth-signin-redirect-param"}

func authURL(a *annotated, _, v string) error {
	u, err := exchange.ParseAuthURL(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	a.ext.url = u
	return nil
}

func authMethod(a *annotated, _, v string) error {
	v = strings.TrimSpace(v)
	if !h1.ValidToken(v) || v == "CONNECT" || v == "TRACE" {
		return fmt.Errorf("%q is not a method to ask the authentication service with", v)
	}
	a.ext.method = v
	return nil
}

func authResponseHeaders(a *annotated, _, v string) error {
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !h1.ValidToken(n) {
			return fmt.Errorf("%q is not a header name: want a comma-separated list", n)
		}
		switch strings.ToLower(n) {
		case "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive", "expect":
			return fmt.Errorf("%q frames the request or its connection: it cannot be copied from the authentication service", n)
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return fmt.Errorf("%q names no header", v)
	}
	a.ext.responseHeaders = names
	return nil
}

func authRequestRedirect(a *annotated, _, v string) error {
	v = strings.TrimSpace(v)
	if !printable(v) || strings.Contains(v, "$") {
		return fmt.Errorf("%q is not a URL to send as X-Auth-Request-Redirect: want visible characters and no nginx variable", v)
	}
	a.ext.requestRedirect = v
	return nil
}

func authSignin(a *annotated, _, v string) error {
	v = strings.TrimSpace(v)
	if _, err := exchange.ParseSignin(v, ""); err != nil {
		return err
	}
	a.ext.signin = v
	return nil
}

func authSigninRedirectParam(a *annotated, _, v string) error {
	v = strings.TrimSpace(v)
	if !exchange.ValidParam(v) {
		return fmt.Errorf("%q is not a query parameter name: want letters, digits, '-', '_' or '.'", v)
	}
	a.ext.signinParam = v
	return nil
}

// settleExtAuth makes the route's ExternalAuth once every annotation is
// read. An invalid auth-url, or one of its companions, has refused the
// Ingress already.
func (a *annotated) settleExtAuth(spelled map[string]string, warn func(reason, format string, args ...any)) {
	e := &a.ext
	if _, set := spelled["auth-url"]; !set {
		for _, n := range extAuthAnnotations {
			if k, ok := spelled[n]; ok {
				a.rulesOf().Refuse = refused
				warn(ReasonInvalidAnnotation, "annotation %s asks for external authentication, and auth-url is not set; every request to this Ingress is refused (403) until it is fixed", k)
			}
		}
		return
	}
	if e.url == nil {
		return
	}
	ext := &exchange.ExternalAuth{URL: e.url, Method: e.method, ResponseHeaders: e.responseHeaders, RequestRedirect: e.requestRedirect, SigninParam: e.signinParam}
	if e.signin != "" {
		s, err := exchange.ParseSignin(e.signin, e.signinParam)
		if err != nil { // checked already: cannot happen
			a.rulesOf().Refuse = refused
			return
		}
		ext.Signin = s
	} else if k, ok := spelled["auth-signin-redirect-param"]; ok {
		warn(ReasonInvalidAnnotation, "annotation %s has no effect without auth-signin", k)
	}
	a.rulesOf().ExternalAuth = ext
}
