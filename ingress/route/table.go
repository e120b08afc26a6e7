package route

import (
	"regexp"
	"slices"
	"strings"
)

// Table is a compiled, immutable routing table. The zero Table and a nil
// *Table route nothing.
type Table struct {
	backends []Backend
	exact    map[string]*paths // precise host → its paths
	wildcard map[string]*paths // "foo.com" for "*.foo.com" → its paths
	any      *paths            // rules without a host
	def      Backend           // the defaultBackend, when hasDef
	hasDef   bool
	tlsExact map[string]tlsClaim
	tlsWild  map[string]tlsClaim
	// www: the other host of a from-to-www redirect → the rule host its
	// requests are redirected to (see www.go).
	www map[string]string
	// pass: the server names whose TLS connections are passed through
	// (see passthrough.go).
	pass map[string]passClaim
}

type tlsClaim struct {
	SecretRef
	ingress string
}

// backend stores be and returns its index.
func (t *Table) backend(be Backend) int32 {
	t.backends = append(t.backends, be)
	return int32(len(t.backends) - 1)
}

// Match returns the backend for a request to host and path; false means no
// rule and no defaultBackend matches, and the server should answer 404.
//
// host is the request's Host (a port, a trailing dot and IPv6 brackets are
// ignored; case is not significant). path is the request's URL path, already
// percent-decoded, compared as given: Match does not clean "..", "//" or
// "/./", and an empty path is "/". The server in front should refuse (400)
// paths that do not start with '/' and paths with "." or ".." segments,
// rather than clean them, so that what a rule sees is what the backend gets.
//
// Match does not allocate.
func (t *Table) Match(host, path string) (Backend, bool) {
	if t == nil {
		return Backend{}, false
	}
	if path == "" {
		path = "/"
	}
	var buf [maxHost]byte
	if h, ok := requestHost(host, &buf); ok {
		if p := t.exact[string(h)]; p != nil {
			if i := p.match(path); i >= 0 {
				return t.backends[i], true
			}
		}
		if dot := indexDot(h); dot > 0 {
			if p := t.wildcard[string(h[dot+1:])]; p != nil {
				if i := p.match(path); i >= 0 {
					return t.backends[i], true
				}
			}
		}
	}
	if t.any != nil {
		if i := t.any.match(path); i >= 0 {
			return t.backends[i], true
		}
	}
	if t.hasDef {
		return t.def, true
	}
	return Backend{}, false
}

// TLS returns the Secret for a TLS server name (SNI), matched like a request
// host: an exact TLS host beats a wildcard one. ok is false when no TLS entry
// covers the name; the server then uses its default certificate and does not
// redirect plain HTTP for that host. ok with an empty Name means an Ingress
// lists the host for TLS without a Secret: serve the default certificate.
func (t *Table) TLS(serverName string) (SecretRef, bool) {
	if t == nil {
		return SecretRef{}, false
	}
	var buf [maxHost]byte
	h, ok := requestHost(serverName, &buf)
	if !ok {
		return SecretRef{}, false
	}
	if c, ok := t.tlsExact[string(h)]; ok {
		return c.SecretRef, true
	}
	if dot := indexDot(h); dot > 0 {
		if c, ok := t.tlsWild[string(h[dot+1:])]; ok {
			return c.SecretRef, true
		}
	}
	return SecretRef{}, false
}

// requestHost lower-cases host into buf without its port, IPv6 brackets or
// trailing dot. It reports false when nothing is left, when a '[' is not
// closed, or when the result is longer than a DNS name can be; such a host can
// only match rules without a host.
func requestHost(host string, buf *[maxHost]byte) ([]byte, bool) {
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return nil, false // not an IPv6 literal, not a name either
		}
		host = host[1:end]
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > maxHost {
		return nil, false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(host)], true
}

// indexDot returns the index of the first '.' in h that leaves a non-empty
// label after it, or -1.
func indexDot(h []byte) int {
	for i, c := range h {
		if c == '.' {
			if i == len(h)-1 {
				return -1
			}
			return i
		}
	}
	return -1
}

// paths holds the paths of one host.
type paths struct {
	exact  map[string]int32 // path → backend
	prefix map[string]int32 // path without trailing slashes ("/" is "") → backend
	lens   []uint64         // bit n set: some prefix key is n bytes long
	maxLen int              // longest prefix key, or -1
	// regex: the host's paths are regular expressions (see Ingress.Regex);
	// patterns replaces prefix in match, longest path first.
	regex    bool
	patterns []pattern
}

// pattern is one regular-expression path.
type pattern struct {
	path    string
	re      *regexp.Regexp
	backend int32
}

func newPaths() *paths { return &paths{maxLen: -1} }

// finish records the prefix lengths so that match looks up only the cuts of
// the request path that can hit.
func (p *paths) finish() {
	slices.SortStableFunc(p.patterns, func(a, b pattern) int { return len(b.path) - len(a.path) })
	for k := range p.prefix {
		p.maxLen = max(p.maxLen, len(k))
	}
	if p.maxLen < 0 {
		return
	}
	p.lens = make([]uint64, p.maxLen/64+1)
	for k := range p.prefix {
		p.lens[len(k)/64] |= 1 << (len(k) % 64)
	}
}

func (p *paths) hasLen(n int) bool {
	return n <= p.maxLen && p.lens[n/64]&(1<<(n%64)) != 0
}

// match returns the backend index of the best path for path, or -1. An
// Exact match is never shorter than a Prefix match, so it is tried first;
// then the prefix keys equal to path or to path cut just before a '/', longest
// first.
func (p *paths) match(path string) int32 {
	if i, ok := p.exact[path]; ok {
		return i
	}
	if p.regex {
		for _, pt := range p.patterns {
			if pt.re.MatchString(path) {
				return pt.backend
			}
		}
		return -1
	}
	if p.maxLen < 0 {
		return -1
	}
	if p.hasLen(len(path)) {
		if i, ok := p.prefix[path]; ok {
			return i
		}
	}
	cut := min(len(path), p.maxLen+1)
	for {
		cut = strings.LastIndexByte(path[:cut], '/')
		if cut < 0 {
			return -1
		}
		if p.hasLen(cut) {
			if i, ok := p.prefix[path[:cut]]; ok {
				return i
			}
		}
	}
}
