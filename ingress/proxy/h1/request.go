package h1

import (
	"bytes"
	"strings"
)

// Form is the form of a request-target (RFC 9112, 3.2).
type Form uint8

const (
	// OriginForm: "/path?query".
	OriginForm Form = iota
	// AbsoluteForm: "http://host/path?query", as sent to proxies.
	AbsoluteForm
	// AuthorityForm: "host:port", CONNECT's.
	AuthorityForm
	// AsteriskForm: "*", for a server-wide OPTIONS.
	AsteriskForm
)

// Request is a parsed request head. Its strings point into the bytes it
// was parsed from.
type Request struct {
	Method string
	// Target is the request-target as received.
	Target string
	Form   Form
	// URI is the target in origin form: Target itself, or the path and
	// query of an absolute-form target ("/" for an empty path). Empty for
	// the other forms.
	URI string
	// Host is the Host field, or the authority of an absolute-form
	// target, which overrides it (RFC 9112, 3.2.2).
	Host  string
	Minor int // HTTP/1.Minor: 0 or 1
	// Fields are the header fields but Host, Content-Length and
	// Transfer-Encoding, whose meaning is the codec's: no list of fields,
	// not even Connection naming them, can make a proxy drop or change
	// them.
	Fields []Field
	// Length is the body's Content-Length, 0 without one; HasLength
	// tells an explicit 0 from none. Chunked is a chunked body.
	Length    int64
	HasLength bool
	Chunked   bool
	// Close: the connection ends after the response (Connection: close,
	// or HTTP/1.0 without keep-alive).
	Close bool
	// ConnNames: Connection names fields other than close, keep-alive
	// and upgrade, which are then hop-by-hop too.
	ConnNames bool
	// Upgrade is the Upgrade field's value when Connection lists
	// "upgrade", else "".
	Upgrade string
	// Continue: the client sent Expect: 100-continue.
	Continue bool
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.Length > 0 }

// ParseRequest parses the request head at the start of b into r, reusing
// r's field storage, and returns its length in b (empty lines before it
// included). It returns 0 and no error while b holds no complete head.
// max bounds the head's size. Errors are *Error, with the status to answer;
// r.Method is set then when the request line named one.
func ParseRequest(b []byte, max int, r *Request) (int, error) {
	start, end, err := findHead(b, max)
	if err != nil || end == 0 {
		return 0, err
	}
	if err := parseRequest(b[start:end], r); err != nil {
		return 0, err
	}
	return end, nil
}

func parseRequest(b []byte, r *Request) error {
	*r = Request{Fields: r.Fields[:0]}
	line, rest := nextLine(b)
	if err := r.parseLine(line); err != nil {
		return err
	}
	hosts, te := 0, 0
	var host string
	var conn connOptions
	var upgrade string
	for {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break
		}
		f, ok := parseField(line)
		if !ok {
			return errorf(400, fieldError(line))
		}
		switch {
		case Is(f.Name, "Host"):
			if hosts++; hosts > 1 {
				return errorf(400, "more than one Host header")
			}
			if !ValidHost(f.Value) {
				return errorf(400, "invalid Host header")
			}
			host = f.Value
			continue
		case Is(f.Name, "Content-Length"):
			if r.HasLength {
				return errorf(400, "more than one Content-Length header")
			}
			n, ok := parseLength(f.Value)
			if !ok {
				return errorf(400, "invalid Content-Length header")
			}
			r.Length, r.HasLength = n, true
			continue
		case Is(f.Name, "Transfer-Encoding"):
			if te++; te > 1 || !Is(f.Value, "chunked") {
				return errorf(501, "Transfer-Encoding other than chunked alone is not supported")
			}
			continue
		case Is(f.Name, "Connection"):
			conn.read(f.Value)
		case Is(f.Name, "Upgrade"):
			if upgrade == "" {
				upgrade = f.Value
			}
		case Is(f.Name, "Expect"):
			if !Is(f.Value, "100-continue") {
				return errorf(417, "the only expectation supported is 100-continue")
			}
			r.Continue = true
		}
		if len(r.Fields) == MaxFields {
			return ErrHeadTooLarge
		}
		r.Fields = append(r.Fields, f)
	}
	switch {
	case te > 0 && r.HasLength:
		return errorf(400, "both Content-Length and Transfer-Encoding")
	case te > 0 && r.Minor == 0:
		// Faulty framing (RFC 9112, 6.1): HTTP/1.0 has no
		// Transfer-Encoding, and another reader would see no body.
		return errorf(400, "Transfer-Encoding in an HTTP/1.0 request")
	case hosts == 0 && r.Minor == 1:
		return errorf(400, "missing Host header")
	}
	r.Chunked = te > 0
	if r.Form == OriginForm || r.Form == AsteriskForm {
		r.Host = host // else the target's authority
	}
	r.Close = conn.close || r.Minor == 0 && !conn.keepAlive
	r.ConnNames = conn.names
	if conn.upgrade {
		r.Upgrade = upgrade
	}
	return nil
}

// fieldError says what is wrong with a field line parseField refused.
func fieldError(line []byte) string {
	switch {
	case line[0] == ' ' || line[0] == '\t':
		return "obsolete line folding in the headers"
	case bytes.IndexByte(line, '\r') >= 0:
		return "a bare CR in the headers"
	}
	return "malformed header line"
}

// parseLine parses "METHOD SP target SP HTTP/1.x".
func (r *Request) parseLine(line []byte) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errorf(400, "malformed request line")
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return errorf(400, "malformed request line")
	}
	sp2 += sp1 + 1
	method, target, version := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	if !ValidToken(str(method)) {
		return errorf(400, "malformed request line")
	}
	// Known even when the rest is refused: an answer to HEAD has no body.
	r.Method = method2string(method)
	for _, c := range target {
		if c < ' ' || c == 0x7f {
			return errorf(400, "malformed request target")
		}
	}
	switch string(version) {
	case "HTTP/1.1":
		r.Minor = 1
	case "HTTP/1.0":
		r.Minor = 0
	default:
		if len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]) {
			return errorf(505, "only HTTP/1.0 and HTTP/1.1 are served over this connection")
		}
		return errorf(400, "malformed HTTP version")
	}
	r.Target = str(target)
	return r.parseTarget()
}

// parseTarget sorts the target into its form and finds its origin-form
// part and, for an absolute-form target, its authority.
func (r *Request) parseTarget() error {
	t := r.Target
	switch {
	case t[0] == '/':
		r.Form, r.URI = OriginForm, t
	case r.Method == "CONNECT": // "*" too is an authority to CONNECT
		if !validAuthority(t) {
			return errorf(400, "malformed request target")
		}
		r.Form, r.Host = AuthorityForm, t
	case t == "*":
		r.Form = AsteriskForm
	case hasScheme(t, "http://") || hasScheme(t, "https://"):
		r.Form = AbsoluteForm
		rest := t[strings.IndexByte(t, ':')+3:]
		i := strings.IndexAny(rest, "/?")
		if i < 0 {
			i = len(rest)
		}
		auth := rest[:i]
		if !validAuthority(auth) {
			return errorf(400, "invalid authority in the request target")
		}
		r.Host = auth
		switch {
		case i == len(rest):
			r.URI = "/"
		case rest[i] == '?':
			return errorf(400, "an absolute request target without a path before its query")
		default:
			r.URI = rest[i:]
		}
	default:
		return errorf(400, "malformed request target")
	}
	if r.URI != "" && !validEscapes(r.URI) {
		return errorf(400, "invalid escape in the request target's path")
	}
	return nil
}

// validAuthority reports whether a target's authority is a host and an
// optional port: a name or IPv4 address, or an IPv6 literal in brackets,
// and digits after a colon. No user information, no escapes.
func validAuthority(a string) bool {
	host, port := a, ""
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		for i := 1; i < end; i++ {
			if c := a[i]; !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		host, port = a[:end+1], a[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
	} else {
		if i := strings.IndexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i:]
		}
		for j := 0; j < len(host); j++ {
			if c := host[j]; !hostByte[c] || c == '%' || c == '[' || c == ']' {
				return false
			}
		}
	}
	if port != "" {
		for j := 1; j < len(port); j++ {
			if !isDigit(port[j]) {
				return false
			}
		}
	}
	return host != "" && host != "[]"
}

// validEscapes reports whether every '%' in the path of uri (before any
// '?') starts an escape of two hex digits. Queries are not checked: their
// syntax is the application's.
func validEscapes(uri string) bool {
	for i := 0; i < len(uri) && uri[i] != '?'; i++ {
		if uri[i] == '%' && (i+2 >= len(uri) || !isHex(uri[i+1]) || !isHex(uri[i+2])) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func hasScheme(t, scheme string) bool {
	return len(t) >= len(scheme) && Is(t[:len(scheme)], scheme)
}

// method2string returns the common methods as constants, so that a
// request's method outlives its buffer for free.
func method2string(m []byte) string {
	for _, k := range [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		if string(m) == k {
			return k
		}
	}
	return str(m)
}

// ValidHost reports whether a Host value holds only the bytes of a host,
// an IP literal and a port (RFC 3986, 3.2.2), percent escapes included.
func ValidHost(v string) bool {
	for i := 0; i < len(v); i++ {
		if !hostByte[v[i]] {
			return false
		}
	}
	return true
}

var hostByte = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%") {
		t[c] = true
	}
	return t
}()
