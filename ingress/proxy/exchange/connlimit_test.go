package exchange

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// limit-connections: the requests in flight per address, the extra one
// refused with the LimitStatus; an ended one frees its place.
func TestConnLimit(t *testing.T) {
	cfg := testConfig(t)
	l := NewConnLimit(2)
	cfg.Rules = map[string]*Rules{"ns/plain": {ConnLimit: l, LimitExempt: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}}
	p := NewPolicy(Settings{})
	from := func(client string) *Request {
		req := get("plain.example", "/")
		req.Client = netip.MustParseAddrPort(client)
		return req
	}
	var xs [6]Exchange
	decide := func(i int, client string) int {
		p.Decide(cfg, from(client), time.Now(), &xs[i])
		return xs[i].Status
	}
	if s0, s1, s2 := decide(0, "192.0.2.7:1"), decide(1, "192.0.2.7:2"), decide(2, "192.0.2.7:3"); s0 != 0 || s1 != 0 || s2 != 503 {
		t.Errorf("three at once from one address: %d %d %d, want 0 0 503", s0, s1, s2)
	}
	if s := decide(3, "[::ffff:192.0.2.7]:4"); s != 503 {
		t.Errorf("the same address IPv4-mapped: %d, want 503", s)
	}
	if s := decide(4, "192.0.2.8:1"); s != 0 {
		t.Errorf("another address: %d, want 0", s)
	}
	if s := decide(5, "198.51.100.1:1"); s != 0 || l.InFlight() != 3 {
		t.Errorf("an exempt address: %d with %d in flight, want 0 and not counted (3)", s, l.InFlight())
	}
	xs[0].Finish(time.Now())
	if s := decide(2, "192.0.2.7:3"); s != 0 {
		t.Errorf("after one ended: %d, want 0", s)
	}
	for i := range xs {
		xs[i].End()
	}
	if n := l.InFlight(); n != 0 {
		t.Errorf("%d in flight after every exchange ended", n)
	}
}

// Whatever way an exchange ends, its place is given back: many exchanges
// down every path, some from the same address at once, leave nothing
// counted.
func TestConnLimitNoLeak(t *testing.T) {
	cfg := testConfig(t)
	l := NewConnLimit(1000)
	cfg.Rules = map[string]*Rules{"ns/plain": {ConnLimit: l, AppRoot: "/app"}}
	p := NewPolicy(Settings{})
	r := rand.New(rand.NewPCG(1, 2))
	var xs [16]Exchange
	for i := range 5000 {
		x := &xs[r.IntN(len(xs))]
		req := get("plain.example", "/x")
		req.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(r.IntN(4))}), 1)
		switch i % 9 {
		case 0: // an answer of the route's own (app-root)
			req.Target = "/"
		case 1: // a tunnel
			req.Upgrade, req.Fields = "websocket", []h1.Field{{Name: "Upgrade", Value: "websocket"}}
		case 2: // a 404: never counted
			req.Host = "none.example"
		}
		p.Decide(cfg, req, time.Now(), x)
		switch i % 7 {
		case 0:
			x.Finish(time.Now())
		case 1: // every endpoint fails
			for x.Retry(FailConnect) {
			}
			x.Finish(time.Now())
		case 2:
			x.ClientGone()
			x.End()
		case 3: // the front-end decides the next request on x: the last one is over
		case 4:
			x.BodyFailed(BodyTimeout)
			x.Finish(time.Now())
		case 5: // a head the codec refused comes next on the connection
			p.Refuse(&h1.Error{Status: 400, Reason: "bad"}, req.Client, time.Now(), x)
			x.Finish(time.Now())
		case 6: // left in flight for a while, ended below
		}
		if n := l.InFlight(); n > len(xs) {
			t.Fatalf("after %d exchanges, %d in flight on %d exchanges", i+1, n, len(xs))
		}
	}
	for i := range xs {
		xs[i].End()
	}
	if n := l.InFlight(); n != 0 {
		t.Errorf("%d in flight after every exchange ended", n)
	}
}
