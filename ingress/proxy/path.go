package proxy

import (
	"errors"
	"strings"
)

// CheckPath reports whether a request path may be routed. path is the
// decoded URL path, escaped its escaped form as received (URL.EscapedPath).
//
// Routes compare paths as given and are never cleaned (see route.Match), so
// a path whose meaning a backend might resolve differently from the route
// is refused instead of guessed at:
//
//   - it must start with '/';
//   - no "." or ".." segment, also when percent-encoded ("%2e%2e");
//   - no encoded '/' ("%2F"), which would make one segment look like two
//     to the backend but not to the route, or the other way round;
//   - no control characters (NUL, CR, LF, ...) once decoded.
func CheckPath(path, escaped string) error {
	if path == "" || path[0] != '/' {
		return errors.New("path must start with '/'")
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f {
			return errors.New("path holds a control character")
		}
	}
	if hasEncodedSlash(escaped) {
		return errors.New("path holds an encoded '/' (%2F)")
	}
	// Walk the segments of the decoded path: encoded dots decode to dots.
	for rest := path[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." {
			return errors.New("path holds a '.' or '..' segment")
		}
		if !more {
			return nil
		}
		rest = after
	}
}

func hasEncodedSlash(s string) bool {
	for {
		i := strings.IndexByte(s, '%')
		if i < 0 || i+2 >= len(s) {
			return false
		}
		if s[i+1] == '2' && (s[i+2] == 'f' || s[i+2] == 'F') {
			return true
		}
		s = s[i+1:]
	}
}
