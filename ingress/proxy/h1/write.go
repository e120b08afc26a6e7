package h1

import (
	"net/http"
	"strconv"
)

// AppendRequestHead appends a request head to b: the request line, Host,
// the fields, and Content-Length when length >= 0. The fields are written
// as given: the caller has decided which to send.
func AppendRequestHead(b []byte, method, target, host string, fields []Field, length int64) []byte {
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	b = AppendFields(b, fields)
	if length >= 0 {
		b = AppendLength(b, length)
	}
	return append(b, "\r\n"...)
}

// Connection options a response head can end with.
const (
	KeepAlive = "keep-alive"
	Close     = "close"
)

// AppendResponseHead appends a response head to b: the status line of
// HTTP/1.minor, the fields, then its framing: Content-Length when length >=
// 0, Transfer-Encoding: chunked when chunked, and a Connection field when
// connection is not "".
func AppendResponseHead(b []byte, minor, status int, reason string, fields []Field, length int64, chunked bool, connection string) []byte {
	if minor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\n"...)
	b = AppendFields(b, fields)
	if length >= 0 {
		b = AppendLength(b, length)
	}
	if chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if connection != "" {
		b = append(b, "Connection: "...)
		b = append(b, connection...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// AppendFields appends "name: value" lines.
func AppendFields(b []byte, fields []Field) []byte {
	for _, f := range fields {
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	return b
}

// AppendLength appends a Content-Length field.
func AppendLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// AppendChunk appends data as one chunk; empty data appends nothing (an
// empty chunk would end the body).
func AppendChunk(b, data []byte) []byte {
	if len(data) == 0 {
		return b
	}
	b = strconv.AppendInt(b, int64(len(data)), 16)
	b = append(b, "\r\n"...)
	b = append(b, data...)
	return append(b, "\r\n"...)
}

// AppendLastChunk appends the last chunk and, after it, the trailer
// fields and the end of the body.
func AppendLastChunk(b []byte, trailers []Field) []byte {
	b = append(b, "0\r\n"...)
	b = AppendFields(b, trailers)
	return append(b, "\r\n"...)
}

// StatusText is the reason phrase the proxy writes for its own answers
// and for endpoints' answers that came without one.
func StatusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	if code == 499 {
		return "Client Closed Request" // nginx's
	}
	return "Status " + strconv.Itoa(code)
}
