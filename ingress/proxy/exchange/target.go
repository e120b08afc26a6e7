package exchange

import "strings"

// checkTarget checks a request target in origin form and returns its
// path, percent-decoded, for routing; or why it is refused.
//
// Routes compare paths as given and are never cleaned (see route.Match),
// so a target whose meaning a backend might resolve differently from the
// route is refused instead of guessed at, whatever protocol it came by:
//
//   - it must start with '/': no other form is forwarded;
//   - no blank, control byte, DEL or '#' in it: the request line upstream
//     would not read as one, or would hide a fragment;
//   - every '%' in the path starts an escape of two hex digits;
//   - no encoded '/' ("%2F"), which would make one segment look like two
//     to the backend but not to the route, or the other way round;
//   - no control byte once decoded (an encoded NUL, CR or LF);
//   - no "." or ".." segment, also when percent-encoded ("%2e%2e"), nor
//     one with parameters ("..;x"), which Tomcat, Jetty and Spring read as
//     ".." once they drop the parameters.
func (x *Exchange) checkTarget(target string) (path string, refused string) {
	if target == "" || target[0] != '/' {
		return "", "the request target must be a path"
	}
	end, escaped := len(target), false
	for i := 0; i < len(target); i++ {
		c := target[i]
		switch {
		case c <= ' ' || c == 0x7f || c == '#':
			return "", "the request target holds a blank, a control character or '#'"
		case c == '?':
			if end == len(target) {
				end = i
			}
		case c == '%' && i < end:
			if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
				return "", "invalid escape in the path"
			}
			if target[i+1] == '2' && (target[i+2] == 'f' || target[i+2] == 'F') {
				return "", "the path holds an encoded '/' (%2F)"
			}
			escaped = true
		}
	}
	path = target[:end]
	if escaped {
		start := len(x.scratch)
		for i := 0; i < len(path); i++ {
			c := path[i]
			if c == '%' {
				c = unhex(path[i+1])<<4 | unhex(path[i+2])
				i += 2
			}
			x.scratch = append(x.scratch, c)
		}
		path = view(x.scratch[start:])
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f {
			return "", "the path holds a control character"
		}
	}
	for rest := path[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg, _, _ = strings.Cut(seg, ";"); seg == "." || seg == ".." {
			return "", "the path holds a '.' or '..' segment"
		}
		if !more {
			return path, ""
		}
		rest = after
	}
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
