package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

func logRecord() exchange.Record {
	return exchange.Record{
		Start: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), Duration: 1500 * time.Microsecond, Client: "192.0.2.7",
		Method: "GET", Host: "shop.example", URI: "/cart?id=1", Proto: "HTTP/1.1", Status: 200, BytesOut: 512, BytesIn: 0,
		Route: "shop/web", Target: exchange.Target{Namespace: "shop", Service: "web", Port: route.Port{Number: 80}},
		Endpoint: "10.0.0.1:8080", UpstreamStatus: 200, UpstreamTime: time.Millisecond, Attempts: 1, RequestID: "abc",
		Referer: "https://shop.example/", UserAgent: "curl/8.0",
	}
}

func TestAccessLogFormats(t *testing.T) {
	r := logRecord()
	got := string(appendCombined(nil, &r))
	want := `192.0.2.7 - - [03/Dec/2026:12:00:00 +0000] "GET /cart?id=1 HTTP/1.1" 200 512 "https://shop.example/" "curl/8.0" 0 0.002 [shop/web] [web:80] 10.0.0.1:8080 200 0.001 abc` + "\n"
	if got != want {
		t.Errorf("combined:\n got %q\nwant %q", got, want)
	}
	var m map[string]any
	if err := json.Unmarshal(appendJSON(nil, &r), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"time": "2026-12-03T12:00:00Z", "client": "192.0.2.7", "method": "GET", "host": "shop.example", "uri": "/cart?id=1",
		"status": 200.0, "bytesOut": 512.0, "duration": 0.002, "ingress": "shop/web", "service": "web:80", "endpoint": "10.0.0.1:8080",
		"upstreamStatus": 200.0, "requestID": "abc", "userAgent": "curl/8.0", "referer": "https://shop.example/"} {
		if m[k] != v {
			t.Errorf("json %s: %v, want %v", k, m[k], v)
		}
	}
	// An unrouted request's line says so with dashes and empty fields.
	r = exchange.Record{Start: r.Start, Client: "192.0.2.7", Method: "GET", URI: "/", Proto: "HTTP/1.1", Status: 404, BytesOut: 90}
	if got, want := string(appendCombined(nil, &r)), `192.0.2.7 - - [03/Dec/2026:12:00:00 +0000] "GET / HTTP/1.1" 404 90 "-" "-" 0 0.000 [] [] - - 0.000 -`+"\n"; got != want {
		t.Errorf("combined, unrouted:\n got %q\nwant %q", got, want)
	}
}

// FuzzAccessLog sends what a client controls (Host, target, Referer,
// User-Agent, X-Request-ID) into both formats: a JSON line is one valid
// object that gives back what was sent (invalid UTF-8 replaced), and a
// combined line is one line whose quoted fields stay three.
func FuzzAccessLog(f *testing.F) {
	f.Add("shop.example", "/a?b=c", "curl/8", "-", "id")
	f.Add("x\"y", "/\n{\"status\":200}", "\x00\x1f\x7f", "\\\"", "\xff\xfe")
	f.Add("é", "/\u2028", "ua\r\n", "r\t", `","status":1,"x":"`)
	f.Fuzz(func(t *testing.T, host, uri, ua, referer, id string) {
		r := logRecord()
		r.Host, r.URI, r.UserAgent, r.Referer, r.RequestID = host, uri, ua, referer, id
		line := appendJSON(nil, &r)
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("JSON line broken: %q", line)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		for k, v := range map[string]string{"host": host, "uri": uri, "userAgent": ua, "referer": referer, "requestID": id} {
			if !utf8.ValidString(v) {
				v = strings.ToValidUTF8(v, "\uFFFD")
				// each invalid byte is replaced on its own
				if n := strings.Count(m[k].(string), "\uFFFD"); n < strings.Count(v, "\uFFFD") {
					t.Fatalf("%s: %q for %q", k, m[k], v)
				}
				continue
			}
			if m[k] != v {
				t.Fatalf("%s: %q, want %q", k, m[k], v)
			}
		}
		if m["status"] != 200.0 {
			t.Fatalf("status forged: %v", m["status"])
		}
		line = appendCombined(nil, &r)
		if bytes.IndexByte(line, '\n') != len(line)-1 || bytes.Count(line, []byte(`"`)) != 6 {
			t.Fatalf("combined line broken: %q", line)
		}
	})
}

// blocked is a writer that does not return until released: stdout piped
// to a runtime that stopped reading.
type blocked struct{ release chan struct{} }

func (b blocked) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

// A writer that cannot keep up never holds up a request: lines past the
// buffer are dropped and counted.
func TestAccessLogNeverBlocks(t *testing.T) {
	w := blocked{make(chan struct{})}
	l := New(w, JSON)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	r := logRecord()
	logged := make(chan struct{})
	go func() {
		for range 3 * MaxPending / len(appendJSON(nil, &r)) {
			l.Log(&r)
		}
		close(logged)
	}()
	select {
	case <-logged:
	case <-time.After(30 * time.Second):
		t.Fatal("Log blocked behind a stuck writer")
	}
	if l.Dropped() == 0 {
		t.Error("no line was counted as dropped")
	}
	close(w.release)
	cancel()
	<-done
}

// BenchmarkLog: the cost a request pays for its line, formatting and
// buffering (the write to the output is the log goroutine's).
func BenchmarkLog(b *testing.B) {
	for _, format := range []Format{JSON, Combined} {
		name := map[Format]string{JSON: "json", Combined: "combined"}[format]
		b.Run(name, func(b *testing.B) {
			l := New(io.Discard, format)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go l.Run(ctx)
			r := logRecord()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.Log(&r)
				}
			})
		})
	}
}
