//go:build e2e

package e2e

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestIngressNginxUser: Ingresses as ingress-nginx's users wrote them,
// installed from the client's side of the lab. One without a class is
// Portico's, because the install makes its class the cluster's default;
// an allowlist that does not name the client refuses it (403); an auth
// annotation Portico cannot enforce refuses every request rather than
// serve the route open.
func TestIngressNginxUser(t *testing.T) {
	f := newFeature(t)
	classless := f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: classless}
spec:
  rules:
  - host: classless
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: nginx-user, port: {number: 8080}}}}
`, false)
	ing, err := cs.NetworkingV1().Ingresses(f.ns).Get(context.Background(), classless, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := ing.Spec.IngressClassName; c == nil || *c != ingressClass {
		t.Fatalf("a class-less Ingress was given class %v, want the default, %s", c, ingressClass)
	}
	f.address(t, classless)
	f.ready(t, request{host: "classless"}, expect{status: 200, service: "nginx-user"})

	f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: allowlisted
  annotations:
    nginx.ingress.kubernetes.io/whitelist-source-range: 192.0.2.255/32
spec:
  rules:
  - host: allowlisted
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: nginx-user, port: {number: 8080}}}}
`, false)
	f.ready(t, request{host: "allowlisted"}, expect{status: 403})

	f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: basic-auth
  annotations:
    nginx.ingress.kubernetes.io/auth-type: basic
    nginx.ingress.kubernetes.io/auth-secret: users
spec:
  rules:
  - host: basic-auth
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: nginx-user, port: {number: 8080}}}}
`, false)
	f.ready(t, request{host: "basic-auth"}, expect{status: 403})
}

// TestIngressNginxRewrite: ingress-nginx's classic example, as its users
// wrote it: two apps behind one class-less Ingress, /a and /b, each app
// serving at its root (rewrite-target: /), and the capture-group form of
// the same.
func TestIngressNginxRewrite(t *testing.T) {
	f := newFeature(t)
	apps := f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: two-apps
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
spec:
  rules:
  - host: apps
    http:
      paths:
      - {path: /a, pathType: Prefix, backend: {service: {name: app-a, port: {number: 8080}}}}
      - {path: /b, pathType: Prefix, backend: {service: {name: app-b, port: {number: 8080}}}}
`, false)
	f.address(t, apps)
	f.ready(t, request{host: "apps", path: "/a"}, expect{status: 200, service: "app-a", path: "/"})
	f.scenario(t, "the second app, at its root", request{host: "apps", path: "/b/deeper"}, expect{status: 200, service: "app-b", path: "/"})

	f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: captures
  annotations:
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  rules:
  - host: captures
    http:
      paths:
      - {path: /something(/|$)(.*), pathType: ImplementationSpecific, backend: {service: {name: app-a, port: {number: 8080}}}}
`, false)
	f.ready(t, request{host: "captures", path: "/something/new/page"}, expect{status: 200, service: "app-a", path: "/new/page"})
	f.scenario(t, "the bare prefix", request{host: "captures", path: "/something"}, expect{status: 200, service: "app-a", path: "/"})
}

// TestIngressNginxCanary: a canary Ingress beside its main one, as
// ingress-nginx's users write them, is that route's canary, never a
// conflict: "X-Canary: always" reaches the canary and "never" the main
// route, every time, and with no header the weight (0) keeps the main.
func TestIngressNginxCanary(t *testing.T) {
	f := newFeature(t)
	main := f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: main}
spec:
  rules:
  - host: canary
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: stable, port: {number: 8080}}}}
`, false)
	f.address(t, main)
	f.ready(t, request{host: "canary"}, expect{status: 200, service: "stable"})
	f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: main-canary
  annotations:
    nginx.ingress.kubernetes.io/canary: "true"
    nginx.ingress.kubernetes.io/canary-by-header: X-Canary
    nginx.ingress.kubernetes.io/canary-weight: "0"
spec:
  rules:
  - host: canary
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: preview, port: {number: 8080}}}}
`, false)
	f.ready(t, request{host: "canary", headers: []string{"X-Canary: always"}}, expect{status: 200, service: "preview"})
	for _, c := range []struct {
		header  []string
		service string
	}{{[]string{"X-Canary: never"}, "stable"}, {nil, "stable"}, {[]string{"X-Canary: always"}, "preview"}} {
		req := request{host: "canary", headers: c.header}
		for i, r := range sendMany(t, f.addr, req, 10) {
			if err := f.check(req, r, expect{status: 200, service: c.service}); err != nil {
				t.Errorf("%v, request %d: %v", c.header, i, err)
			}
		}
	}
}
