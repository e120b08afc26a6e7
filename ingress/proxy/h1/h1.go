// Package h1 is Portico's HTTP/1.x codec. It finds and parses request and
// response heads in byte slices, reads a message body's framing (a length,
// chunks, or the end of the connection) piece by piece, and appends heads
// and chunks to byte slices. It does no I/O and keeps no buffer: the
// proxy's front-ends read and write, and call it on what they hold, so the
// event loops, the goroutine loop and the net/http adapter frame messages
// by the same rules.
//
// Parsed heads point into the caller's bytes: their strings stay valid for
// as long as those bytes are not overwritten. That is how a request is
// parsed and served with no allocation.
//
// The parser is strict wherever leniency has let one message hide in
// another between two HTTP implementations (RFC 9112, 6.3 and 11.2): it
// refuses Content-Length together with Transfer-Encoding, repeated or
// malformed Content-Length, Transfer-Encoding other than chunked alone or
// in HTTP/1.0, obsolete line folding, whitespace before a field's colon,
// control bytes in names and values, bare CRs, a missing or repeated Host
// in HTTP/1.1, and chunk-size lines that another parser could read
// otherwise. A line may end with CRLF or with LF alone (RFC 9112, 2.2).
package h1

import (
	"bytes"
	"unsafe"
)

// Field is one header or trailer field, as received.
type Field struct{ Name, Value string }

// MaxFields bounds the fields of a head or a trailer section: more are a
// head too large.
const MaxFields = 256

// Error is a message the codec refuses, with the status a server answers
// it with (400, 417, 431, 501, 505).
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

func errorf(status int, reason string) *Error { return &Error{status, reason} }

// ErrHeadTooLarge is a head over the size given to the parser, or with more
// than MaxFields fields.
var ErrHeadTooLarge = errorf(431, "the request's headers are too large")

// findHead finds the head at the start of b: it skips empty lines before
// it (RFC 9112, 2.2) and ends at the first empty line. It returns where the
// head starts and where it ends, end 0 when b holds no complete head yet.
// A head over max bytes, or more than MaxFields+2 lines (empty ones
// before the head included), is ErrHeadTooLarge as soon as b shows it.
func findHead(b []byte, max int) (start, end int, err error) {
	lines := 0
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			if len(b)-start > max {
				return 0, 0, ErrHeadTooLarge
			}
			return 0, 0, nil
		}
		line := b[i : i+j+1]
		i += j + 1
		if i-start > max {
			return 0, 0, ErrHeadTooLarge
		}
		if lines++; lines > MaxFields+2 { // request line, fields, end; or blank lines before
			return 0, 0, ErrHeadTooLarge
		}
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			if i-len(line) == start { // an empty line before the head
				start = i
				continue
			}
			return start, i, nil
		}
	}
}

// nextLine splits the first line off b, without its line end. A CR is
// only allowed right before the LF: a bare CR elsewhere is reported by
// the field and line parsers, which refuse control bytes.
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

// parseField parses "name: value", its line end removed.
func parseField(line []byte) (Field, bool) {
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return Field{}, false // obsolete line folding, or nothing
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return Field{}, false
	}
	for _, c := range line[:colon] {
		if !tokenByte[c] {
			return Field{}, false
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
			return Field{}, false
		}
	}
	return Field{str(line[:colon]), str(v)}, true
}

// parseLength parses a Content-Length value: digits only, no sign, no
// list, at most 18 digits.
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

// connection reads the options of a Connection field into c: close,
// keep-alive, upgrade, and whether it names other fields (which are then
// hop-by-hop too). A head may have several Connection fields, so flags
// are only ever set.
func (c *connOptions) read(value string) {
	for v := value; v != ""; {
		var t string
		t, v = CutList(v)
		switch {
		case t == "":
		case Is(t, "close"):
			c.close = true
		case Is(t, "keep-alive"):
			c.keepAlive = true
		case Is(t, "upgrade"):
			c.upgrade = true
		default:
			c.names = true
		}
	}
}

type connOptions struct{ close, keepAlive, upgrade, names bool }

// Is reports whether the field name or token s is canon, ignoring ASCII
// case.
func Is(s, canon string) bool {
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

// CutList splits the first element off a comma-separated field value,
// trimmed of blanks.
func CutList(v string) (elem, rest string) {
	i := 0
	for i < len(v) && v[i] != ',' {
		i++
	}
	elem = v[:i]
	if i < len(v) {
		rest = v[i+1:]
	}
	for len(elem) > 0 && (elem[0] == ' ' || elem[0] == '\t') {
		elem = elem[1:]
	}
	for len(elem) > 0 && (elem[len(elem)-1] == ' ' || elem[len(elem)-1] == '\t') {
		elem = elem[:len(elem)-1]
	}
	return elem, rest
}

// HasToken reports whether the comma-separated value v lists token,
// ignoring case.
func HasToken(v, token string) bool {
	for v != "" {
		var t string
		t, v = CutList(v)
		if Is(t, token) {
			return true
		}
	}
	return false
}

// Listed reports whether a field named list among fields (Connection, say)
// names token.
func Listed(fields []Field, list, token string) bool {
	for _, f := range fields {
		if Is(f.Name, list) && HasToken(f.Value, token) {
			return true
		}
	}
	return false
}

// ValidToken reports whether s is a non-empty token (RFC 9110, 5.6.2): a
// method or a field name.
func ValidToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return s != ""
}

// ValidValue reports whether s may be sent as a field value: no control
// bytes but HTAB, no leading or trailing blank.
func ValidValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return s == "" || s[0] != ' ' && s[0] != '\t' && s[len(s)-1] != ' ' && s[len(s)-1] != '\t'
}

var tokenByte = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// str returns b as a string without copying: it is valid while b's
// storage is not reused (see the package comment).
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
