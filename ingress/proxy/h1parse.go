package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"unsafe"
)

// The fast HTTP/1.x loop (h1server.go) parses request heads itself, in
// place: the head's bytes are copied once into a buffer the connection
// keeps, and the method, target, Host and every field are strings pointing
// into that buffer. Nothing is allocated per request on the common path,
// and nothing survives the next request on the connection: what must (the
// Record given to Observe) is copied.
//
// The parser is strict where leniency has let requests be smuggled past
// proxies (RFC 9112, 6.3 and 11.2): it refuses Content-Length together with
// Transfer-Encoding, repeated or malformed Content-Length, obsolete line
// folding, whitespace before a field's colon, control bytes in names and
// values, a missing or repeated Host. A request it parses but the fast loop
// does not serve (Upgrade, Expect, a chunked body, an unusual method or
// target or version) is handed, bytes and all, to net/http.

// field is one header field of a request or response, as received.
type field struct{ name, value string }

// maxFields bounds the header fields of a request or response head; more
// get 431 (requests) or 502 (responses).
const maxFields = 256

// reqHead is a parsed request head. Its strings are valid until the next
// head is read on the connection.
type reqHead struct {
	method string // interned: a constant string
	target string // the request target as sent, origin form
	path   string // target up to '?', still escaped
	minor  int    // HTTP/1.minor, 0 or 1
	host   string
	// length is the Content-Length of the body, 0 when none; hasLength
	// tells a Content-Length of 0 from none.
	length    int64
	hasLength bool
	// fields are the header fields but Host and Content-Length, which
	// the proxy writes upstream itself: no field list, not even
	// Connection naming them, can make it drop or change them.
	fields []field
	// close: the connection ends after the response (Connection: close,
	// or HTTP/1.0 without keep-alive).
	close bool
	// connNames: Connection names fields other than close and keep-alive,
	// which are then hop-by-hop too.
	connNames bool
	// handoff: a well-formed request the fast loop leaves to net/http.
	handoff bool
}

// headError is a request the proxy refuses: it answers code and closes
// the connection.
type headError struct {
	code   int
	reason string
}

func (e *headError) Error() string { return e.reason }

func badRequest(reason string) *headError { return &headError{400, reason} }

var errHeadTooLarge = &headError{431, "the request's headers are too large"}

// readHead reads the next request head from br into buf (reusing its
// storage, and no more than max bytes of it) and parses it into h. It
// returns the buffer holding the head's bytes exactly as they were
// received, less any empty lines before the request line. Errors are
// *headError, or read errors from br.
func readHead(br *bufio.Reader, buf []byte, max int, h *reqHead) ([]byte, error) {
	buf, err := readLines(br, buf, max)
	if err == errTooLarge {
		return buf, errHeadTooLarge
	}
	if err != nil {
		return buf, err
	}
	return buf, parseHead(buf, h)
}

var errTooLarge = errors.New("head too large")

// readLines reads lines from br into buf until an empty line, skipping
// empty lines before the first (RFC 9112, 2.2). More than max bytes or
// maxFields+2 lines (first line, fields, end) is errTooLarge; an end of input inside the head is
// io.ErrUnexpectedEOF.
func readLines(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	buf = buf[:0]
	lines := 0
	for {
		start := len(buf)
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull { // a line longer than br's buffer
			if len(buf)+len(line) > max {
				return buf, errTooLarge
			}
			buf = append(buf, line...)
			line, err = br.ReadSlice('\n')
		}
		if len(buf)+len(line) > max {
			return buf, errTooLarge
		}
		buf = append(buf, line...)
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
		if lines++; lines > maxFields+2 {
			return buf, errTooLarge
		}
		l := buf[start:]
		if len(l) == 1 || len(l) == 2 && l[0] == '\r' { // an empty line
			if start == 0 {
				buf = buf[:0]
				continue
			}
			return buf, nil
		}
	}
}

// parseHead parses a complete request head, ending with its empty line.
func parseHead(b []byte, h *reqHead) error {
	*h = reqHead{fields: h.fields[:0]}
	line, rest := nextLine(b)
	if err := parseRequestLine(line, h); err != nil {
		return err
	}
	hosts, te, hasLength := 0, false, false
	keepAlive := false
	for {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break
		}
		f, err := parseField(line)
		if err != nil {
			return err
		}
		switch {
		case is(f.name, "Host"):
			if hosts++; hosts > 1 {
				return badRequest("more than one Host header")
			}
			if !validHost(f.value) {
				return badRequest("invalid Host header")
			}
			h.host = f.value
			continue // sent upstream apart, not as a field
		case is(f.name, "Content-Length"):
			if hasLength {
				return badRequest("more than one Content-Length header")
			}
			n, ok := parseLength(f.value)
			if !ok {
				return badRequest("invalid Content-Length header")
			}
			h.length, hasLength = n, true
			continue
		case is(f.name, "Transfer-Encoding"):
			te = true
		case is(f.name, "Connection"):
			connection(f.value, &h.close, &keepAlive, &h.connNames)
		case is(f.name, "Upgrade"), is(f.name, "Expect"):
			h.handoff = true
		}
		h.fields = append(h.fields, f)
	}
	switch {
	case te && hasLength:
		return badRequest("both Content-Length and Transfer-Encoding")
	case te && h.minor == 0:
		// Faulty framing (RFC 9112, 6.1): HTTP/1.0 has no
		// Transfer-Encoding, and net/http would read no body at all.
		return badRequest("Transfer-Encoding in an HTTP/1.0 request")
	case hosts == 0 && h.minor == 1:
		return badRequest("missing Host header")
	}
	if te {
		h.handoff = true // a chunked body: net/http decodes it
	}
	h.hasLength = hasLength
	if h.minor == 0 && !keepAlive {
		h.close = true
	}
	return nil
}

// parseRequestLine parses "METHOD SP target SP HTTP/1.x". A request line
// net/http may know better what to do with (another version, a target not
// in origin form, a method the fast loop does not serve) marks the head
// for hand-off rather than failing.
func parseRequestLine(line []byte, h *reqHead) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return badRequest("malformed request line")
	}
	sp2 := sp1 + 1 + bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= sp1+1 {
		return badRequest("malformed request line")
	}
	method, target, version := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	for _, c := range method {
		if !isToken(c) {
			return badRequest("malformed request line")
		}
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return badRequest("malformed request target")
		}
	}
	switch string(version) {
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
		h.minor = 0
	default:
		// Another version, well formed: net/http answers it.
		if len(version) != 8 || string(version[:5]) != "HTTP/" || !isDigit(version[5]) || version[6] != '.' || !isDigit(version[7]) {
			return badRequest("malformed HTTP version")
		}
		h.handoff = true
	}
	h.method = fastMethod(method)
	if h.method == "" {
		h.method = str(method)
		h.handoff = true
	}
	h.target = str(target)
	if target[0] != '/' {
		h.handoff = true // absolute form, "*", CONNECT's authority
	}
	h.path = h.target
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		h.path = h.target[:i]
	}
	return nil
}

// fastMethod returns the methods the fast loop serves as constants, so
// that a request's method outlives its buffer for free; "" for others.
func fastMethod(m []byte) string {
	for _, k := range [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		if string(m) == k {
			return k
		}
	}
	return ""
}

// parseField parses "name: value" with the line ending removed.
func parseField(line []byte) (field, error) {
	if line[0] == ' ' || line[0] == '\t' {
		return field{}, badRequest("obsolete line folding in the headers")
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return field{}, badRequest("malformed header line")
	}
	for _, c := range line[:colon] {
		if !isToken(c) {
			return field{}, badRequest("invalid header name")
		}
	}
	v := line[colon+1:]
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return field{}, badRequest("invalid header value")
		}
	}
	return field{str(line[:colon]), str(v)}, nil
}

// nextLine splits off the first line of b, without its CRLF or LF.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// parseLength parses a Content-Length value: digits only, no sign, no list.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// is reports whether the field name or token s is canon, ignoring ASCII
// case.
func is(s, canon string) bool {
	if len(s) != len(canon) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != lower(canon[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// connection reads the options of a Connection field into the flags it
// sets: close, keep-alive, and whether it names other fields (which are
// then hop-by-hop too). A head may have several Connection fields, so
// flags are only ever set.
func connection(value string, close, keepAlive, names *bool) {
	for v := value; v != ""; {
		var t string
		t, v = cutComma(v)
		switch {
		case t == "":
		case is(t, "close"):
			*close = true
		case is(t, "keep-alive"):
			*keepAlive = true
		default:
			*names = true
		}
	}
}

// cutComma splits the first element off a comma-separated list value,
// trimmed of spaces.
func cutComma(v string) (t, rest string) {
	i := 0
	for i < len(v) && v[i] != ',' {
		i++
	}
	t = v[:i]
	if i < len(v) {
		rest = v[i+1:]
	}
	for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
		t = t[1:]
	}
	for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
		t = t[:len(t)-1]
	}
	return t, rest
}

// validHost reports whether a Host value holds only the bytes of a host,
// an IP literal and a port (RFC 3986, 3.2.2), percent escapes included.
func validHost(v string) bool {
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

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isToken reports a byte allowed in a method or field name (RFC 9110, 5.6.2).
func isToken(c byte) bool { return tokenByte[c] }

var tokenByte = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

// str returns b as a string without copying: it is valid while b's
// storage is not reused, which the parser's callers guarantee for the
// life of one request.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
