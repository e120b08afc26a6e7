package exchange

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses a size as nginx writes one: bytes, or a number with k,
// m or g (KiB, MiB, GiB), either case. "0" is 0, which nginx's
// client_max_body_size reads as "no limit".
func ParseSize(s string) (int64, error) {
	v := strings.TrimSpace(s)
	mult := int64(1)
	if v != "" {
		switch v[len(v)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			v = v[:len(v)-1]
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size: want bytes, or a number with k, m or g (e.g. 8m)", s)
	}
	return n * mult, nil
}

// ParseNextUpstream parses ingress-nginx's proxy-next-upstream: the
// failures, separated by blanks, that send a request to the next
// endpoint: error, timeout, invalid_header, or off. The http_* conditions
// (an endpoint's 502, 503, ...) are not supported yet.
func ParseNextUpstream(s string) (NextUpstream, error) {
	var n NextUpstream
	for _, w := range strings.Fields(s) {
		switch w {
		case "error":
			n |= NextOnError
		case "timeout":
			n |= NextOnTimeout
		case "invalid_header":
			n |= NextOnInvalidHeader
		case "off":
			n |= NextOff
		case "non_idempotent":
			n |= NextNonIdempotent
		default:
			code, ok := strings.CutPrefix(w, "http_")
			st, err := strconv.Atoi(code)
			if c := onStatus(st); ok && err == nil && c != 0 {
				n |= c
				continue
			}
			return 0, fmt.Errorf("%q in %q: want error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent or off", w, s)
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("%q names no failure: want error, timeout, invalid_header, http_5xx/403/404/429, non_idempotent or off", s)
	}
	return n, nil
}
