package route

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Build compiles ings into a Table. It never fails: input it cannot use is
// left out and reported, one Rejection per piece, in a deterministic order
// (oldest Ingress first, then the order of its spec). The same input, in any
// order, gives the same Table and the same Rejections, unless it holds two
// copies of one Ingress. Build does not modify ings.
func Build(ings []Ingress) (*Table, []Rejection) {
	b := builder{
		t: &Table{
			exact:    map[string]*paths{},
			wildcard: map[string]*paths{},
			any:      newPaths(),
			tlsExact: map[string]tlsClaim{},
			tlsWild:  map[string]tlsClaim{},
		},
	}

	order := make([]*Ingress, len(ings))
	n := 0
	for i := range ings {
		order[i] = &ings[i]
		for _, r := range ings[i].Rules {
			n += len(r.Paths)
		}
	}
	b.t.backends = make([]Backend, 0, n)
	slices.SortStableFunc(order, func(x, y *Ingress) int {
		if c := x.Created.Compare(y.Created); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(x.Namespace, y.Namespace), strings.Compare(x.Name, y.Name))
	})

	b.markRegexHosts(order)
	seen := make(map[string]bool, len(order))
	var canaries []*Ingress
	for _, ing := range order {
		key := ing.key()
		if seen[key] {
			b.invalid(key, "", "", "the same Ingress was given twice; only the first copy is used")
			continue
		}
		seen[key] = true
		if ing.Canary != nil {
			canaries = append(canaries, ing)
			continue
		}
		b.add(ing, key)
		if ing.Passthrough {
			b.addPassthrough(ing, key)
		}
	}
	for _, ing := range canaries { // once every route they could join is in
		b.addCanary(ing, ing.key())
	}
	b.addWWW(order)

	for _, p := range b.t.exact {
		p.finish()
	}
	for _, p := range b.t.wildcard {
		p.finish()
	}
	b.t.any.finish()
	return b.t, b.rejected
}

type builder struct {
	t        *Table
	rejected []Rejection
}

// markRegexHosts makes the paths of every host an Ingress with Regex has
// rules for regular expressions, before any path is added.
func (b *builder) markRegexHosts(order []*Ingress) {
	for _, ing := range order {
		if !ing.Regex && ing.RewriteTarget == "" {
			continue
		}
		for _, r := range ing.Rules {
			if host, wild, err := canonicalRuleHost(r.Host); err == nil {
				b.pathsOf(host, wild).regex = true
			}
		}
	}
}

// pathsOf returns the paths of a canonical rule host, made when new.
func (b *builder) pathsOf(host string, wild bool) *paths {
	m := b.t.exact
	switch {
	case host == "" && !wild:
		return b.t.any
	case wild:
		m = b.t.wildcard
	}
	p := m[host]
	if p == nil {
		p = newPaths()
		m[host] = p
	}
	return p
}

func (b *builder) invalid(ing, host, path, reason string) {
	b.rejected = append(b.rejected, Rejection{Kind: Invalid, Ingress: ing, Host: host, Path: path, Reason: reason})
}

func (b *builder) conflict(loser, winner, host, path, reason string) {
	b.rejected = append(b.rejected, Rejection{Kind: Conflict, Ingress: loser, Winner: winner, Host: host, Path: path, Reason: reason})
}

func (b *builder) add(ing *Ingress, key string) {
	if ing.DefaultBackend == nil && len(ing.Rules) == 0 {
		b.invalid(key, "", "", "the Ingress has neither rules nor a defaultBackend, so it routes nothing: add one of them")
	}
	if ing.DefaultBackend != nil {
		b.addDefault(ing, key)
	}

	var ruleHosts []string
	for _, r := range ing.Rules {
		host, wild, err := canonicalRuleHost(r.Host)
		if err != nil {
			b.invalid(key, r.Host, "", fmt.Sprintf("host %q %v; its rule is ignored", r.Host, err))
			continue
		}
		if host != "" || wild {
			ruleHosts = append(ruleHosts, r.Host)
		}
		p := b.pathsOf(host, wild)
		for _, rp := range r.Paths {
			b.addPath(p, ing, key, r.Host, rp)
		}
	}

	for _, tls := range ing.TLS {
		hosts := tls.Hosts
		if len(hosts) == 0 {
			hosts = ruleHosts
			if len(hosts) == 0 {
				b.invalid(key, "", "", fmt.Sprintf("TLS entry for Secret %q lists no hosts and the Ingress has no rule with a host to stand for them; list the hosts", tls.SecretName))
			}
		}
		for _, h := range hosts {
			b.addTLS(key, ing.Namespace, h, tls.SecretName)
		}
	}
}

func (b *builder) addDefault(ing *Ingress, key string) {
	be := *ing.DefaultBackend
	ing.stamp(&be, key)
	if err := checkBackend(be); err != nil {
		b.invalid(key, "", "", fmt.Sprintf("defaultBackend %v; it is ignored", err))
		return
	}
	if !b.t.hasDef {
		b.t.def, b.t.hasDef = be, true
		return
	}
	won := b.t.def
	if won.sameTarget(be) {
		if won.policy != be.policy {
			b.conflict(key, won.Ingress, "", "", fmt.Sprintf(
				"defaultBackend (%v) is ignored: the older Ingress %s already sets it, with other annotations, and its own apply; make the annotations agree or remove one defaultBackend",
				be, won.Ingress))
		}
		return
	}
	b.conflict(key, won.Ingress, "", "", fmt.Sprintf(
		"defaultBackend (%v) is ignored: the older Ingress %s already sets defaultBackend %v and there can be only one; remove one of them",
		be, won.Ingress, won))
}

func (b *builder) addPath(p *paths, ing *Ingress, key, host string, rp Path) {
	be := rp.Backend
	be.RulePath = rp.Path
	ing.stamp(&be, key)
	if err := checkBackend(be); err != nil {
		b.invalid(key, host, rp.Path, fmt.Sprintf("%s: backend %v; the path is ignored", describe(host, rp.Path, rp.Type), err))
		return
	}
	pathKey, exact, err := canonicalRulePath(rp.Path, rp.Type)
	if err != nil {
		b.invalid(key, host, rp.Path, fmt.Sprintf("%s: %v; the path is ignored", describe(host, rp.Path, rp.Type), err))
		return
	}
	var re *regexp.Regexp
	if p.regex && !exact {
		// As ingress-nginx writes such a path: location ~* "^PATH".
		raw := cmp.Or(rp.Path, "/")
		if re, err = regexp.Compile("(?i)^" + raw); err != nil {
			b.invalid(key, host, rp.Path, fmt.Sprintf("%s: the host's paths are regular expressions (use-regex or rewrite-target), and this one is not: %v; the path is ignored",
				describe(host, rp.Path, rp.Type), err))
			return
		}
		pathKey = raw // a pattern is not a prefix: "/a/" and "/a" differ
	}
	if ing.RewriteTarget != "" && !exact {
		// nginx's rewrite: the pattern unanchored, case-insensitive.
		if be.Pattern, err = regexp.Compile("(?i)" + cmp.Or(rp.Path, "/")); err != nil {
			b.invalid(key, host, rp.Path, fmt.Sprintf("%s: rewrite-target needs a regular expression path: %v; the path is ignored",
				describe(host, rp.Path, rp.Type), err))
			return
		}
		be.Rewrite = ing.RewriteTarget
	}
	m := &p.prefix
	if exact {
		m = &p.exact
	}
	if i, ok := (*m)[pathKey]; ok {
		won := b.t.backends[i]
		switch {
		case !won.sameTarget(be):
			b.conflict(key, won.Ingress, host, rp.Path, fmt.Sprintf(
				"%s (%v) is ignored: Ingress %s, older or earlier in the same spec, already routes it to %v; remove or change one of them",
				describe(host, rp.Path, rp.Type), be, won.Ingress, won))
		case won.policy != be.policy || won.Rewrite != be.Rewrite:
			b.conflict(key, won.Ingress, host, rp.Path, fmt.Sprintf(
				"%s is ignored: the older Ingress %s already routes it to %v with other annotations, and its own apply; make the annotations agree or remove one of the paths",
				describe(host, rp.Path, rp.Type), won.Ingress, won))
		}
		return
	}
	if *m == nil {
		*m = map[string]int32{}
	}
	i := b.t.backend(be)
	(*m)[pathKey] = i
	if re != nil {
		p.patterns = append(p.patterns, pattern{path: pathKey, re: re, backend: i})
	}
}

// addCanary makes the paths of a canary Ingress the canaries of the same
// host and path of other Ingresses. It claims nothing of its own: a canary
// is never a conflict with its main route, only with another canary.
func (b *builder) addCanary(ing *Ingress, key string) {
	if ing.DefaultBackend != nil {
		b.invalid(key, "", "", "a canary Ingress's defaultBackend is not served: canaries apply to the paths of rules only")
	}
	for _, r := range ing.Rules {
		host, wild, err := canonicalRuleHost(r.Host)
		if err != nil {
			b.invalid(key, r.Host, "", fmt.Sprintf("host %q %v; its rule is ignored", r.Host, err))
			continue
		}
		p := b.pathsOf(host, wild)
		for _, rp := range r.Paths {
			be := rp.Backend
			ing.stamp(&be, key)
			if err := checkBackend(be); err != nil {
				b.invalid(key, r.Host, rp.Path, fmt.Sprintf("%s: backend %v; the path is ignored", describe(r.Host, rp.Path, rp.Type), err))
				continue
			}
			pathKey, exact, err := canonicalRulePath(rp.Path, rp.Type)
			if err == nil && p.regex && !exact {
				pathKey = cmp.Or(rp.Path, "/")
			}
			m := p.prefix
			if exact {
				m = p.exact
			}
			i, ok := m[pathKey]
			switch {
			case err != nil:
				b.invalid(key, r.Host, rp.Path, fmt.Sprintf("%s: %v; the path is ignored", describe(r.Host, rp.Path, rp.Type), err))
			case !ok:
				b.invalid(key, r.Host, rp.Path, fmt.Sprintf("%s: no other Ingress routes this host and path, and a canary is only served beside its main route; the path is ignored",
					describe(r.Host, rp.Path, rp.Type)))
			case b.t.backends[i].Canary != nil:
				won := b.t.backends[i].Canary.Backend.Ingress
				b.conflict(key, won, r.Host, rp.Path, fmt.Sprintf("%s: the canary Ingress %s, older, is already this route's canary; remove one of them",
					describe(r.Host, rp.Path, rp.Type), won))
			default:
				c := *ing.Canary
				c.Backend = be
				b.t.backends[i].Canary = &c
			}
		}
	}
}

func (b *builder) addTLS(key, ns, host, secret string) {
	h, wild, err := canonicalRuleHost(host)
	if err == nil && h == "" {
		err = fmt.Errorf("is empty")
	}
	if err != nil {
		b.invalid(key, host, "", fmt.Sprintf("TLS host %q %v; it gets no certificate from Secret %q", host, err, secret))
		return
	}
	m := b.t.tlsExact
	if wild {
		m = b.t.tlsWild
	}
	c := tlsClaim{SecretRef: SecretRef{Namespace: ns, Name: secret}, ingress: key}
	won, ok := m[h]
	if !ok {
		m[h] = c
		return
	}
	if won.SecretRef != c.SecretRef {
		b.conflict(key, won.ingress, host, "", fmt.Sprintf(
			"TLS host %q: Secret %q is ignored: Ingress %s, older or earlier in the same spec, already takes its certificate from Secret %s/%s; remove one of them",
			host, secret, won.ingress, won.Namespace, won.Name))
	}
}

func describe(host, path string, t PathType) string {
	if host == "" {
		host = "(any host)"
	}
	return fmt.Sprintf("path %q (%v) of host %s", path, t, host)
}

func checkBackend(be Backend) error {
	switch {
	case be.Resource != "" && (be.Service != "" || be.Port != Port{}):
		return fmt.Errorf("names both a resource and a service: name only one")
	case be.Resource != "":
		return nil
	case be.Service == "":
		return fmt.Errorf("names no service: set service.name")
	case be.Port.Name != "" && be.Port.Number != 0:
		return fmt.Errorf("service %q has both a port name and a port number: set only one", be.Service)
	case be.Port.Name == "" && (be.Port.Number < 1 || be.Port.Number > 65535):
		return fmt.Errorf("service %q has port number %d: set a number from 1 to 65535 or a port name", be.Service, be.Port.Number)
	}
	return nil
}

// stamp gives a backend of ing what Build copies onto it from the Ingress.
func (ing *Ingress) stamp(be *Backend, key string) {
	be.Namespace, be.Ingress, be.policy = ing.Namespace, key, ing.Policy
	be.NoSSLRedirect, be.ServiceUpstream, be.Protocol = ing.NoSSLRedirect, ing.ServiceUpstream, ing.Protocol
}
