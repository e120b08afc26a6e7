package route

import (
	"fmt"
	"testing"
	"time"
)

// benchIngresses returns n Ingresses, each with a host "host-<i>.example.com"
// and a wildcard host "*.wild-<i>.example.com", each with paths Prefix
// /p0 … /p<perHost-1>; the even ones also have an Exact twin.
func benchIngresses(n, perHost int) []Ingress {
	ings := make([]Ingress, n)
	for i := range ings {
		var ps []Path
		for k := range perHost {
			p := fmt.Sprintf("/p%d", k)
			ps = append(ps, Path{Path: p, Type: Prefix, Backend: svc(fmt.Sprintf("svc-%d-%d", i, k), 8080)})
			if k%2 == 0 {
				ps = append(ps, Path{Path: p, Type: Exact, Backend: svc(fmt.Sprintf("svc-%d-%d-exact", i, k), 8080)})
			}
		}
		ings[i] = Ingress{
			Namespace: fmt.Sprintf("ns-%d", i%50),
			Name:      fmt.Sprintf("ing-%d", i),
			Created:   t0.Add(time.Duration(i) * time.Second),
			Rules: []Rule{
				{Host: fmt.Sprintf("host-%d.example.com", i), Paths: ps},
				{Host: fmt.Sprintf("*.wild-%d.example.com", i), Paths: ps},
			},
			TLS: []TLS{{Hosts: []string{fmt.Sprintf("host-%d.example.com", i)}, SecretName: "cert"}},
		}
	}
	return ings
}

func benchTable(n, perHost int) *Table {
	t, rej := Build(benchIngresses(n, perHost))
	if len(rej) != 0 {
		panic(fmt.Sprint(rej))
	}
	return t
}

func BenchmarkMatch(b *testing.B) {
	tab := benchTable(1000, 10)
	for _, bc := range []struct {
		name, host, path string
		ok               bool
	}{
		{"exact-host-hit", "host-500.example.com", "/p7/index.html", true},
		{"exact-host-exact-path", "host-500.example.com", "/p4", true},
		{"exact-host-hit-upper-case-and-port", "HOST-500.Example.com:8080", "/p7/index.html", true},
		{"wildcard-hit", "www.wild-500.example.com", "/p7/index.html", true},
		{"miss-host", "nope.example.com", "/p7/index.html", false},
		{"miss-path", "host-500.example.com", "/zzz/index.html", false},
		{"long-path", "host-500.example.com", "/p7/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if _, ok := tab.Match(bc.host, bc.path); ok != bc.ok {
				b.Fatalf("Match(%q, %q) ok = %v, want %v", bc.host, bc.path, ok, bc.ok)
			}
			b.ReportAllocs()
			for b.Loop() {
				tab.Match(bc.host, bc.path)
			}
		})
	}
}

func BenchmarkTLS(b *testing.B) {
	tab := benchTable(1000, 10)
	b.ReportAllocs()
	for b.Loop() {
		tab.TLS("host-500.example.com")
	}
}

func BenchmarkBuild(b *testing.B) {
	ings := benchIngresses(1000, 10)
	b.ReportAllocs()
	for b.Loop() {
		Build(ings)
	}
}
