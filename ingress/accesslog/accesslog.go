// Package accesslog writes the ingress's access log: one line per
// request, in JSON or in nginx's combined format, from the proxy's Records,
// without ever making a request wait on the log's output.
package accesslog

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// Log writes one line per request. Lines go to a buffer that a goroutine of its own writes out
// every FlushEvery: the proxy's event loops never wait on a slow stdout.
// When the writer cannot keep up and the buffer holds MaxPending bytes,
// further lines are dropped and counted (Dropped), as a full pipe must
// not stall traffic.
type Log struct {
	format  Format
	w       io.Writer
	dropped atomic.Uint64

	mu      sync.Mutex
	pending []byte
	spare   []byte // the buffer being written out, reused
	kick    chan struct{}
}

// Format is the format of the lines.
type Format uint8

const (
	// JSON: one JSON object per line, with every field of the Record.
	JSON Format = iota + 1
	// Combined: nginx's combined format with ingress-nginx's upstream
	// fields after it:
	//   client - - [time] "request" status bytes "referer" "user agent"
	//   request_length request_time [ingress] [service:port] endpoint
	//   upstream_status upstream_time request_id
	Combined
)

// ParseFormat reads a format's name: json or combined.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "json":
		return JSON, nil
	case "combined":
		return Combined, nil
	}
	return 0, fmt.Errorf("%q: want json or combined", s)
}

const (
	// FlushEvery is how long a line waits in the buffer at most.
	FlushEvery = 100 * time.Millisecond
	// MaxPending bounds the buffer: past it, lines are dropped.
	MaxPending = 4 << 20
)

// New returns a Log writing to w. Run must run for lines to be written.
func New(w io.Writer, format Format) *Log {
	return &Log{format: format, w: w, kick: make(chan struct{}, 1)}
}

// Dropped returns how many lines were dropped so far.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Log formats r and adds it to the buffer. It is safe for concurrent use.
func (l *Log) Log(r *exchange.Record) {
	var line [512]byte
	b := l.append(line[:0], r)
	l.mu.Lock()
	full := len(l.pending)+len(b) > MaxPending
	if !full {
		l.pending = append(l.pending, b...)
	}
	big := len(l.pending) >= 64<<10
	l.mu.Unlock()
	if full {
		l.dropped.Add(1)
	}
	if big {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Run writes the buffer out every FlushEvery, or sooner when it fills,
// until ctx ends; then it writes what is left.
func (l *Log) Run(ctx context.Context) {
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.flush()
			return
		case <-t.C:
		case <-l.kick:
		}
		l.flush()
	}
}

func (l *Log) flush() {
	l.mu.Lock()
	out := l.pending
	l.pending = l.spare[:0]
	l.mu.Unlock()
	if len(out) > 0 {
		_, _ = l.w.Write(out) // a log that cannot be written is not the traffic's problem
	}
	l.spare = out
}

func (l *Log) append(b []byte, r *exchange.Record) []byte {
	if l.format == Combined {
		return appendCombined(b, r)
	}
	return appendJSON(b, r)
}

func appendJSON(b []byte, r *exchange.Record) []byte {
	str := func(key, v string) {
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = appendJSONString(b, v)
	}
	num := func(key string, v int64) {
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = strconv.AppendInt(b, v, 10)
	}
	secs := func(key string, d time.Duration) {
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = strconv.AppendFloat(b, d.Seconds(), 'f', 3, 64)
	}
	b = append(b, `{"time":"`...)
	b = r.Start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	str("client", r.Client)
	str("method", r.Method)
	str("host", r.Host)
	str("uri", r.URI)
	str("proto", r.Proto)
	num("status", int64(r.Status))
	num("bytesIn", r.BytesIn)
	num("bytesOut", r.BytesOut)
	secs("duration", r.Duration)
	str("ingress", r.Route)
	b = append(b, `,"service":"`...)
	b = appendService(b, r)
	b = append(b, '"')
	str("endpoint", r.Endpoint)
	num("upstreamStatus", int64(r.UpstreamStatus))
	secs("upstreamTime", r.UpstreamTime)
	num("attempts", int64(r.Attempts))
	str("upstreamError", r.UpstreamError)
	str("requestID", r.RequestID)
	str("referer", r.Referer)
	str("userAgent", r.UserAgent)
	return append(b, '}', '\n')
}

func appendCombined(b []byte, r *exchange.Record) []byte {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	b = appendLogText(b, r.Client)
	b = append(b, " - - ["...)
	b = r.Start.UTC().AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, `] "`...)
	b = appendLogText(b, r.Method)
	b = append(b, ' ')
	b = appendLogText(b, r.URI)
	b = append(b, ' ')
	b = append(b, r.Proto...)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, ` "`...)
	b = appendLogText(b, dash(r.Referer))
	b = append(b, `" "`...)
	b = appendLogText(b, dash(r.UserAgent))
	b = append(b, `" `...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, r.Duration.Seconds(), 'f', 3, 64)
	b = append(b, " ["...)
	b = append(b, r.Route...)
	b = append(b, "] ["...)
	b = appendService(b, r)
	b = append(b, "] "...)
	b = append(b, dash(r.Endpoint)...)
	b = append(b, ' ')
	if r.UpstreamStatus > 0 {
		b = strconv.AppendInt(b, int64(r.UpstreamStatus), 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, r.UpstreamTime.Seconds(), 'f', 3, 64)
	b = append(b, ' ')
	b = appendLogText(b, dash(r.RequestID))
	return append(b, '\n')
}

// appendService appends "service:port" of the Record's target, nothing
// when there is none. Service and port names are DNS labels: nothing to
// escape.
func appendService(b []byte, r *exchange.Record) []byte {
	t := r.Target
	if t.Service == "" {
		return b
	}
	b = append(b, t.Service...)
	b = append(b, ':')
	if t.Port.Name != "" {
		return append(b, t.Port.Name...)
	}
	return strconv.AppendInt(b, int64(t.Port.Number), 10)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control bytes escaped, invalid UTF-8 replaced, so that a hostile Host
// or path cannot break a line or forge a field.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// appendLogText appends s as nginx writes variables into its logs: '"',
// '\' and bytes outside printable ASCII as \xHH, so that a line stays one
// line and its quoted fields stay quoted.
func appendLogText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
