package exchange

import (
	"strings"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// CORS is an Ingress's cross-origin policy (ingress-nginx's enable-cors and
// cors-*): a request whose Origin is allowed gets the Access-Control-*
// fields on its answer, and an OPTIONS request from such an origin is a
// preflight the proxy answers itself (204), as ingress-nginx does.
type CORS struct {
	// Origins are the allowed origins, lower case: "*" for any,
	// "https://app.example", or "https://*.example" for one label more.
	Origins []string
	// The values of the answer's fields; Credentials adds
	// Access-Control-Allow-Credentials: true.
	Methods, Headers, Expose, MaxAge string
	Credentials                      bool
}

// allows returns the Access-Control-Allow-Origin value for a request's
// Origin, or "" when the origin is not allowed (or there is none).
func (c *CORS) allows(origin string) string {
	if origin == "" {
		return ""
	}
	for _, o := range c.Origins {
		switch {
		case o == "*":
			return "*"
		case len(origin) == len(o) && h1.Is(origin, o):
			return origin
		case strings.Contains(o, "://*."):
			scheme, rest, _ := strings.Cut(o, "*.")
			if len(origin) > len(scheme)+len(rest)+1 && h1.Is(origin[:len(scheme)], scheme) && h1.Is(origin[len(origin)-len(rest):], rest) {
				label := origin[len(scheme) : len(origin)-len(rest)]
				if dot := strings.IndexByte(label, '.'); dot == len(label)-1 && dot > 0 && !strings.ContainsAny(label[:dot], "/:@") {
					return origin
				}
			}
		}
	}
	return ""
}

// corsFields appends the Access-Control-* fields of an answer to an
// allowed origin: all of them on a preflight, the ones a simple request's
// answer carries otherwise.
func (c *CORS) fields(b []h1.Field, allow string, preflight bool) []h1.Field {
	b = append(b, h1.Field{Name: "Access-Control-Allow-Origin", Value: allow})
	if allow != "*" {
		b = append(b, h1.Field{Name: "Vary", Value: "Origin"})
	}
	if c.Credentials {
		b = append(b, h1.Field{Name: "Access-Control-Allow-Credentials", Value: "true"})
	}
	b = append(b, h1.Field{Name: "Access-Control-Allow-Methods", Value: c.Methods}, h1.Field{Name: "Access-Control-Allow-Headers", Value: c.Headers})
	if preflight {
		return append(b, h1.Field{Name: "Access-Control-Max-Age", Value: c.MaxAge})
	}
	if c.Expose != "" {
		b = append(b, h1.Field{Name: "Access-Control-Expose-Headers", Value: c.Expose})
	}
	return b
}

// corsField reports the fields the proxy sets for CORS, which an
// endpoint's own are replaced by.
func corsField(name string) bool {
	return len(name) > 15 && h1.Is(name[:15], "Access-Control-")
}
