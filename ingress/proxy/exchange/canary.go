package exchange

import (
	"math/rand/v2"
	"strings"

	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// chooseCanary reports whether req goes to the route's canary, by
// ingress-nginx's rules in their order: the header ("always" or "never",
// or equal to HeaderValue when set), then the cookie ("always" or
// "never"), then the weight. A value that decides nothing falls through
// to the next rule.
func chooseCanary(req *Request, c *route.Canary) bool {
	if c.Header != "" {
		for _, f := range req.Fields {
			if !h1.Is(f.Name, c.Header) {
				continue
			}
			switch {
			case c.HeaderValue != "":
				if f.Value == c.HeaderValue {
					return true
				}
			case f.Value == "always":
				return true
			case f.Value == "never":
				return false
			}
			break
		}
	}
	if c.Cookie != "" {
		if v, ok := cookie(req.Fields, c.Cookie); ok {
			switch v {
			case "always":
				return true
			case "never":
				return false
			}
		}
	}
	return c.Weight > 0 && c.WeightTotal > 0 && rand.IntN(c.WeightTotal) < c.Weight
}

// cookie returns the value of the first cookie called name in the Cookie
// fields (HTTP/2 may send several).
func cookie(fields []h1.Field, name string) (string, bool) {
	for _, f := range fields {
		if !h1.Is(f.Name, "Cookie") {
			continue
		}
		for part := range strings.SplitSeq(f.Value, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				return v, true
			}
		}
	}
	return "", false
}
