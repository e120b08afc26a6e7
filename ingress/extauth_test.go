package ingress

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// The external authentication annotations: applied when valid, and any
// that is invalid, or set without auth-url, closes the Ingress (403).
func TestExtAuthAnnotations(t *testing.T) {
	const nginx = NginxPrefix
	key := types.NamespacedName{Namespace: "ns", Name: "x"}
	for _, c := range []struct {
		name    string
		ann     map[string]string
		applied bool // an ExternalAuth is made
		refused bool
		reasons []string
	}{
		{name: "auth-url alone", ann: map[string]string{nginx + "auth-url": "http://oauth2-proxy.auth.svc.cluster.local:4180/oauth2/auth"}, applied: true},
		{name: "all of them", ann: map[string]string{
			nginx + "auth-url":                   "https://auth.example/check",
			nginx + "auth-method":                "POST",
			nginx + "auth-response-headers":      "X-Auth-Request-User, X-Auth-Request-Email",
			nginx + "auth-request-redirect":      "https://app.example/",
			nginx + "auth-signin":                "https://$host/oauth2/start?rd=$escaped_request_uri",
			nginx + "auth-signin-redirect-param": "rd",
		}, applied: true},
		{name: "Portico's spelling", ann: map[string]string{PorticoPrefix + "auth-url": "http://127.0.0.1:9000/"}, applied: true},
		{name: "skipped ones warn", ann: map[string]string{nginx + "auth-url": "http://auth.example/", nginx + "auth-cache-key": "$remote_user", nginx + "auth-proxy-set-headers": "ns/headers"},
			applied: true, reasons: []string{ReasonUnsupportedAnnotation, ReasonUnsupportedAnnotation}},
		{name: "snippet", ann: map[string]string{nginx + "auth-url": "http://auth.example/", nginx + "auth-snippet": "proxy_set_header Foo bar;"},
			applied: true, reasons: []string{ReasonSnippetRefused}},
		{name: "snippet with access directives", ann: map[string]string{nginx + "auth-url": "http://auth.example/", nginx + "auth-snippet": "auth_request_set $x $y;"},
			applied: true, refused: true, reasons: []string{ReasonAccessRefused}},
		{name: "variable in auth-url", ann: map[string]string{nginx + "auth-url": "https://$host/oauth2/auth"}, refused: true, reasons: []string{ReasonInvalidAnnotation}},
		{name: "relative auth-url", ann: map[string]string{nginx + "auth-url": "/oauth2/auth"}, refused: true, reasons: []string{ReasonInvalidAnnotation}},
		{name: "userinfo", ann: map[string]string{nginx + "auth-url": "http://u:p@auth.example/"}, refused: true, reasons: []string{ReasonInvalidAnnotation}},
		{name: "scheme", ann: map[string]string{nginx + "auth-url": "ftp://auth.example/"}, refused: true, reasons: []string{ReasonInvalidAnnotation}},
		{name: "bad method", ann: map[string]string{nginx + "auth-url": "http://auth.example/", nginx + "auth-method": "G E T"}, applied: true, refused: true, reasons: []string{ReasonInvalidAnnotation}},
		{name: "bad response header", ann: map[string]string{nginx + "auth-url": "http://auth.example/", nginx + "auth-response-headers": "X-User, Content-Length"},
			applied: true, refused: true, reasons: []string{ReasonInvalidAnnotation}},
		{name: "unknown variable in auth-signin", ann: map[string]string{nginx + "auth-url": "http://auth.example/", nginx + "auth-signin": "https://login.example/?rd=$request_id"},
			applied: true, refused: true, reasons: []string{ReasonInvalidAnnotation}},
		{name: "companion without auth-url", ann: map[string]string{nginx + "auth-signin": "https://login.example/"}, refused: true, reasons: []string{ReasonInvalidAnnotation}},
		{name: "redirect param without auth-signin", ann: map[string]string{nginx + "auth-url": "http://auth.example/", nginx + "auth-signin-redirect-param": "next"},
			applied: true, reasons: []string{ReasonInvalidAnnotation}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := readAnnotations(key, c.ann)
			var reasons []string
			for _, p := range a.probs {
				reasons = append(reasons, p.Reason)
			}
			if !slices.Equal(reasons, c.reasons) {
				t.Errorf("problems %v, want reasons %v", a.probs, c.reasons)
			}
			applied := a.rules != nil && a.rules.ExternalAuth != nil
			refused := a.rules != nil && a.rules.Refuse != ""
			if applied != c.applied || refused != c.refused {
				t.Errorf("applied %v refused %v, want %v %v", applied, refused, c.applied, c.refused)
			}
		})
	}
	a := readAnnotations(key, map[string]string{
		nginx + "auth-url":              "https://auth.example:8443/check?x=1",
		nginx + "auth-method":           "POST",
		nginx + "auth-response-headers": "X-Auth-Request-User,,X-Auth-Request-Email ",
		nginx + "auth-request-redirect": "https://app.example/",
		nginx + "auth-signin":           "https://login.example/start",
	})
	e := a.rules.ExternalAuth
	if e.URL.String() != "https://auth.example:8443/check?x=1" || e.Method != "POST" || e.RequestRedirect != "https://app.example/" || e.Signin == nil ||
		!slices.Equal(e.ResponseHeaders, []string{"X-Auth-Request-User", "X-Auth-Request-Email"}) {
		t.Errorf("ExternalAuth %+v", e)
	}
	if a.policy == "" || !strings.Contains(a.policy, "auth-url=") {
		t.Errorf("policy %q does not hold auth-url: a change would not be seen", a.policy)
	}
}
