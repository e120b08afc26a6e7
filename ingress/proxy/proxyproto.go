package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in
// front of the ingress that ends TCP itself says, in a header before the
// connection's first byte, which client it speaks for. The proxy reads it
// only from the addresses in exchange.Settings.ProxyProtocol (the core's
// trust decision, as TrustedProxies is), and those must send
// it; anyone else is a client as before, and a PROXY header from them is
// a malformed request (400).

// proxyConn is a connection whose PROXY header has been read: its
// RemoteAddr and LocalAddr are the ones the header names, and the bytes
// read past the header come first.
type proxyConn struct {
	net.Conn
	rest          []byte
	remote, local net.Addr
}

func (c *proxyConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *proxyConn) RemoteAddr() net.Addr { return c.remote }
func (c *proxyConn) LocalAddr() net.Addr  { return c.local }

// v2sig starts a version 2 header.
var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// maxV2 bounds a version 2 header (addresses and TLVs); HAProxy's own
// are far smaller.
const maxV2 = 16 + 4096

var errProxyHeader = errors.New("no valid PROXY protocol header")

// readProxyHeader reads c's PROXY header, within timeout, and returns c as
// the client it speaks for. A LOCAL (v2) or UNKNOWN (v1) header keeps the
// connection's own addresses (a health check of the balancer).
func readProxyHeader(c net.Conn, timeout time.Duration) (*proxyConn, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 256)
	read := func(n int) error { // until buf holds n bytes
		for len(buf) < n {
			if cap(buf) < n {
				buf = append(buf[:cap(buf)], make([]byte, n-cap(buf))...)[:len(buf)]
			}
			m, err := c.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if err != nil && len(buf) < n {
				return err
			}
		}
		return nil
	}
	// "PROXY UNKNOWN\r\n", a balancer's health check, is 15 bytes and may
	// be all there is: read no more than "PROXY " before knowing.
	if err := read(6); err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(buf, []byte("PROXY ")) {
		if err := read(16); err != nil {
			return nil, err
		}
	}
	pc := &proxyConn{Conn: c, remote: c.RemoteAddr(), local: c.LocalAddr()}
	var end int
	switch {
	case bytes.HasPrefix(buf, v2sig):
		n := 16 + int(binary.BigEndian.Uint16(buf[14:16]))
		if n > maxV2 {
			return nil, errProxyHeader
		}
		if err := read(n); err != nil {
			return nil, err
		}
		if err := pc.v2(buf[:n]); err != nil {
			return nil, err
		}
		end = n
	case bytes.HasPrefix(buf, []byte("PROXY ")):
		for end = bytes.Index(buf, []byte("\r\n")); end < 0; end = bytes.Index(buf, []byte("\r\n")) {
			if len(buf) >= 107 { // the longest v1 line, CRLF included
				return nil, errProxyHeader
			}
			if err := read(len(buf) + 1); err != nil {
				return nil, err
			}
		}
		if end+2 > 107 {
			return nil, errProxyHeader
		}
		if err := pc.v1(string(buf[:end])); err != nil {
			return nil, err
		}
		end += 2
	default:
		return nil, errProxyHeader
	}
	pc.rest = buf[end:]
	return pc, nil
}

// v1 reads "PROXY TCP4|TCP6 src dst sport dport" or "PROXY UNKNOWN ...".
func (c *proxyConn) v1(line string) error {
	f := strings.Split(line, " ")
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return nil
	}
	if len(f) != 6 || f[1] != "TCP4" && f[1] != "TCP6" {
		return errProxyHeader
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sp, err3 := strconv.ParseUint(f[4], 10, 16)
	dp, err4 := strconv.ParseUint(f[5], 10, 16)
	if err := errors.Join(err1, err2, err3, err4); err != nil || src.Is4() != (f[1] == "TCP4") || dst.Is4() != src.Is4() ||
		src.Zone() != "" || dst.Zone() != "" || f[4] != strconv.FormatUint(sp, 10) || f[5] != strconv.FormatUint(dp, 10) {
		return errProxyHeader
	}
	c.remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(sp)))
	c.local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(dp)))
	return nil
}

// v2 reads a binary header: version 2, LOCAL or PROXY, TCP over IPv4 or
// IPv6 (other families keep the connection's addresses), TLVs skipped.
func (c *proxyConn) v2(h []byte) error {
	if h[12]>>4 != 2 {
		return errProxyHeader
	}
	switch h[12] & 0xf {
	case 0: // LOCAL
		return nil
	case 1: // PROXY
	default:
		return errProxyHeader
	}
	body := h[16:]
	var src, dst netip.Addr
	var ports []byte
	switch h[13] {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return errProxyHeader
		}
		src, dst, ports = netip.AddrFrom4([4]byte(body[0:4])), netip.AddrFrom4([4]byte(body[4:8])), body[8:12]
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return errProxyHeader
		}
		src, dst, ports = netip.AddrFrom16([16]byte(body[0:16])), netip.AddrFrom16([16]byte(body[16:32])), body[32:36]
	default: // UNSPEC, UDP, unix: not a TCP client to speak for
		return nil
	}
	c.remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, binary.BigEndian.Uint16(ports[0:2])))
	c.local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ports[2:4])))
	return nil
}
