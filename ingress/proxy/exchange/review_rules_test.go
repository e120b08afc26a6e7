package exchange

import (
	"net/netip"
	"testing"
	"time"
)

// FINDING 3: a client address with an IPv6 zone (a link-local peer,
// fe80::1%eth0, as net.TCPAddr.AddrPort reports it) never matches any
// netip.Prefix (Prefix.Contains is false for zoned addresses), so a
// denylist does not deny it. admit strips the 4in6 mapping but not the zone.
func TestReview13DenylistZonedClientIsBypassed(t *testing.T) {
	cfg := testConfig(t)
	cfg.Rules = map[string]*Rules{"ns/plain": {Deny: []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("::/0")}}}
	req := get("plain.example", "/")
	req.Client = netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 40000)
	var x Exchange
	NewPolicy(Settings{}).Decide(cfg, req, time.Now(), &x)
	if x.Status != 403 {
		t.Errorf("link-local client fe80::1%%eth0 with deny fe80::/10, ::/0: outcome %d status %d, want 403", x.Outcome, x.Status)
	}
}
