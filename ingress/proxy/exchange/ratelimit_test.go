package exchange

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// nginx's limit_req with burst and nodelay: a burst at once, then the
// rate; each address on its own; a quiet address refills.
func TestRateLimit(t *testing.T) {
	l := NewRateLimit(2, 10) // limit-rps 2, burst 2×5
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	n := 0
	for range 30 {
		if l.Allow(a, now) {
			n++
		}
	}
	if n != 10 {
		t.Errorf("a burst of 30 at once: %d allowed, want 10", n)
	}
	if !l.Allow(b, now) {
		t.Error("another address was limited by the first one's requests")
	}
	if l.Allow(a, now.Add(400*time.Millisecond)) {
		t.Error("allowed 0.4 s later at 2 a second: less than one request's worth")
	}
	if !l.Allow(a, now.Add(600*time.Millisecond)) {
		t.Error("refused 0.6 s later at 2 a second")
	}
	n = 0
	for range 30 {
		if l.Allow(a, now.Add(time.Hour)) {
			n++
		}
	}
	if n != 10 {
		t.Errorf("after an hour of quiet: %d allowed, want the full burst of 10", n)
	}
	if l.Allow(a, now) {
		t.Error("a clock set back an hour refilled the drained bucket")
	}
}

// A flood of new addresses is bounded: the table forgets addresses rather
// than grow, and a forgotten address starts again with a full bucket.
func TestRateLimitMemory(t *testing.T) {
	l := NewRateLimit(1, 1)
	now := time.Unix(1000, 0)
	for i := range 400000 {
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].buckets)
	}
	if total > len(l.shards)*maxPerShard {
		t.Errorf("%d addresses remembered, more than %d", total, len(l.shards)*maxPerShard)
	}
}

// Through the core: a route's limits refuse with the proxy's LimitStatus;
// limit-whitelist addresses are not counted; other routes are not limited.
func TestRulesRateLimit(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{LimitStatus: 429})
	cfg.Rules = map[string]*Rules{"ns/plain": {RateLimits: []*RateLimit{NewRateLimit(1, 3)}, LimitExempt: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}}
	statuses := func(host string, client string) string {
		s := ""
		start := time.Now()
		for range 5 {
			req := get(host, "/")
			req.Client = netip.MustParseAddrPort(client)
			var x Exchange
			p.Decide(cfg, req, start, &x)
			s += fmt.Sprint(x.Status, " ")
		}
		return s
	}
	if got := statuses("plain.example", "192.0.2.7:1"); got != "0 0 0 429 429 " {
		t.Errorf("limited route: %s", got)
	}
	if got := statuses("plain.example", "198.51.100.9:1"); got != "0 0 0 0 0 " {
		t.Errorf("exempt address: %s", got)
	}
}
