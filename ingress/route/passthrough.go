package route

import "fmt"

// SSL passthrough (ingress-nginx's ssl-passthrough): TLS connections whose
// server name (SNI) is a host of such an Ingress are not terminated by the
// proxy but joined, bytes and all, to the backend of that host's first
// path, which speaks TLS itself. The Ingress's rules still route plain
// HTTP as any other's.

// passClaim is the backend a passthrough host's connections go to.
type passClaim struct {
	Backend
	ingress string
}

// addPassthrough claims the rule hosts of a passthrough Ingress. Exact
// hosts only, as the server name is matched exactly; the oldest Ingress
// wins a host two claim.
func (b *builder) addPassthrough(ing *Ingress, key string) {
	for _, r := range ing.Rules {
		host, wild, err := canonicalRuleHost(r.Host)
		switch {
		case err != nil:
			continue // said already when its paths were added
		case host == "" || wild:
			b.invalid(key, r.Host, "", fmt.Sprintf("ssl-passthrough: rule host %q is not one server name; its TLS connections are not passed through", r.Host))
			continue
		case len(r.Paths) == 0:
			continue
		}
		be := r.Paths[0].Backend
		ing.stamp(&be, key)
		if err := checkBackend(be); err != nil || be.Resource != "" {
			b.invalid(key, r.Host, "", fmt.Sprintf("ssl-passthrough: host %q: its first path's backend must be a Service; its TLS connections are not passed through", r.Host))
			continue
		}
		if b.t.pass == nil {
			b.t.pass = map[string]passClaim{}
		}
		if won, ok := b.t.pass[host]; ok {
			if won.ingress != key {
				b.conflict(key, won.ingress, r.Host, "", fmt.Sprintf(
					"ssl-passthrough: host %q is passed through to %v already by Ingress %s, which is older; remove one of them", r.Host, won.Backend, won.ingress))
			}
			continue
		}
		b.t.pass[host] = passClaim{Backend: be, ingress: key}
	}
}

// Passthrough returns the backend whose endpoints take the TLS
// connections for serverName unterminated, if any.
func (t *Table) Passthrough(serverName string) (Backend, bool) {
	if t == nil || len(t.pass) == 0 {
		return Backend{}, false
	}
	var buf [maxHost]byte
	h, ok := requestHost(serverName, &buf)
	if !ok {
		return Backend{}, false
	}
	c, ok := t.pass[string(h)]
	return c.Backend, ok
}

// HasPassthrough reports whether any server name is passed through: a TLS
// server reads the server name before the handshake only then.
func (t *Table) HasPassthrough() bool { return t != nil && len(t.pass) > 0 }
