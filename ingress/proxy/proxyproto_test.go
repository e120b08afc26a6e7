package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// v2header makes a version 2 header: cmd 1 PROXY (0 LOCAL), fam 0x11 or
// 0x21, the addresses, and tlv bytes after them.
func v2header(cmd, fam byte, src, dst netip.AddrPort, tlv []byte) []byte {
	var body []byte
	body = append(body, src.Addr().AsSlice()...)
	body = append(body, dst.Addr().AsSlice()...)
	body = binary.BigEndian.AppendUint16(body, src.Port())
	body = binary.BigEndian.AppendUint16(body, dst.Port())
	body = append(body, tlv...)
	h := append([]byte(nil), v2sig...)
	h = append(h, 0x20|cmd, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

// headerOf runs readProxyHeader on a connection that was sent in.
func headerOf(t *testing.T, in []byte) (*proxyConn, error) {
	t.Helper()
	a, b := net.Pipe()
	go func() { _, _ = a.Write(in); _ = a.Close() }()
	t.Cleanup(func() { b.Close() })
	return readProxyHeader(b, time.Second)
}

func TestProxyHeader(t *testing.T) {
	src4, dst4 := netip.MustParseAddrPort("203.0.113.9:41000"), netip.MustParseAddrPort("192.0.2.1:443")
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::9]:41000"), netip.MustParseAddrPort("[2001:db8::1]:80")
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct {
		name   string
		in     []byte
		remote string // "": the connection's own (net.Pipe's "pipe")
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.9 192.0.2.1 41000 443\r\n" + req), "203.0.113.9:41000"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::9 2001:db8::1 41000 80\r\n" + req), "[2001:db8::9]:41000"},
		{"v1 UNKNOWN alone", []byte("PROXY UNKNOWN\r\n"), ""},
		{"v2 TCP4", append(v2header(1, 0x11, src4, dst4, nil), req...), "203.0.113.9:41000"},
		{"v2 TCP6 with TLVs", append(v2header(1, 0x21, src6, dst6, []byte{0x04, 0, 3, 'a', 'b', 'c'}), req...), "[2001:db8::9]:41000"},
		{"v2 LOCAL", append(v2header(0, 0x11, src4, dst4, nil), req...), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			pc, err := headerOf(t, c.in)
			if err != nil {
				t.Fatal(err)
			}
			want := c.remote
			if want == "" {
				want = "pipe"
			}
			if got := pc.RemoteAddr().String(); got != want {
				t.Errorf("RemoteAddr %s, want %s", got, want)
			}
			rest, _ := io.ReadAll(pc)
			if c.name != "v1 UNKNOWN alone" && string(rest) != req {
				t.Errorf("after the header: %q, want the request", rest)
			}
		})
	}
	for name, in := range map[string][]byte{
		"HTTP":              []byte(req),
		"v1 bad family":     []byte("PROXY UDP4 203.0.113.9 192.0.2.1 41000 443\r\n"),
		"v1 family lies":    []byte("PROXY TCP4 2001:db8::9 2001:db8::1 41000 80\r\n"),
		"v1 port":           []byte("PROXY TCP4 203.0.113.9 192.0.2.1 70000 443\r\n"),
		"v1 leading zero":   []byte("PROXY TCP4 203.0.113.9 192.0.2.1 041000 443\r\n"),
		"v1 too long":       append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("1"), 200)...),
		"v1 LF only":        []byte("PROXY TCP4 203.0.113.9 192.0.2.1 41000 443\n" + req),
		"v1 cut short":      []byte("PROXY TCP4 203.0.113.9"),
		"v2 version 1":      append(append([]byte(nil), v2sig...), 0x11, 0x11, 0, 12),
		"v2 short body":     append(append([]byte(nil), v2sig...), 0x21, 0x11, 0, 4, 1, 2, 3, 4),
		"v2 command 2":      v2header(2, 0x11, src4, dst4, nil),
		"v2 too long":       append(append([]byte(nil), v2sig...), 0x21, 0x11, 0xff, 0xff),
		"v2 body cut short": v2header(1, 0x21, src6, dst6, nil)[:30],
	} {
		if _, err := headerOf(t, in); err == nil {
			t.Errorf("%s: accepted %q", name, in)
		}
	}
}

// FuzzProxyHeader: whatever a peer sends, the reader neither panics nor
// claims more bytes than it was sent.
func FuzzProxyHeader(f *testing.F) {
	src, dst := netip.MustParseAddrPort("203.0.113.9:41000"), netip.MustParseAddrPort("192.0.2.1:443")
	f.Add([]byte("PROXY TCP4 203.0.113.9 192.0.2.1 41000 443\r\nGET / HTTP/1.1\r\n\r\n"))
	f.Add(v2header(1, 0x11, src, dst, []byte{1, 0, 0}))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		pc, err := headerOf(t, in)
		if err != nil {
			return
		}
		rest, _ := io.ReadAll(pc)
		if !bytes.HasSuffix(in, rest) || len(rest) >= len(in) {
			t.Fatalf("%q: %q left after the header", in, rest)
		}
	})
}

// Through the server: a balancer's connection is served as the client its
// header names (X-Forwarded-For, X-Real-IP, and so the allowlists); a
// balancer's connection without a header is closed; anyone else's PROXY
// header is a bad request.
func TestProxyProtocolServed(t *testing.T) {
	b := echo(t, "web")
	for _, c := range []struct {
		name     string
		balancer string // the trusted balancers
		send     string
		status   int // 0: the connection closes with no answer
		client   string
	}{
		{"from the balancer", "127.0.0.1/32", "PROXY TCP4 203.0.113.9 192.0.2.1 41000 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, "203.0.113.9"},
		{"from the balancer, no header", "127.0.0.1/32", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, ""},
		{"from anyone else", "127.0.0.2/32", "PROXY TCP4 203.0.113.9 192.0.2.1 41000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, ""},
		{"anyone else, plain", "127.0.0.2/32", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, "127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := webProxy(t, Options{ReadHeaderTimeout: time.Second,
				Policy: exchange.Settings{ProxyProtocol: []netip.Prefix{netip.MustParsePrefix(c.balancer)}}}, b)
			conn, err := net.Dial("tcp", p.plain)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(conn, c.send); err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(conn)
			if c.status == 0 {
				if len(out) != 0 {
					t.Errorf("answered %q, want the connection closed", out)
				}
				return
			}
			if !bytes.HasPrefix(out, []byte("HTTP/1.1 "+strconv.Itoa(c.status))) {
				t.Fatalf("answer %q, want %d", out, c.status)
			}
			if c.client != "" && (!bytes.Contains(out, []byte(`"X-Forwarded-For":["`+c.client+`"]`)) || !bytes.Contains(out, []byte(`"X-Real-Ip":["`+c.client+`"]`))) {
				t.Errorf("the endpoint did not see client %s: %s", c.client, out)
			}
		})
	}
}

// Over TLS, the header comes before the handshake; HTTP/2 requests get
// the client the header names too.
func TestProxyProtocolTLS(t *testing.T) {
	b := echo(t, "web")
	p := webProxy(t, Options{Policy: exchange.Settings{ProxyProtocol: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}, b)
	for _, proto := range []string{"http/1.1", "h2"} {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}},
			ForceAttemptHTTP2: proto == "h2",
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				c, err := net.Dial(network, p.secure)
				if err == nil {
					_, err = io.WriteString(c, "PROXY TCP6 2001:db8::9 2001:db8::1 41000 443\r\n")
				}
				return c, err
			},
		}
		res, err := (&http.Client{Transport: tr}).Get("https://x/")
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		s := decode(t, res)
		res.Body.Close()
		tr.CloseIdleConnections()
		if got := s.Header.Get("X-Forwarded-For"); got != "2001:db8::9" || res.ProtoMajor != map[string]int{"h2": 2, "http/1.1": 1}[proto] {
			t.Errorf("%s (%s): X-Forwarded-For %q, want the header's client", proto, res.Proto, got)
		}
	}
}
