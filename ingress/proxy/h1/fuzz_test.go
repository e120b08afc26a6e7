package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"slices"
	"testing"
)

// The codec is fuzzed against net/http's own reader, as a second opinion
// on where a message's head and body end: for every input, either both
// accept it with the same method, target, fields and body framing, and end
// it at the same byte, or the codec refuses it. The codec never accepts
// framing that net/http refuses, so no request it forwards can be read
// otherwise by a backend that reads like net/http.

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a?b HTTP/1.0\r\nConnection: keep-alive\r\nX: y\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\n\r\n",
	"GET http://h:8/p HTTP/1.1\r\nHost: x\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
	"\r\nGET / HTTP/1.1\nHost: x\n\n",
	"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Request
		n, err := ParseRequest(in, 64<<10, &r)
		if err != nil || n == 0 {
			return // refused, or not whole: nothing to compare
		}
		data, trailers, used, berr := readBody(r.Length, r.Chunked, in[n:], len(in))

		// Empty lines before a request may be ignored (RFC 9112, 2.2):
		// the codec does, http.ReadRequest does not.
		trimmed := in
		for len(trimmed) > 0 && (trimmed[0] == '\n' || len(trimmed) > 1 && trimmed[0] == '\r' && trimmed[1] == '\n') {
			trimmed = trimmed[bytes.IndexByte(trimmed, '\n')+1:]
		}
		br := bufio.NewReader(bytes.NewReader(trimmed))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("the codec took a head net/http refuses (%v): %q", err, in)
		}
		if req.Method != r.Method || req.RequestURI != r.Target || req.Host != r.Host {
			t.Fatalf("%q: codec %q %q host %q; net/http %q %q host %q", in, r.Method, r.Target, r.Host, req.Method, req.RequestURI, req.Host)
		}
		if got, want := header(r.Fields), netHeader(req.Header); !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: codec fields %v; net/http %v", in, got, want)
		}
		if req.Close != r.Close {
			t.Fatalf("%q: codec close %v; net/http %v", in, r.Close, req.Close)
		}
		chunked := slices.Equal(req.TransferEncoding, []string{"chunked"})
		if chunked != r.Chunked || !chunked && req.ContentLength != r.Length {
			t.Fatalf("%q: codec length %d chunked %v; net/http %d %v", in, r.Length, r.Chunked, req.ContentLength, req.TransferEncoding)
		}
		if berr != nil {
			return // the codec refuses the body: nothing of it is forwarded
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatalf("%q: the codec took a body net/http refuses (%v)", in, err)
		}
		if string(body) != data || !reflect.DeepEqual(header(trailers), netHeader(req.Trailer)) {
			t.Fatalf("%q: codec body %q trailers %v; net/http %q %v", in, data, trailers, body, req.Trailer)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != string(in[n+used:]) {
			t.Fatalf("%q: the codec ends the request before %q, net/http before %q", in, in[n+used:], rest)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nA: b\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil the end",
		"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Response
		n, err := ParseResponse(in, 64<<10, &r)
		if err != nil || n == 0 {
			return
		}
		length := r.Length
		if NoBody("GET", r.Status) {
			length = 0
		}
		data, _, used, berr := readBody(length, r.Chunked && length != 0, in[n:], len(in))
		trimmed := in
		for len(trimmed) > 0 && (trimmed[0] == '\n' || len(trimmed) > 1 && trimmed[0] == '\r' && trimmed[1] == '\n') {
			trimmed = trimmed[bytes.IndexByte(trimmed, '\n')+1:]
		}
		br := bufio.NewReader(bytes.NewReader(trimmed))
		res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("the codec took a response head net/http refuses (%v): %q", err, in)
		}
		if res.StatusCode != r.Status {
			t.Fatalf("%q: codec status %d; net/http %d", in, r.Status, res.StatusCode)
		}
		if berr != nil {
			return
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("%q: the codec took a body net/http refuses (%v)", in, err)
		}
		if string(body) != data {
			t.Fatalf("%q: codec body %q; net/http %q", in, data, body)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != string(in[n+used:]) {
			t.Fatalf("%q: the codec ends the response before %q, net/http before %q", in, in[n+used:], rest)
		}
	})
}

// FuzzBody: a chunked body read a byte, a few bytes or all at a time
// gives the same pieces, and reading never panics.
func FuzzBody(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\n", "1;a=b\r\nx\r\n0\r\nT: v\r\n\r\n", "a\r\nabcdefghij\r\n0\r\n\r\n", "5\nhello\n0\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		data, trailers, used, err := readBody(0, true, in, len(in))
		for _, step := range []int{1, 3, 17} {
			d, tr, u, e := readBody(0, true, in, step)
			if (e == nil) != (err == nil) || e == nil && (d != data || !reflect.DeepEqual(tr, trailers) || u != used) {
				t.Fatalf("%q, %d bytes at a time: %q %v %d %v; all at once: %q %v %d %v", in, step, d, tr, u, e, data, trailers, used, err)
			}
		}
	})
}

// header is fields as net/http keeps them: canonical names, values in
// order, framing fields apart.
func header(fields []Field) map[string][]string {
	h := map[string][]string{}
	for _, f := range fields {
		k := http.CanonicalHeaderKey(f.Name)
		h[k] = append(h[k], f.Value)
	}
	return h
}

func netHeader(h http.Header) map[string][]string {
	out := map[string][]string{}
	for k, v := range h {
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		out[k] = v
	}
	return out
}
