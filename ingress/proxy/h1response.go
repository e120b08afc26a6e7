package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// An endpoint's response head is parsed in place like a request's (see
// h1parse.go), into the upstream connection's own buffer, and its body is
// relayed by the functions below without an intermediate reader.

// resHead is a parsed response head. Its strings are valid until the next
// response is read on the upstream connection.
type resHead struct {
	status int
	reason string
	// fields are the header fields but Content-Length, which the proxy
	// writes itself (see reqHead.fields).
	fields []field
	// length is the Content-Length; -1 when the body is chunked or runs
	// until the endpoint closes.
	length  int64
	chunked bool
	// close: the endpoint closes the connection after this response, or
	// may not be trusted to keep it.
	close     bool
	connNames bool // Connection names other fields, hop-by-hop too
	date      bool // the endpoint sent a Date
}

// errBadResponse: the endpoint's answer is not HTTP/1.x the proxy relays.
type errBadResponse string

func (e errBadResponse) Error() string { return "malformed response from the endpoint: " + string(e) }

// readResponseHead reads and parses the next response head from br into
// buf, skipping 1xx informational responses other than 101.
func readResponseHead(br *bufio.Reader, buf []byte, h *resHead) ([]byte, error) {
	for {
		var err error
		buf, err = readLines(br, buf, maxResponseHeaderBytes)
		if err == errTooLarge {
			return buf, errHeadersTooLarge
		}
		if err != nil {
			return buf, err
		}
		if err := parseResponseHead(buf, h); err != nil {
			return buf, err
		}
		if h.status >= 200 || h.status == 101 {
			return buf, nil
		}
	}
}

// parseResponseHead parses "HTTP/1.x NNN reason" and the fields after it.
func parseResponseHead(b []byte, h *resHead) error {
	*h = resHead{fields: h.fields[:0], length: -1}
	line, rest := nextLine(b)
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return errBadResponse("status line")
	}
	minor := int(line[7] - '0')
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse("status code")
		}
		h.status = h.status*10 + int(c-'0')
	}
	if h.status < 100 {
		return errBadResponse("status code")
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return errBadResponse("status line")
		}
		for _, c := range line[13:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return errBadResponse("status line")
			}
		}
		h.reason = str(line[13:])
	}
	hasLength, keepAlive := false, false
	for {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break
		}
		f, err := parseField(line)
		if err != nil {
			return errBadResponse(err.Error())
		}
		switch {
		case is(f.name, "Content-Length"):
			n, ok := parseLength(f.value)
			if !ok || hasLength && n != h.length {
				return errBadResponse("Content-Length")
			}
			h.length, hasLength = n, true
			continue
		case is(f.name, "Transfer-Encoding"):
			// net/http's client, which this replaces, supports chunked
			// alone too.
			// HTTP/1.0 has none: faulty framing (RFC 9112, 6.1).
			if h.chunked || !is(f.value, "chunked") || minor == 0 {
				return errBadResponse("Transfer-Encoding " + strconv.Quote(f.value))
			}
			h.chunked = true
		case is(f.name, "Connection"):
			connection(f.value, &h.close, &keepAlive, &h.connNames)
		case is(f.name, "Date"):
			h.date = true
		}
		h.fields = append(h.fields, f)
	}
	if h.chunked {
		// With both, chunked decides, and the connection is not trusted
		// further (RFC 9112, 6.3).
		h.close = h.close || hasLength
		h.length = -1
	}
	if minor == 0 && !keepAlive {
		h.close = true
	}
	return nil
}

// noResponseBody reports whether a response to method with status has no body,
// whatever its head says (RFC 9112, 6.3).
func noResponseBody(method string, status int) bool {
	return method == "HEAD" || status < 200 || status == 204 || status == 304
}

// errClientGone: writing to the client failed; there is nobody to answer.
var errClientGone = errors.New("the client went away")

// relay copies a response body from an endpoint to a client. Before every
// read that would wait for the endpoint, what the client is owed is
// flushed: streams reach it as they come, small answers in one write.
type relay struct {
	dst *bufio.Writer
	src *bufio.Reader
}

// fill makes src hold at least one byte, flushing dst before it waits. It
// returns io.EOF only at a clean end of input.
func (r relay) fill() error {
	if r.src.Buffered() > 0 {
		return nil
	}
	if r.dst.Buffered() > 0 {
		if err := r.dst.Flush(); err != nil {
			return errClientGone
		}
	}
	_, err := r.src.Peek(1)
	return err
}

// copyN copies exactly n bytes.
func (r relay) copyN(n int64) error {
	for n > 0 {
		if err := r.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		b, _ := r.src.Peek(int(min(n, int64(r.src.Buffered()))))
		if _, err := r.dst.Write(b); err != nil {
			return errClientGone
		}
		_, _ = r.src.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// copyToEOF copies until the endpoint closes, as chunks when chunk is set.
func (r relay) copyToEOF(chunk bool) error {
	for {
		if err := r.fill(); err == io.EOF {
			if chunk {
				return r.write("0\r\n\r\n")
			}
			return nil
		} else if err != nil {
			return err
		}
		n := r.src.Buffered()
		if chunk {
			if err := r.chunkHeader(int64(n)); err != nil {
				return err
			}
		}
		if err := r.copyN(int64(n)); err != nil {
			return err
		}
		if chunk {
			if err := r.write("\r\n"); err != nil {
				return err
			}
		}
	}
}

// copyChunked decodes a chunked body; when chunk is set it is sent on as
// chunks of the same sizes, with its trailer fields, else as plain bytes.
func (r relay) copyChunked(chunk bool) error {
	for {
		size, err := r.chunkSize()
		if err != nil {
			return err
		}
		if size == 0 {
			return r.trailers(chunk)
		}
		if chunk {
			if err := r.chunkHeader(size); err != nil {
				return err
			}
		}
		if err := r.copyN(size); err != nil {
			return err
		}
		if err := r.crlf(); err != nil {
			return err
		}
		if chunk {
			if err := r.write("\r\n"); err != nil {
				return err
			}
		}
	}
}

// chunkSize reads a chunk-size line: hex digits, then optional blanks and
// either the line's end or a chunk extension, which is ignored. Anything
// else is refused: a size read more leniently than the client reads it
// would frame the body differently.
func (r relay) chunkSize() (int64, error) {
	if err := r.fill(); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	line, err := r.src.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return 0, errBadResponse("chunk size line")
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	var size int64
	digits := 0
	for i, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			rest := bytes.TrimLeft(line[i:], " \t")
			if digits == 0 || !(len(rest) > 0 && rest[0] == ';' || string(rest) == "\r\n" || string(rest) == "\n") {
				return 0, errBadResponse("chunk size line")
			}
			return size, nil
		}
		if digits++; digits > 15 {
			return 0, errBadResponse("chunk size too large")
		}
		size = size<<4 | int64(d)
	}
	return 0, errBadResponse("chunk size line")
}

// crlf reads the line end after a chunk's data.
func (r relay) crlf() error {
	if err := r.fill(); err != nil {
		return io.ErrUnexpectedEOF
	}
	line, err := r.src.ReadSlice('\n')
	if err != nil || len(line) > 2 || len(line) == 2 && line[0] != '\r' {
		return errBadResponse("chunk data")
	}
	return nil
}

// trailers reads the trailer section and, when chunk is set, ends the
// client's chunked body with the trailer fields that are not hop-by-hop.
func (r relay) trailers(chunk bool) error {
	if chunk {
		if err := r.write("0\r\n"); err != nil {
			return err
		}
	}
	for n := 0; ; n++ {
		if err := r.fill(); err != nil {
			return io.ErrUnexpectedEOF
		}
		line, err := r.src.ReadSlice('\n')
		if err != nil || n > maxFields {
			return errBadResponse("trailer section")
		}
		line, _ = nextLine(line)
		if len(line) == 0 {
			if chunk {
				return r.write("\r\n")
			}
			return nil
		}
		f, err := parseField(line)
		if err != nil {
			return errBadResponse("trailer section: " + err.Error())
		}
		if chunk && !hopByHopField(f.name) && !is(f.name, "Content-Length") {
			r.dst.WriteString(f.name)
			r.dst.WriteString(": ")
			r.dst.WriteString(f.value)
			if err := r.write("\r\n"); err != nil {
				return err
			}
		}
	}
}

func (r relay) chunkHeader(n int64) error {
	var b [20]byte
	h := strconv.AppendInt(b[:0], n, 16)
	h = append(h, '\r', '\n')
	if _, err := r.dst.Write(h); err != nil {
		return errClientGone
	}
	return nil
}

func (r relay) write(s string) error {
	if _, err := r.dst.WriteString(s); err != nil {
		return errClientGone
	}
	return nil
}

// hopByHopField is hopByHop for a field name in any case.
func hopByHopField(name string) bool {
	switch len(name) {
	case 2:
		return is(name, "Te")
	case 7:
		return is(name, "Trailer") || is(name, "Upgrade")
	case 10:
		return is(name, "Connection") || is(name, "Keep-Alive")
	case 16:
		return is(name, "Proxy-Connection")
	case 17:
		return is(name, "Transfer-Encoding")
	case 18:
		return is(name, "Proxy-Authenticate")
	case 19:
		return is(name, "Proxy-Authorization")
	}
	return false
}
