package h1

import "strconv"

// Response is a parsed response head. Its strings point into the bytes it
// was parsed from.
type Response struct {
	Status int
	Reason string
	Minor  int
	// Fields are the header fields but Content-Length and
	// Transfer-Encoding, which the codec frames (see Request.Fields).
	Fields []Field
	// Length is the Content-Length, -1 when the body is chunked or runs
	// until the connection ends.
	Length  int64
	Chunked bool
	// Close: the endpoint ends the connection after this response, or
	// may not be trusted to keep it.
	Close     bool
	ConnNames bool // Connection names other fields, hop-by-hop too
	Date      bool // a Date field is among Fields
	// Upgrade is the Upgrade field's value when Connection lists
	// "upgrade".
	Upgrade string
}

// NoBody reports whether a response to method with status has no body,
// whatever its head says (RFC 9112, 6.3).
func NoBody(method string, status int) bool {
	return method == "HEAD" || status < 200 || status == 204 || status == 304
}

// SentLength is the Content-Length a proxy passes on with r, or -1 for
// none: an informational answer, a 204 and a 304 carry none (RFC 9110,
// 8.6; nginx drops it from a 304 too), whatever the endpoint said; any
// other answer, to HEAD too, the endpoint's.
func (r *Response) SentLength() int64 {
	if r.Status < 200 || r.Status == 204 || r.Status == 304 {
		return -1
	}
	return r.Length
}

// ErrResponseTooLarge is a response head over the size given to the
// parser.
var ErrResponseTooLarge = errorf(502, "the response headers are too large")

// ParseResponse parses the response head at the start of b into r, as
// ParseRequest does a request head. Errors are *Error with status 502.
func ParseResponse(b []byte, max int, r *Response) (int, error) {
	start, end, err := findHead(b, max)
	if err == ErrHeadTooLarge {
		return 0, ErrResponseTooLarge
	}
	if end == 0 {
		return 0, nil
	}
	if err := parseResponse(b[start:end], r); err != nil {
		return 0, err
	}
	return end, nil
}

func bad(what string) *Error { return errorf(502, "malformed response: "+what) }

func parseResponse(b []byte, r *Response) error {
	*r = Response{Fields: r.Fields[:0], Length: -1}
	line, rest := nextLine(b)
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return bad("status line")
	}
	r.Minor = int(line[7] - '0')
	for _, c := range line[9:12] {
		if !isDigit(c) {
			return bad("status code")
		}
		r.Status = r.Status*10 + int(c-'0')
	}
	if r.Status < 100 {
		return bad("status code")
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return bad("status line")
		}
		for _, c := range line[13:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return bad("status line")
			}
		}
		r.Reason = str(line[13:])
	}
	hasLength, length := false, ""
	var conn connOptions
	var upgrade string
	for {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break
		}
		f, ok := parseField(line)
		if !ok {
			return bad(fieldError(line))
		}
		switch {
		case Is(f.Name, "Content-Length"):
			// Repeated, only as the very same value (as net/http's client
			// reads it: "2" and "02" are two lengths).
			n, ok := parseLength(f.Value)
			if !ok || hasLength && f.Value != length {
				return bad("Content-Length")
			}
			r.Length, hasLength, length = n, true, f.Value
			continue
		case Is(f.Name, "Transfer-Encoding"):
			// Chunked alone, as net/http's client: anything else could be
			// framed otherwise by the client. HTTP/1.0 has none (RFC
			// 9112, 6.1).
			if r.Chunked || !Is(f.Value, "chunked") || r.Minor == 0 {
				return bad("Transfer-Encoding " + strconv.Quote(f.Value))
			}
			r.Chunked = true
			continue
		case Is(f.Name, "Connection"):
			conn.read(f.Value)
		case Is(f.Name, "Upgrade"):
			if upgrade == "" {
				upgrade = f.Value
			}
		case Is(f.Name, "Date"):
			r.Date = true
		}
		if len(r.Fields) == MaxFields {
			return ErrResponseTooLarge
		}
		r.Fields = append(r.Fields, f)
	}
	r.Close = conn.close || r.Minor == 0 && !conn.keepAlive
	r.ConnNames = conn.names
	if conn.upgrade {
		r.Upgrade = upgrade
	}
	if r.Chunked {
		// With both, chunked decides, and the connection is not trusted
		// further (RFC 9112, 6.3).
		r.Close = r.Close || hasLength
		r.Length = -1
	}
	return nil
}
