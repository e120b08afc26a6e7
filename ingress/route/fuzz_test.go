package route

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzMatch builds random tables from a small vocabulary of hosts and paths
// (valid and invalid ones) and checks Match and TLS, for the fuzzed request
// and for requests derived from every rule, against ref, a slow matcher
// written from the rules in the package comment, not from the Table.
func FuzzMatch(f *testing.F) {
	f.Add([]byte{0}, "foo.com", "/")
	f.Add([]byte{3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, "BAR.foo.com:80", "/a/b/")
	f.Add([]byte("some longer input to spread over the choices ........"), "[::1]:443", "//a/../b")
	f.Add([]byte{255, 254, 253, 252, 251, 250, 249, 248, 247, 246, 245}, "x.bar.foo.com.", "")
	f.Add([]byte{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0}, "", "*")
	f.Fuzz(func(t *testing.T, spec []byte, host, path string) {
		ings := decodeIngresses(spec)
		tab, _ := Build(ings)
		ref := newRef(ings)

		hosts := []string{host}
		paths := []string{path, "", "/"}
		for _, ing := range ings {
			for _, r := range ing.Rules {
				h := strings.Replace(r.Host, "*", "w", 1)
				hosts = append(hosts, h, strings.ToUpper(h)+":8080", "x."+h, h+".", strings.TrimPrefix(r.Host, "*"), "["+h+"]:1")
				for _, p := range r.Paths {
					paths = append(paths, p.Path, p.Path+"/", p.Path+"/z", p.Path+"z", strings.TrimSuffix(p.Path, "/"))
				}
			}
		}
		for _, h := range hosts {
			for _, p := range paths {
				got, ok := tab.Match(h, p)
				got.RulePath = "" // the reference does not model it
				want, wantOK, entry := ref.match(h, p)
				if ok != wantOK || got != want {
					t.Fatalf("Match(%q, %q) = %+v, %v; reference says %+v, %v\ninput: %#v", h, p, got, ok, want, wantOK, ings)
				}
				if entry != nil {
					checkProperties(t, ref, entry, h, p)
				}
			}
			got, ok := tab.TLS(h)
			want, wantOK := ref.tls(h)
			if ok != wantOK || got != want {
				t.Fatalf("TLS(%q) = %+v, %v; reference says %+v, %v\ninput: %#v", h, got, ok, want, wantOK, ings)
			}
		}
	})
}

// checkProperties states the matching rules once more, as properties of the
// entry that matched.
func checkProperties(t *testing.T, ref *refTable, e *refEntry, host, path string) {
	t.Helper()
	if path == "" {
		path = "/"
	}
	switch e.typ {
	case Exact:
		if e.path != path {
			t.Fatalf("Match(%q, %q) chose Exact %q", host, path, e.path)
		}
	default:
		p := strings.TrimRight(e.path, "/") // "/" and an empty ImplementationSpecific path become ""
		if path != p && !strings.HasPrefix(path, p+"/") {
			t.Fatalf("Match(%q, %q) chose Prefix %q, which is not a prefix at an element boundary", host, path, e.path)
		}
		// Whenever an Exact path of the same host equals the request, Exact
		// must have won.
		for _, o := range ref.entries {
			if o.typ == Exact && o.path == path && o.hostClass(ref.canonHost(host)) == e.hostClass(ref.canonHost(host)) {
				t.Fatalf("Match(%q, %q) chose Prefix %q over Exact %q of the same host", host, path, e.path, o.path)
			}
		}
	}
}

// decodeIngresses turns fuzz bytes into up to four Ingresses drawn from a
// small vocabulary, so that hosts and paths collide often.
func decodeIngresses(b []byte) []Ingress {
	next := func() int {
		if len(b) == 0 {
			return 0
		}
		c := int(b[0])
		b = b[1:]
		return c
	}
	hosts := []string{"", "foo.com", "bar.foo.com", "*.foo.com", "*.bar.foo.com", "FOO.com", "x.bar.foo.com", "1.2.3.4", "*.", "a_b.foo.com", "com"}
	segs := []string{"/", "a", "b", "/a", "/b", "//", ".", "..", "ab", "/A", "%2f", "*", "/.", "/.."}
	names := []string{"x", "y", "z"}
	var services []string
	backend := func() Backend {
		switch c := next(); {
		case c%11 == 10:
			return Backend{Resource: "g/K/r"}
		case c%11 == 9:
			return Backend{Service: "bad"} // no port
		case c%11 >= 7 && len(services) > 0:
			return svc(services[c%len(services)], 80)
		}
		s := fmt.Sprintf("s%d", len(services))
		services = append(services, s)
		return svc(s, 80)
	}

	ings := make([]Ingress, 1+next()%4)
	for i := range ings {
		ing := &ings[i]
		ing.Namespace = []string{"a", "b"}[next()%2]
		ing.Name = names[next()%len(names)]
		ing.Created = t0.Add(time.Duration(next()%3) * time.Hour)
		if next()%3 == 0 {
			be := backend()
			ing.DefaultBackend = &be
		}
		for range next() % 4 {
			r := Rule{Host: hosts[next()%len(hosts)]}
			for range next() % 5 {
				var p strings.Builder
				if next()%8 != 0 {
					p.WriteByte('/')
				}
				for range next() % 4 {
					p.WriteString(segs[next()%len(segs)])
				}
				r.Paths = append(r.Paths, Path{Path: p.String(), Type: []PathType{ImplementationSpecific, Exact, Exact, Prefix, Prefix, Prefix, 7}[next()%7], Backend: backend()})
			}
			ing.Rules = append(ing.Rules, r)
		}
		for range next() % 3 {
			var tls TLS
			for range next() % 3 {
				tls.Hosts = append(tls.Hosts, hosts[next()%len(hosts)])
			}
			tls.SecretName = []string{"", "s1", "s2"}[next()%3]
			ing.TLS = append(ing.TLS, tls)
		}
	}
	return ings
}

// refTable is the reference: a list of entries searched linearly.
type refTable struct {
	entries []*refEntry // in precedence order for ties: oldest Ingress, then spec order
	def     *Backend
	tlsList []refTLS
}

type refEntry struct {
	host string // lower-case rule host as written, "*." included
	typ  PathType
	path string
	be   Backend
}

type refTLS struct {
	host   string
	secret SecretRef
}

var dnsName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func refValidHost(h string) bool {
	name := strings.TrimPrefix(h, "*.")
	if _, err := netip.ParseAddr(name); err == nil || len(name) > 253 || !dnsName.MatchString(name) {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if len(l) > 63 {
			return false
		}
	}
	return true
}

func refValidPath(p string, typ PathType) bool {
	switch typ {
	case ImplementationSpecific:
		return p == "" || strings.HasPrefix(p, "/")
	case Exact, Prefix:
		if !strings.HasPrefix(p, "/") || strings.Contains(strings.ToLower(p), "%2f") {
			return false
		}
		segs := strings.Split(p[1:], "/")
		for i, s := range segs {
			if s == "." || s == ".." || s == "" && i != len(segs)-1 {
				return false
			}
		}
		return true
	}
	return false
}

func refValidBackend(b Backend) bool {
	if b.Resource != "" {
		return b.Service == "" && b.Port == Port{}
	}
	return b.Service != "" && (b.Port.Name != "") != (b.Port.Number != 0) && b.Port.Number >= 0 && b.Port.Number <= 65535
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

func newRef(ings []Ingress) *refTable {
	sorted := slices.Clone(ings)
	slices.SortStableFunc(sorted, func(a, b Ingress) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	ref := &refTable{}
	seen := map[string]bool{}
	for _, ing := range sorted {
		id := ing.Namespace + "/" + ing.Name
		if seen[id] {
			continue
		}
		seen[id] = true
		fill := func(b Backend) Backend {
			b.Namespace, b.Ingress = ing.Namespace, id
			return b
		}
		if ing.DefaultBackend != nil && ref.def == nil && refValidBackend(*ing.DefaultBackend) {
			b := fill(*ing.DefaultBackend)
			ref.def = &b
		}
		var ruleHosts []string
		for _, r := range ing.Rules {
			h := asciiLower(r.Host)
			if h != "" && !refValidHost(h) {
				continue
			}
			if h != "" {
				ruleHosts = append(ruleHosts, h)
			}
			for _, p := range r.Paths {
				if refValidPath(p.Path, p.Type) && refValidBackend(p.Backend) {
					ref.entries = append(ref.entries, &refEntry{host: h, typ: p.Type, path: p.Path, be: fill(p.Backend)})
				}
			}
		}
		for _, tls := range ing.TLS {
			hs := tls.Hosts
			if len(hs) == 0 {
				hs = ruleHosts
			}
			for _, h := range hs {
				h = asciiLower(h)
				if h != "" && refValidHost(h) {
					ref.tlsList = append(ref.tlsList, refTLS{h, SecretRef{ing.Namespace, tls.SecretName}})
				}
			}
		}
	}
	return ref
}

// canonHost: lower case, no port, no IPv6 brackets, one trailing dot less;
// ok false when the result cannot be a host name.
func (r *refTable) canonHost(h string) (string, bool) {
	if rest, isV6 := strings.CutPrefix(h, "["); isV6 {
		inside, _, closed := strings.Cut(rest, "]")
		if !closed {
			return "", false
		}
		h = inside
	} else if strings.Count(h, ":") == 1 {
		h, _, _ = strings.Cut(h, ":")
	}
	h = asciiLower(strings.TrimSuffix(h, "."))
	return h, h != "" && len(h) <= 253
}

// hostClass: 3 for the same host, 2 for a covering wildcard, 1 for a rule
// without host, 0 for no match.
func (e *refEntry) hostClass(h string, ok bool) int {
	switch {
	case e.host == "":
		return 1
	case !ok:
		return 0
	case e.host == h:
		return 3
	case strings.HasPrefix(e.host, "*."):
		label, rest, found := strings.Cut(h, ".")
		if found && label != "" && rest == e.host[2:] {
			return 2
		}
	}
	return 0
}

// elements is the number of '/'-separated elements a Prefix path matches on;
// -1 when it does not match path.
func (e *refEntry) prefixElements(path string) int {
	p := strings.TrimRight(e.path, "/")
	pe := strings.Split(p, "/")
	re := strings.Split(path, "/")
	if len(pe) > len(re) {
		return -1
	}
	for i := range pe {
		if pe[i] != re[i] {
			return -1
		}
	}
	return len(pe)
}

func (r *refTable) match(host, path string) (Backend, bool, *refEntry) {
	if path == "" {
		path = "/"
	}
	h, ok := r.canonHost(host)
	for class := 3; class >= 1; class-- {
		var best *refEntry
		bestRank := -1
		for _, e := range r.entries {
			if e.hostClass(h, ok) != class {
				continue
			}
			rank := -1
			if e.typ == Exact {
				if e.path == path {
					rank = 1 << 20 // beats any prefix
				}
			} else {
				rank = e.prefixElements(path)
			}
			if rank > bestRank {
				best, bestRank = e, rank
			}
		}
		if best != nil && bestRank >= 0 {
			return best.be, true, best
		}
	}
	if r.def != nil {
		return *r.def, true, nil
	}
	return Backend{}, false, nil
}

func (r *refTable) tls(name string) (SecretRef, bool) {
	h, ok := r.canonHost(name)
	if !ok {
		return SecretRef{}, false
	}
	for _, want := range []int{3, 2} {
		for _, c := range r.tlsList {
			if (&refEntry{host: c.host}).hostClass(h, ok) == want {
				return c.secret, true
			}
		}
	}
	return SecretRef{}, false
}
