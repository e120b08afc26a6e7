package route

import (
	"testing"
	"time"
)

func TestPassthrough(t *testing.T) {
	pass := func(name, host string, created int, paths ...Path) Ingress {
		return Ingress{Namespace: "ns", Name: name, Created: time.Unix(int64(created), 0), Passthrough: true,
			Rules: []Rule{{Host: host, Paths: paths}}}
	}
	svc := func(name string) Backend { return Backend{Service: name, Port: Port{Number: 443}} }
	tab, rej := Build([]Ingress{
		pass("a", "a.example", 1, Path{Path: "/", Type: Prefix, Backend: svc("first")}, Path{Path: "/x", Type: Prefix, Backend: svc("second")}),
		pass("b", "A.example", 2, Path{Path: "/", Type: Prefix, Backend: svc("other")}),
		pass("wild", "*.example", 3, Path{Path: "/", Type: Prefix, Backend: svc("w")}),
		{Namespace: "ns", Name: "plain", Created: time.Unix(4, 0), Rules: []Rule{{Host: "p.example", Paths: []Path{{Path: "/", Type: Prefix, Backend: svc("p")}}}}},
	})
	if be, ok := tab.Passthrough("a.example"); !ok || be.Service != "first" || be.Ingress != "ns/a" {
		t.Errorf("a.example passes through to %+v %v, want the first path's backend of the oldest Ingress", be, ok)
	}
	if be, ok := tab.Passthrough("A.EXAMPLE."); !ok || be.Service != "first" {
		t.Errorf("the server name is matched as a host: %+v %v", be, ok)
	}
	for _, name := range []string{"p.example", "x.example", "", "example"} {
		if _, ok := tab.Passthrough(name); ok {
			t.Errorf("%q is passed through", name)
		}
	}
	if be, ok := tab.Match("a.example", "/x"); !ok || be.Service != "second" {
		t.Errorf("plain HTTP to a passthrough Ingress's host is routed as usual: %+v %v", be, ok)
	}
	kinds := map[string]Kind{}
	for _, r := range rej {
		kinds[r.Ingress] = r.Kind
	}
	if kinds["ns/b"] != Conflict || kinds["ns/wild"] != Invalid || len(kinds) != 2 {
		t.Errorf("rejections %+v, want the newer claim of a.example a conflict and the wildcard invalid", rej)
	}
	if !tab.HasPassthrough() {
		t.Error("HasPassthrough is false")
	}
	if empty, _ := Build(nil); empty.HasPassthrough() {
		t.Error("an empty table passes through")
	}
}
