package h1

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     Request
		n        int // bytes taken; 0: the whole input
	}{
		{name: "plain", in: "GET /a?b=c HTTP/1.1\r\nHost: x.example\r\nX-A: 1\r\n\r\n", want: Request{
			Method: "GET", Target: "/a?b=c", URI: "/a?b=c", Host: "x.example", Minor: 1, Fields: []Field{{"X-A", "1"}}}},
		{name: "LF only, blank lines first", in: "\r\n\nGET / HTTP/1.1\nHost: x\n\n", want: Request{
			Method: "GET", Target: "/", URI: "/", Host: "x", Minor: 1}},
		{name: "HTTP/1.0 closes", in: "GET / HTTP/1.0\r\n\r\n", want: Request{
			Method: "GET", Target: "/", URI: "/", Close: true}},
		{name: "HTTP/1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", want: Request{
			Method: "GET", Target: "/", URI: "/", Fields: []Field{{"Connection", "Keep-Alive"}}}},
		{name: "length and what follows", in: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET", n: 47, want: Request{
			Method: "POST", Target: "/", URI: "/", Host: "x", Minor: 1, Length: 3, HasLength: true}},
		{name: "chunked", in: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", want: Request{
			Method: "POST", Target: "/", URI: "/", Host: "x", Minor: 1, Chunked: true}},
		{name: "absolute form", in: "GET HTTP://Other.example:81/p?q HTTP/1.1\r\nHost: x\r\n\r\n", want: Request{
			Method: "GET", Target: "HTTP://Other.example:81/p?q", Form: AbsoluteForm, URI: "/p?q", Host: "Other.example:81", Minor: 1}},
		{name: "absolute form without path", in: "GET http://o HTTP/1.1\r\nHost: x\r\n\r\n", want: Request{
			Method: "GET", Target: "http://o", Form: AbsoluteForm, URI: "/", Host: "o", Minor: 1}},
		{name: "asterisk", in: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", want: Request{
			Method: "OPTIONS", Target: "*", Form: AsteriskForm, Host: "x", Minor: 1}},
		{name: "connect", in: "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", want: Request{
			Method: "CONNECT", Target: "x:443", Form: AuthorityForm, Host: "x:443", Minor: 1}},
		{name: "upgrade, named fields, expect", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, X-Priv, close\r\nUpgrade: websocket\r\nExpect: 100-Continue\r\n\r\n", want: Request{
			Method: "GET", Target: "/", URI: "/", Host: "x", Minor: 1, Close: true, ConnNames: true, Upgrade: "websocket", Continue: true,
			Fields: []Field{{"Connection", "Upgrade, X-Priv, close"}, {"Upgrade", "websocket"}, {"Expect", "100-Continue"}}}},
		{name: "upgrade without Connection", in: "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", want: Request{
			Method: "GET", Target: "/", URI: "/", Host: "x", Minor: 1, Fields: []Field{{"Upgrade", "websocket"}}}},
		{name: "blanks around values, empty value", in: "GET / HTTP/1.1\r\nHost:x\r\nA: \t v w \t\r\nB:\r\n\r\n", want: Request{
			Method: "GET", Target: "/", URI: "/", Host: "x", Minor: 1, Fields: []Field{{"A", "v w"}, {"B", ""}}}},
		{name: "odd method, raw UTF-8", in: "PROPFIND /ä HTTP/1.1\r\nHost: x\r\nX: é\r\n\r\n", want: Request{
			Method: "PROPFIND", Target: "/ä", URI: "/ä", Host: "x", Minor: 1, Fields: []Field{{"X", "é"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Request
			n, err := ParseRequest([]byte(c.in), 8<<10, &r)
			if err != nil {
				t.Fatal(err)
			}
			want := c.n
			if want == 0 {
				want = len(c.in)
			}
			if n != want {
				t.Errorf("took %d bytes, want %d", n, want)
			}
			if len(r.Fields) == 0 {
				r.Fields = nil
			}
			if !reflect.DeepEqual(r, c.want) {
				t.Errorf("got  %+v\nwant %+v", r, c.want)
			}
		})
	}
}

func TestParseRequestRefuses(t *testing.T) {
	many := strings.Repeat("X-A: a\r\n", MaxFields+1)
	for _, c := range []struct {
		name, in string
		status   int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", 400},
		{"two CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", 400},
		{"same CL twice", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n", 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\n", 400},
		{"CL sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n", 400},
		{"CL huge", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999999999999\r\n\r\n", 400},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"TE twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\n", 400},
		{"bad name", "GET / HTTP/1.1\r\nHost: x\r\nX(A): a\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
		{"bare CR line end", "GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: x/y\r\n\r\n", 400},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"tab in target", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"target not a path", "GET a HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"authority form without CONNECT", "GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"userinfo", "GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad version", "GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"HTTP/0.9", "GET /\r\n\r\n", 400},
		{"empty method", " / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"expectation", "GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n", 417},
		{"too many fields", "GET / HTTP/1.1\r\nHost: x\r\n" + many + "\r\n", 431},
		{"too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9<<10) + "\r\n\r\n", 431},
		{"too large, incomplete", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9<<10), 431},
		{"blank lines too many", strings.Repeat("\r\n", 5<<10) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 431},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Request
			n, err := ParseRequest([]byte(c.in), 8<<10, &r)
			var e *Error
			if !errors.As(err, &e) || e.Status != c.status || n != 0 {
				t.Errorf("got %d bytes, %v; want a %d", n, err, c.status)
			}
		})
	}
}

func TestParseRequestIncomplete(t *testing.T) {
	in := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for i := range len(in) - 1 {
		var r Request
		if n, err := ParseRequest([]byte(in[:i]), 8<<10, &r); n != 0 || err != nil {
			t.Errorf("%q: %d, %v; want 0 and no error", in[:i], n, err)
		}
	}
}

func TestParseResponse(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     Response
		err      bool
	}{
		{name: "length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: d\r\n\r\n", want: Response{
			Status: 200, Reason: "OK", Minor: 1, Length: 5, Date: true, Fields: []Field{{"Date", "d"}}}},
		{name: "same length twice", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", want: Response{
			Status: 200, Reason: "OK", Minor: 1, Length: 5}},
		{name: "no reason", in: "HTTP/1.1 204\r\n\r\n", want: Response{Status: 204, Minor: 1, Length: -1}},
		{name: "chunked and length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", want: Response{
			Status: 200, Reason: "OK", Minor: 1, Length: -1, Chunked: true, Close: true}},
		{name: "HTTP/1.0", in: "HTTP/1.0 200 OK\r\n\r\n", want: Response{Status: 200, Reason: "OK", Length: -1, Close: true}},
		{name: "upgrade", in: "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade, X-P\r\nUpgrade: websocket\r\n\r\n", want: Response{
			Status: 101, Reason: "Switching Protocols", Minor: 1, Length: -1, Upgrade: "websocket", ConnNames: true,
			Fields: []Field{{"Connection", "upgrade, X-P"}, {"Upgrade", "websocket"}}}},
		{name: "two lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", err: true},
		{name: "TE in HTTP/1.0", in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", err: true},
		{name: "TE gzip", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: true},
		{name: "status", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
		{name: "version", in: "HTTP/2.0 200 OK\r\n\r\n", err: true},
		{name: "obs-fold", in: "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", err: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Response
			n, err := ParseResponse([]byte(c.in), 8<<10, &r)
			if c.err {
				var e *Error
				if !errors.As(err, &e) || e.Status != 502 {
					t.Errorf("got %v, want a 502", err)
				}
				return
			}
			if err != nil || n != len(c.in) {
				t.Fatalf("%d, %v", n, err)
			}
			if len(r.Fields) == 0 {
				r.Fields = nil
			}
			if !reflect.DeepEqual(r, c.want) {
				t.Errorf("got  %+v\nwant %+v", r, c.want)
			}
		})
	}
}

// readBody reads a whole body from in, fed to Body step pieces at a time,
// and returns the data, the trailers, and how much of in it took.
func readBody(length int64, chunked bool, in []byte, step int) (data string, trailers []Field, used int, err error) {
	var b Body
	b.Reset(length, chunked)
	held := 0 // in[used:held] is what the reader has
	for {
		held = min(held+step, len(in))
		for {
			p, n, err := b.Next(in[used:held], held == len(in))
			if err != nil {
				return data, trailers, used, err
			}
			used += n
			switch p.Kind {
			case Data:
				data += string(p.Data)
			case Trailer:
				trailers = append(trailers, Field{strings.Clone(p.Field.Name), strings.Clone(p.Field.Value)})
			case End:
				return data, trailers, used, nil
			}
			if p.Kind == More {
				break
			}
		}
	}
}

func TestBody(t *testing.T) {
	for _, c := range []struct {
		name     string
		length   int64
		chunked  bool
		in       string
		data     string
		trailers []Field
		used     int // 0: the whole input
		err      error
	}{
		{name: "length", length: 5, in: "helloGET", data: "hello", used: 5},
		{name: "empty", length: 0, in: "GET", data: "", used: -1},
		{name: "short", length: 9, in: "hello", err: io.ErrUnexpectedEOF},
		{name: "until close", length: -1, in: "all of it", data: "all of it"},
		{name: "chunks", chunked: true, in: "5\r\nhello\r\n1;ext=\"v\"\r\n!\r\n0\r\n\r\nnext", data: "hello!", used: 29},
		{name: "upper hex", chunked: true, in: "A\r\nabcdefghij\r\n0\r\n\r\n", data: "abcdefghij"},
		{name: "LF alone after size", chunked: true, in: "5\nhello\r\n0\r\n\r\n", err: ErrChunk},
		{name: "LF alone after data", chunked: true, in: "5\r\nhello\n0\r\n\r\n", err: ErrChunk},
		{name: "LF alone ends trailers", chunked: true, in: "0\r\n\n", err: ErrChunk},
		{name: "blank after size", chunked: true, in: "5 \t\r\nhello\r\n0\r\n\r\n", data: "hello"},
		{name: "trailers", chunked: true, in: "2\r\nok\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", data: "ok", trailers: []Field{{"X-Sum", "1"}, {"X-B", "2"}}},
		{name: "junk after size", chunked: true, in: "5 0\r\nhello\r\n0\r\n\r\n", err: ErrChunk},
		{name: "no digits", chunked: true, in: ";x\r\nhello\r\n0\r\n\r\n", err: ErrChunk},
		{name: "size then CR alone", chunked: true, in: "5\rX\r\nhello\r\n0\r\n\r\n", err: ErrChunk},
		{name: "CR in extension", chunked: true, in: "5;a\rb\r\nhello\r\n0\r\n\r\n", err: ErrChunk},
		{name: "data too long", chunked: true, in: "2\r\nhello\r\n0\r\n\r\n", err: ErrChunk},
		{name: "size too large", chunked: true, in: "1000000000000000\r\n", err: ErrChunk},
		{name: "negative", chunked: true, in: "-1\r\n", err: ErrChunk},
		{name: "cut", chunked: true, in: "5\r\nhel", err: io.ErrUnexpectedEOF},
		{name: "no end", chunked: true, in: "0\r\n", err: io.ErrUnexpectedEOF},
		{name: "bad trailer", chunked: true, in: "0\r\n bad\r\n\r\n", err: ErrChunk},
		{name: "long line", chunked: true, in: "1;" + strings.Repeat("x", MaxLine) + "\r\nx\r\n0\r\n\r\n", err: ErrChunk},
	} {
		for _, step := range []int{1, 2, 3, 7, 1 << 20} {
			data, trailers, used, err := readBody(c.length, c.chunked, []byte(c.in), step)
			if !errors.Is(err, c.err) {
				t.Errorf("%s, %d bytes at a time: error %v, want %v", c.name, step, err, c.err)
				continue
			}
			if err != nil {
				continue
			}
			want := c.used
			switch want {
			case 0:
				want = len(c.in)
			case -1:
				want = 0
			}
			if data != c.data || !reflect.DeepEqual(trailers, c.trailers) || used != want {
				t.Errorf("%s, %d bytes at a time: %q %v, took %d; want %q %v, %d", c.name, step, data, trailers, used, c.data, c.trailers, want)
			}
		}
	}
}

func TestAppend(t *testing.T) {
	b := AppendRequestHead(nil, "GET", "/a", "x", []Field{{"A", "1"}}, -1)
	if got := string(b); got != "GET /a HTTP/1.1\r\nHost: x\r\nA: 1\r\n\r\n" {
		t.Errorf("request head %q", got)
	}
	b = AppendRequestHead(nil, "POST", "/", "x", nil, 0)
	if got := string(b); got != "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" {
		t.Errorf("request head %q", got)
	}
	b = AppendResponseHead(nil, 0, 200, "OK", []Field{{"A", "1"}}, 5, false, KeepAlive)
	if got := string(b); got != "HTTP/1.0 200 OK\r\nA: 1\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n" {
		t.Errorf("response head %q", got)
	}
	b = AppendResponseHead(nil, 1, 200, "OK", nil, -1, true, "")
	b = AppendChunk(b, []byte("hello, world"))
	b = AppendChunk(b, nil)
	b = AppendLastChunk(b, []Field{{"X-Sum", "1"}})
	if got := string(b); got != "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\nhello, world\r\n0\r\nX-Sum: 1\r\n\r\n" {
		t.Errorf("chunked response %q", got)
	}
}
