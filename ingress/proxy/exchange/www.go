package exchange

import (
	"strings"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// fromToWWW answers a request for the other host of a from-to-www
// redirect (route.Table.WWWRedirect) with a redirect to the rule's host,
// as ingress-nginx does: 308 (its http-redirect-code), the scheme the
// client used, the same port and request-target. It comes before the
// route's own policies, as ingress-nginx's redirect server has none of
// them. An ACME challenge is never redirected: it is routed as the rule
// host's. It reports whether it answered.
func (p *Policy) fromToWWW(cfg *Config, req *Request, path string, x *Exchange) bool {
	to, ok := cfg.Routes.WWWRedirect(req.Host)
	if !ok || strings.HasPrefix(path, acmePath) {
		return false
	}
	if be, ok := cfg.Routes.Match(req.Host, path); ok {
		x.Record.Route = be.Ingress
	}
	start := len(x.scratch)
	x.scratch = append(x.scratch, x.scheme(req)...)
	x.scratch = append(x.scratch, "://"...)
	x.scratch = append(x.scratch, to...)
	if port := hostPort(req.Host); port != "" {
		x.scratch = append(x.scratch, ':')
		x.scratch = append(x.scratch, port...)
	}
	x.scratch = append(x.scratch, req.Target...)
	x.answer(308, "", h1.Field{Name: "Location", Value: view(x.scratch[start:])})
	return true
}

// hostPort returns the port of a Host value, or "" when it has none.
func hostPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.HasSuffix(host, "]") || strings.Count(host, ":") > 1 && !strings.HasPrefix(host, "[") {
		return ""
	}
	return host[i+1:]
}
