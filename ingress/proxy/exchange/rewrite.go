package exchange

import (
	"strings"

	"github.com/portico-lb/portico/ingress/route"
)

// rewrite returns the target a request routed to be goes upstream with,
// as nginx's "rewrite PATTERN REWRITE break" makes it: when the pattern
// matches the decoded path, the path becomes the rewrite with $1 to $9
// replaced by the pattern's groups, escaped again; the query follows it
// unchanged. When the pattern does not match, the target is left alone.
// ok is false when the new path holds a "." or ".." segment: groups cut
// mid-segment can make one ("/app../x" by "/app(.*)" into "/static/$1"),
// and it would take the request out of where the rewrite puts it.
func (x *Exchange) rewrite(be route.Backend, path, target string) (rewritten string, ok bool) {
	m := be.Pattern.FindStringSubmatchIndex(path)
	if m == nil {
		return target, true
	}
	start := len(x.scratch)
	t := be.Rewrite
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c == '$' && i+1 < len(t) && '1' <= t[i+1] && t[i+1] <= '9' {
			g := int(t[i+1]-'0') * 2
			if g+1 < len(m) && m[g] >= 0 {
				x.scratch = appendEscapedPath(x.scratch, path[m[g]:m[g+1]])
			}
			i++
			continue
		}
		x.scratch = append(x.scratch, c)
	}
	if len(x.scratch) == start || x.scratch[start] != '/' {
		// An upstream request-target is a path: "$2" of "/app" is "".
		x.scratch = append(x.scratch[:start], append([]byte{'/'}, x.scratch[start:]...)...)
	}
	newPath := view(x.scratch[start:])
	if i := strings.IndexByte(newPath, '?'); i >= 0 {
		newPath = newPath[:i]
	}
	if dotSegment(newPath) {
		return "", false
	}
	if q := strings.IndexByte(target, '?'); q >= 0 {
		if len(newPath) < len(x.scratch)-start {
			// The rewrite has a query: the request's follows it.
			x.scratch = append(x.scratch, '&')
			x.scratch = append(x.scratch, target[q+1:]...)
		} else {
			x.scratch = append(x.scratch, target[q:]...)
		}
	}
	return view(x.scratch[start:]), true
}

// dotSegment reports whether a path has a "." or ".." segment.
func dotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// appendEscapedPath appends a decoded path piece escaped for a
// request-target: what is not a path character, '%' and '?' included, as
// %XX.
func appendEscapedPath(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if pathChar(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&0xf])
	}
	return b
}

// pathChar reports whether c stands for itself in a path (RFC 3986
// pchar and '/').
func pathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0
}
