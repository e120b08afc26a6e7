//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/ingress/proxy"
)

// TestIngressNginxUser: Ingresses as ingress-nginx's users wrote them,
// installed from the client's side of the lab. One without a class is
// Portico's, because the install makes its class the cluster's default;
// an allowlist that does not name the client refuses it (403); basic
// auth asks for credentials (401) and takes the right ones from its
// htpasswd Secret.
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
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, f.ns, fmt.Sprintf(`{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "users"}, "type": "Opaque", "stringData": {"auth": "alice:%s\n"}}`, hash))
	f.ready(t, request{host: "basic-auth"}, expect{status: 401})
	basic := func(user, pass string) []string {
		return []string{"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
	}
	f.scenario(t, "the wrong password", request{host: "basic-auth", headers: basic("alice", "guess")}, expect{status: 401})
	f.scenario(t, "the right password", request{host: "basic-auth", headers: basic("alice", "s3cret")}, expect{status: 200, service: "nginx-user"})
}

// TestIngressGRPC: gRPC services behind Ingresses with backend-protocol
// GRPC (HTTP/2 in the clear to the pods) and GRPCS (TLS to the pods,
// verified against the CA in proxy-ssl-secret), called from the client by
// a grpc-go program: unary calls with trailers and status codes, server,
// client and bidirectional streams, and a deadline. A GRPCS route whose
// proxy-ssl-name the pods' certificate does not carry refuses to talk to
// them.
func TestIngressGRPC(t *testing.T) {
	f := newFeature(t)
	backendCert, err := proxy.SelfSigned("grpc-backend", "grpc-backend."+f.ns+".svc")
	if err != nil {
		t.Fatal(err)
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: backendCert.Certificate[0]})
	key := keyPEM(t, backendCert)
	indent := func(b []byte) string { return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n            ") }
	apply(t, f.ns, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: grpcserver}
spec:
  replicas: 1
  selector: {matchLabels: {app: grpcserver}}
  template:
    metadata: {labels: {app: grpcserver}}
    spec:
      containers:
      - name: grpc
        image: lab.portico.dev/grpcserver:e2e
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - name: TLS_CERT
          value: |
            %s
        - name: TLS_KEY
          value: |
            %s
        ports: [{containerPort: 50051}, {containerPort: 50052}]
        readinessProbe: {tcpSocket: {port: 50051}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: grpc-backend}
spec:
  selector: {app: grpcserver}
  ports:
  - {name: grpc, port: 50051, targetPort: 50051}
  - {name: grpcs, port: 50052, targetPort: 50052}
---
apiVersion: v1
kind: Secret
metadata: {name: grpc-ca}
type: Opaque
stringData:
  ca.crt: |
    %s
`, indent(crt), indent(key), strings.ReplaceAll(strings.TrimSpace(string(crt)), "\n", "\n    ")))
	f.deployment["grpc-backend"] = "grpcserver" // no echo server for it
	ing := func(name, proto string, port int, extra string) string {
		return f.ingressOf(t, fmt.Sprintf(`
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: %[1]s
  annotations:
    nginx.ingress.kubernetes.io/backend-protocol: %[2]s
%[4]s
spec:
  rules:
  - host: %[1]s.lab
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: grpc-backend, port: {number: %[3]d}}}}
`, name, proto, port, extra), false)
	}
	plain := ing("grpc", "GRPC", 50051, "")
	ing("grpcs", "GRPCS", 50052, `    nginx.ingress.kubernetes.io/proxy-ssl-secret: grpc-ca
    nginx.ingress.kubernetes.io/proxy-ssl-verify: "on"`)
	ing("grpcs-wrong-name", "GRPCS", 50052, `    nginx.ingress.kubernetes.io/proxy-ssl-secret: grpc-ca
    nginx.ingress.kubernetes.io/proxy-ssl-verify: "on"
    nginx.ingress.kubernetes.io/proxy-ssl-name: someone-else.example`)
	f.address(t, plain)
	client := filepath.Join(cfg.Repo, "bin", "grpcclient")
	for _, host := range []string{"grpc.lab", "grpcs.lab"} {
		eventually(t, 30*time.Second, "every kind of gRPC call to "+host, func() error {
			out, code := labExec(t, "client", client, f.addr+":443", host)
			if code != 0 || !strings.HasPrefix(out, "ok pod grpcserver-") {
				return fmt.Errorf("grpcclient exited %d: %s", code, out)
			}
			return nil
		})
	}
	out, code := labExec(t, "client", client, f.addr+":443", "grpcs-wrong-name.lab")
	if code == 0 || !strings.Contains(out, "Unavailable") {
		t.Errorf("a GRPCS route whose pods' certificate is not for its proxy-ssl-name: exit %d, %s; want Unavailable (502)", code, out)
	}

	// ssl-passthrough: the pods' own TLS, end to end.
	f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: grpc-pass
  annotations:
    nginx.ingress.kubernetes.io/ssl-passthrough: "true"
spec:
  rules:
  - host: grpc-pass.lab
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: grpc-backend, port: {number: 50052}}}}
`, false)
	eventually(t, 30*time.Second, "every kind of gRPC call through ssl-passthrough", func() error {
		out, code := labExec(t, "client", client, f.addr+":443", "grpc-pass.lab")
		if code != 0 || !strings.HasPrefix(out, "ok pod grpcserver-") {
			return fmt.Errorf("grpcclient exited %d: %s", code, out)
		}
		return nil
	})
	out, _ = labExec(t, "client", "sh", "-c", "openssl s_client -connect "+f.addr+":443 -servername grpc-pass.lab </dev/null 2>/dev/null | openssl x509 -noout -subject")
	if !strings.Contains(out, "grpc-backend") {
		t.Errorf("through ssl-passthrough the client saw the certificate of %q, want the pods' own (grpc-backend)", out)
	}
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

// keyPEM is the PEM of c's private key.
func keyPEM(t *testing.T, c *tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestIngressNginxTraffic: the redirect, CORS, limit and affinity
// annotations as ingress-nginx's users write them, each from the client.
func TestIngressNginxTraffic(t *testing.T) {
	f := newFeature(t)
	ing := func(name, annotations string) string {
		return f.ingressOf(t, fmt.Sprintf(`
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: %[1]s
  annotations:
%[2]s
spec:
  rules:
  - host: %[1]s.lab
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: traffic, port: {number: 8080}}}}
`, name, annotations), false)
	}
	first := ing("sticky", `    nginx.ingress.kubernetes.io/affinity: cookie
    nginx.ingress.kubernetes.io/session-cookie-name: route`)
	f.address(t, first)
	f.ready(t, request{host: "sticky.lab"}, expect{status: 200, service: "traffic"})
	pods := f.scale(t, "traffic", 2)

	// Affinity: the cookie the first answer sets keeps every later request
	// on its pod, while requests without it reach both.
	r := f.scenario(t, "the first request of a session", request{host: "sticky.lab"}, expect{status: 200, service: "traffic"})
	cookie, _, _ := strings.Cut(r.header.Get("Set-Cookie"), ";")
	if !strings.HasPrefix(cookie, "route=") {
		t.Fatalf("Set-Cookie %q, want the route cookie", r.header.Get("Set-Cookie"))
	}
	served := map[string]int{}
	for _, r := range sendMany(t, f.addr, request{host: "sticky.lab", headers: []string{"Cookie: " + cookie}}, 10) {
		if r.echo != nil {
			served[r.echo.Pod]++
		}
	}
	if len(served) != 1 || served[r.echo.Pod] != 10 {
		t.Errorf("with its cookie, the session reached %v, want its pod %s ten times", served, r.echo.Pod)
	}
	eventually(t, 30*time.Second, "requests without the cookie reach both pods", func() error {
		seen := map[string]bool{}
		for _, r := range sendMany(t, f.addr, request{host: "sticky.lab"}, 10) {
			if r.echo != nil {
				seen[r.echo.Pod] = true
			}
		}
		if len(seen) != len(pods) {
			return fmt.Errorf("reached %v of %v", seen, pods)
		}
		return nil
	})

	ing("moved", `    nginx.ingress.kubernetes.io/permanent-redirect: https://elsewhere.example/new`)
	eventually(t, 30*time.Second, "permanent-redirect", func() error {
		if r := send(t, f.addr, request{host: "moved.lab", path: "/old"}); len(r.redirects) == 0 || r.redirects[0] != "https://elsewhere.example/new" {
			return fmt.Errorf("status %d, redirects %v", r.status, r.redirects)
		}
		return nil
	})

	ing("cors", `    nginx.ingress.kubernetes.io/enable-cors: "true"
    nginx.ingress.kubernetes.io/cors-allow-origin: https://app.example`)
	f.ready(t, request{host: "cors.lab"}, expect{status: 200, service: "traffic"})
	pre := f.scenario(t, "a CORS preflight", request{method: "OPTIONS", host: "cors.lab", headers: []string{"Origin: https://app.example", "Access-Control-Request-Method: PUT"}}, expect{status: 204})
	if pre.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("preflight: Access-Control-Allow-Origin %q", pre.header.Get("Access-Control-Allow-Origin"))
	}

	ing("limited", `    nginx.ingress.kubernetes.io/limit-rps: "1"
    nginx.ingress.kubernetes.io/limit-burst-multiplier: "2"
    nginx.ingress.kubernetes.io/proxy-body-size: 1k`)
	f.ready(t, request{host: "limited.lab"}, expect{status: 200, service: "traffic"})
	time.Sleep(3 * time.Second) // the bucket refills
	statuses := map[int]int{}
	for _, r := range sendMany(t, f.addr, request{host: "limited.lab"}, 12) {
		statuses[r.status]++
	}
	if statuses[503] == 0 || statuses[200] == 0 {
		t.Errorf("12 requests at once against limit-rps 1 with a burst of 2: %v, want some 200 and some 503", statuses)
	}
	f.scenario(t, "a body over proxy-body-size", request{method: "POST", host: "limited.lab", body: strings.Repeat("x", 2048)}, expect{status: 413})

	ing("www.example-lab", `    nginx.ingress.kubernetes.io/from-to-www-redirect: "true"`)
	eventually(t, 30*time.Second, "from-to-www-redirect", func() error {
		r := send(t, f.addr, request{host: "example-lab.lab"})
		if len(r.redirects) != 1 || r.redirects[0] != "http://www.example-lab.lab/" || r.status != 200 {
			return fmt.Errorf("status %d, redirects %v", r.status, r.redirects)
		}
		return nil
	})
}

// clientCA makes a CA, a client certificate it signs, and writes the
// certificate and key to PEM files for curl. It returns the CA's PEM and
// the files.
func clientCA(t *testing.T, name string) (caPEM []byte, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " client"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile, keyFile
}

// TestIngressClientCertificates: auth-tls-* as ingress-nginx's users
// write them, with curl from the client: no certificate or one from
// another authority gets 400; the right one reaches the backend, which
// is told who it is.
func TestIngressClientCertificates(t *testing.T) {
	f := newFeature(t)
	caPEM, cert, key := clientCA(t, "trusted")
	_, otherCert, otherKey := clientCA(t, "stranger")
	apply(t, f.ns, fmt.Sprintf(`{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "client-ca"}, "type": "Opaque", "stringData": {"ca.crt": %q}}`, caPEM))
	name := f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: mtls
  annotations:
    nginx.ingress.kubernetes.io/auth-tls-secret: client-ca
    nginx.ingress.kubernetes.io/auth-tls-verify-client: "on"
    nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream: "true"
spec:
  tls:
  - hosts: [mtls.lab]
  rules:
  - host: mtls.lab
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: mtls-app, port: {number: 8080}}}}
`, false)
	f.address(t, name)
	r := f.scenario(t, "the right client certificate", request{https: true, host: "mtls.lab", cert: cert, key: key}, expect{status: 200, service: "mtls-app"})
	if v := r.echo.Headers["Ssl-Client-Verify"]; len(v) != 1 || v[0] != "SUCCESS" {
		t.Errorf("the backend was told ssl-client-verify %v, want SUCCESS", v)
	}
	if v := r.echo.Headers["Ssl-Client-Subject-Dn"]; len(v) != 1 || !strings.Contains(v[0], "CN=trusted client") {
		t.Errorf("the backend was told ssl-client-subject-dn %v", v)
	}
	if len(r.echo.Headers["Ssl-Client-Cert"]) != 1 {
		t.Errorf("the backend was not passed the certificate: %v", r.echo.Headers)
	}
	f.scenario(t, "no client certificate", request{https: true, host: "mtls.lab"}, expect{status: 400})
	f.scenario(t, "another authority's certificate", request{https: true, host: "mtls.lab", cert: otherCert, key: otherKey}, expect{status: 400})
	f.scenario(t, "a forged verification header without a certificate", request{https: true, host: "mtls.lab", headers: []string{"ssl-client-verify: SUCCESS"}}, expect{status: 400})
}

// TestIngressExternalAuth: auth-url with an authentication service in
// the cluster, as oauth2-proxy is used: without a token the client is
// sent to sign in, with it the request reaches the backend with the user
// the service named.
func TestIngressExternalAuth(t *testing.T) {
	f := newFeature(t)
	apply(t, f.ns, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: authserver}
spec:
  replicas: 1
  selector: {matchLabels: {app: authserver}}
  template:
    metadata: {labels: {app: authserver}}
    spec:
      containers:
      - name: auth
        image: lab.portico.dev/authserver:e2e
        env: [{name: TOKEN, value: good}, {name: USER_NAME, value: alice}]
        ports: [{containerPort: 3000}]
        readinessProbe: {httpGet: {path: /health, port: 3000}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: authsvc}
spec:
  selector: {app: authserver}
  ports: [{port: 80, targetPort: 3000}]
`)
	readyPods(t, f.ns, "app=authserver", 1)
	svc, err := cs.CoreV1().Services(f.ns).Get(context.Background(), "authsvc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The lab has no cluster DNS: the service is named by its cluster IP.
	name := f.ingressOf(t, fmt.Sprintf(`
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: guarded
  annotations:
    nginx.ingress.kubernetes.io/auth-url: http://%s/oauth2/auth
    nginx.ingress.kubernetes.io/auth-signin: https://login.example/start
    nginx.ingress.kubernetes.io/auth-response-headers: X-Auth-User
spec:
  rules:
  - host: guarded.lab
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: guarded-app, port: {number: 8080}}}}
`, svc.Spec.ClusterIP), false)
	f.address(t, name)
	f.ready(t, request{host: "guarded.lab", headers: []string{"Authorization: Bearer good"}}, expect{status: 200, service: "guarded-app"})
	r := f.scenario(t, "with the token", request{host: "guarded.lab", path: "/page", headers: []string{"Authorization: Bearer good", "X-Auth-User: mallory"}},
		expect{status: 200, service: "guarded-app"})
	if v := r.echo.Headers["X-Auth-User"]; len(v) != 1 || v[0] != "alice" {
		t.Errorf("the backend was told X-Auth-User %v, want the service's alice only", v)
	}
	r = send(t, f.addr, request{host: "guarded.lab", path: "/page"})
	if len(r.redirects) == 0 || !strings.HasPrefix(r.redirects[0], "https://login.example/start?rd=") {
		t.Errorf("without a token: status %d, redirects %v; want a redirect to sign in", r.status, r.redirects)
	}
}

// TestIngressErrorPages: custom-http-errors with default-backend: an
// error the app answers, and a Service with no pod, reach the error
// backend with what it needs to render its page.
func TestIngressErrorPages(t *testing.T) {
	f := newFeature(t)
	apply(t, f.ns, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain-nginx}
spec:
  replicas: 1
  selector: {matchLabels: {app: plain-nginx}}
  template:
    metadata: {labels: {app: plain-nginx}}
    spec:
      containers:
      - {name: nginx, image: "nginx:1.27", ports: [{containerPort: 80}], readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {name: site}
spec:
  selector: {app: plain-nginx}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: no-such-pod}
  ports: [{port: 80, targetPort: 80}]
`)
	f.deployment["site"], f.deployment["nobody"] = "plain-nginx", "none"
	f.pods["site"] = names(readyPods(t, f.ns, "app=plain-nginx", 1))
	f.pods["nobody"] = map[string]bool{}
	name := f.ingressOf(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: pages
  annotations:
    nginx.ingress.kubernetes.io/custom-http-errors: "404,503"
    nginx.ingress.kubernetes.io/default-backend: errpages
spec:
  rules:
  - host: pages.lab
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: site, port: {number: 80}}}}
      - {path: /gone, pathType: Prefix, backend: {service: {name: nobody, port: {number: 80}}}}
  - host: errpages.lab
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: errpages, port: {number: 8080}}}}
`, false)
	f.address(t, name)
	f.ready(t, request{host: "errpages.lab"}, expect{status: 200, service: "errpages"})
	for _, c := range []struct {
		path, code string
	}{{"/missing", "404"}, {"/gone/away", "503"}} {
		var r response
		eventually(t, 30*time.Second, "the error page of "+c.path, func() error {
			r = send(t, f.addr, request{host: "pages.lab", path: c.path})
			if r.echo == nil || r.echo.Service != "errpages" {
				return fmt.Errorf("status %d, body %.80q", r.status, r.body)
			}
			return nil
		})
		if v := r.echo.Headers["X-Code"]; len(v) != 1 || v[0] != c.code {
			t.Errorf("%s: the error backend was told X-Code %v, want %s", c.path, v, c.code)
		}
		if v := r.echo.Headers["X-Original-Uri"]; len(v) != 1 || v[0] != c.path {
			t.Errorf("%s: the error backend was told X-Original-URI %v", c.path, v)
		}
	}
}
