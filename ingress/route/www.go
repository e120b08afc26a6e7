package route

import (
	"fmt"
	"strings"
)

// The from-to-www redirect (ingress-nginx's from-to-www-redirect): an
// Ingress that asks for it and has a rule for "example.com" also gets the
// requests for "www.example.com", which the server redirects to
// "example.com", and the other way round. As in ingress-nginx, the other
// host is taken only when no Ingress has rules for it: a rule for it
// always wins, and the Ingress is told.

// otherWWW returns the host a from-to-www redirect comes from for a
// canonical rule host: "www." added, or taken off.
func otherWWW(host string) string {
	if rest, ok := strings.CutPrefix(host, "www."); ok {
		return rest
	}
	return "www." + host
}

// addWWW gives the other host of each rule host of the Ingresses that ask
// for the redirect the same paths and TLS Secret, and remembers where its
// requests are redirected. It runs once every rule is in, so that a rule
// for the other host, in any Ingress, wins.
func (b *builder) addWWW(order []*Ingress) {
	for _, ing := range order {
		if !ing.FromToWWW || ing.Canary != nil {
			continue
		}
		key := ing.key()
		for _, r := range ing.Rules {
			host, wild, err := canonicalRuleHost(r.Host)
			if err != nil || wild || host == "" {
				continue // a wildcard or host-less rule has no one other host
			}
			other := otherWWW(host)
			if checkDNSName(other) != nil {
				continue // "www." made it too long
			}
			if to, ok := b.t.www[other]; ok && to == host {
				continue // another rule of the same host asked already
			}
			if p, taken := b.t.exact[other]; taken {
				if owner := b.ownerOf(p); owner != key {
					b.conflict(key, owner, r.Host, "", fmt.Sprintf(
						"from-to-www-redirect: requests for %s are not redirected to %s: Ingress %s has rules for %s, which win",
						other, host, owner, other))
				}
				continue
			}
			paths := b.t.exact[host]
			if paths == nil {
				continue // the rule routed nothing
			}
			b.t.exact[other] = paths
			if b.t.www == nil {
				b.t.www = map[string]string{}
			}
			b.t.www[other] = host
			if ref, ok := b.t.TLS(host); ok {
				if _, claimed := b.t.tlsExact[other]; !claimed {
					b.t.tlsExact[other] = tlsClaim{SecretRef: ref, ingress: key}
				}
			}
		}
	}
}

// ownerOf returns the Ingress of the oldest backend among a host's paths.
func (b *builder) ownerOf(p *paths) string {
	first := int32(-1)
	for _, m := range []map[string]int32{p.exact, p.prefix} {
		for _, i := range m {
			if first < 0 || i < first {
				first = i
			}
		}
	}
	if first < 0 {
		return ""
	}
	return b.t.backends[first].Ingress
}

// WWWRedirect returns the host a request for host is redirected to by a
// from-to-www redirect, if any: the rule host that host is the other of.
// Its requests also match that host's paths, for the ones the server does
// not redirect (ACME challenges).
func (t *Table) WWWRedirect(host string) (string, bool) {
	if t == nil || len(t.www) == 0 {
		return "", false
	}
	var buf [maxHost]byte
	h, ok := requestHost(host, &buf)
	if !ok {
		return "", false
	}
	to, ok := t.www[string(h)]
	return to, ok
}
