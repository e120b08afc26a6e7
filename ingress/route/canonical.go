package route

import (
	"errors"
	"net/netip"
	"strings"
)

// maxHost is the longest DNS name, in bytes, without a trailing dot.
const maxHost = 253

// canonicalRuleHost checks a rule or TLS host the way the Ingress API does
// and returns it lower-cased. For "*.foo.com" it returns "foo.com" and
// wild == true. The empty host is valid and stays empty.
func canonicalRuleHost(h string) (host string, wild bool, err error) {
	if h == "" {
		return "", false, nil
	}
	h = strings.ToLower(h)
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		h, wild = rest, true
	}
	if _, perr := netip.ParseAddr(h); perr == nil {
		return "", false, errors.New("is an IP address; use a DNS name")
	}
	if err := checkDNSName(h); err != nil {
		return "", false, err
	}
	return h, wild, nil
}

// checkDNSName accepts a lower-case RFC 1123 subdomain: labels of 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen, at most
// 253 bytes in all.
func checkDNSName(h string) error {
	if h == "" {
		return errors.New("has no name after the wildcard")
	}
	if len(h) > maxHost {
		return errors.New("is longer than 253 characters")
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("is not a DNS name: each dot-separated label must be 1 to 63 characters (a wildcard is allowed only as the whole first label, \"*.\")")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("is not a DNS name: a label must not start or end with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return errors.New("is not a DNS name: use only letters, digits, '-' and '.'")
			}
		}
	}
	return nil
}

// The Ingress API refuses these in Exact and Prefix paths.
var (
	badPathParts    = []string{"//", "/./", "/../", "%2f", "%2F"}
	badPathSuffixes = []string{"/..", "/."}
)

// canonicalRulePath checks a rule's path and returns the key it is stored
// under: the path itself for Exact, the path without trailing slashes for
// Prefix and ImplementationSpecific (so "/" becomes "").
func canonicalRulePath(p string, t PathType) (key string, exact bool, err error) {
	switch t {
	case Exact, Prefix:
		if !strings.HasPrefix(p, "/") {
			return "", false, errors.New("must start with '/'")
		}
		for _, s := range badPathParts {
			if strings.Contains(p, s) {
				return "", false, errors.New("must not contain '" + s + "'")
			}
		}
		for _, s := range badPathSuffixes {
			if strings.HasSuffix(p, s) {
				return "", false, errors.New("must not end with '" + s + "'")
			}
		}
		if t == Exact {
			return p, true, nil
		}
	case ImplementationSpecific:
		// Anything absolute goes: it is compared literally, as a Prefix.
		if p == "" {
			p = "/"
		}
		if !strings.HasPrefix(p, "/") {
			return "", false, errors.New("must start with '/'")
		}
	default:
		return "", false, errors.New("has an unknown path type; use Exact, Prefix or ImplementationSpecific")
	}
	return strings.TrimRight(p, "/"), false, nil
}
