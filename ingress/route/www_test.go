package route

import (
	"strings"
	"testing"
)

func www(ing Ingress) Ingress { ing.FromToWWW = true; return ing }

// from-to-www-redirect: the other host of each rule host is redirected to
// it, and matches its paths, unless some Ingress has rules for it.
func TestFromToWWW(t *testing.T) {
	tls := func(ing Ingress, secret string, hosts ...string) Ingress {
		ing.TLS = []TLS{{Hosts: hosts, SecretName: secret}}
		return ing
	}
	tab, rej := Build([]Ingress{
		tls(www(hostIngress("bare", "example.com", prefix("/", "bare"))), "bare-tls", "example.com"),
		www(hostIngress("dub", "www.shop.example", prefix("/", "shop"))),
		www(hostIngress("wild", "*.wild.example", prefix("/", "wild"))),
		hostIngress("plain", "plain.example", prefix("/", "plain")),
		at(www(hostIngress("taken", "taken.example", prefix("/", "taken"))), 1),
		at(hostIngress("owner", "www.taken.example", prefix("/", "owner")), 2),
		www(Ingress{Namespace: "ns", Name: "both", Created: t0, Rules: []Rule{
			{Host: "both.example", Paths: []Path{prefix("/", "both")}},
			{Host: "www.both.example", Paths: []Path{prefix("/", "www-both")}},
		}}),
	})
	for _, tc := range []struct {
		host, to string
		ok       bool
	}{
		{"www.example.com", "example.com", true},
		{"WWW.Example.COM:8080", "example.com", true},
		{"example.com", "", false},
		{"shop.example", "www.shop.example", true},
		{"www.shop.example", "", false},
		{"www.wild.example", "", false}, // a wildcard has no one other host
		{"www.plain.example", "", false},
		{"www.taken.example", "", false}, // its own rules win, later or not
		{"www.both.example", "", false},
		{"both.example", "", false},
	} {
		to, ok := tab.WWWRedirect(tc.host)
		if to != tc.to || ok != tc.ok {
			t.Errorf("WWWRedirect(%q) = %q, %v; want %q, %v", tc.host, to, ok, tc.to, tc.ok)
		}
	}
	checkRequests(t, tab, []request{
		{"the other host matches the rule host's paths", "www.example.com", "/.well-known/acme-challenge/x", "bare"},
		{"the rule host's other", "shop.example", "/", "shop"},
		{"the host another Ingress routes", "www.taken.example", "/", "owner"},
		{"no redirect asked", "www.plain.example", "/", ""},
	})
	if ref, ok := tab.TLS("www.example.com"); !ok || ref.Name != "bare-tls" {
		t.Errorf("TLS(www.example.com) = %v, %v; want the rule host's Secret bare-tls", ref, ok)
	}
	if len(rej) != 1 || rej[0].Kind != Conflict || rej[0].Ingress != "ns/taken" || rej[0].Winner != "ns/owner" || !strings.Contains(rej[0].Reason, "www.taken.example") {
		t.Errorf("rejections = %v, want one conflict of ns/taken with ns/owner over www.taken.example", rej)
	}
}
