//go:build e2e

package e2e

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/e2e/echoserver"
	"github.com/portico-lb/portico/e2e/lab"
)

// The Ingress conformance suite (kubernetes-sigs/ingress-controller-
// conformance, features path_rules, host_rules, default_backend,
// load_balancing and ingress_class) in the lab, every scenario a test of its
// own, driven as the suite drives a controller: for every Service an Ingress
// names, an echo Deployment and a NodePort Service on port 8080; the
// Ingress's address read from its status; from the client, curl to that
// address with the request's Host, on port 80, and with SNI on 443; the
// verdict from the status code and from what the echo server says about
// the request it got. Features share one namespace and one set of backends
// across their scenarios, where the suite makes them anew per scenario.

// ingressClass is the class the suite is told to use (its --ingress-class).
const ingressClass = "portico"

// feature is a conformance feature's Background: a namespace, the echo
// backends of its Ingresses and the address they are served on.
type feature struct {
	ns   string
	addr string
	// pods holds the Ready echo pods behind each Service.
	pods map[string]map[string]bool
	// deployment names the echo Deployment behind each Service.
	deployment map[string]string
}

func newFeature(t *testing.T) *feature {
	t.Helper()
	installPortico(t)
	return &feature{ns: namespace(t), pods: map[string]map[string]bool{}, deployment: map[string]string{}}
}

// ingress does what the suite's "an Ingress resource" steps do: it deploys
// an echo backend for every Service the Ingress names that has none yet,
// waits for its pod, then creates the Ingress, of class portico unless it
// names one. It returns the Ingress's name.
func (f *feature) ingress(t *testing.T, manifest string) string {
	t.Helper()
	return f.ingressOf(t, manifest, true)
}

// ingressOf is ingress, with the class left as the manifest has it unless
// setClass: a class-less Ingress is then made as a user would make it, and
// the API server gives it the cluster's default class.
func (f *feature) ingressOf(t *testing.T, manifest string, setClass bool) string {
	t.Helper()
	var ing networkingv1.Ingress
	if err := yaml.UnmarshalStrict([]byte(manifest), &ing); err != nil {
		t.Fatalf("Ingress manifest: %v", err)
	}
	if ing.Spec.IngressClassName == nil && setClass {
		ing.Spec.IngressClassName = ptr.To(ingressClass)
	}
	var backends []networkingv1.IngressBackend
	if b := ing.Spec.DefaultBackend; b != nil {
		backends = append(backends, *b)
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP != nil {
			for _, p := range r.HTTP.Paths {
				backends = append(backends, p.Backend)
			}
		}
	}
	var yamls []string
	for _, b := range backends {
		svc := b.Service
		if _, done := f.deployment[svc.Name]; done {
			continue
		}
		dep := ing.Name + "-" + svc.Name
		f.deployment[svc.Name] = dep
		yamls = append(yamls, echoBackend(dep, ing.Name, svc.Name, svc.Port))
	}
	if len(yamls) > 0 {
		apply(t, f.ns, strings.Join(yamls, "---\n"))
	}
	for svc, dep := range f.deployment {
		if f.pods[svc] == nil {
			f.pods[svc] = names(readyPods(t, f.ns, "app="+dep, 1))
		}
	}
	js, err := json.Marshal(ing)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, f.ns, string(js))
	// The controller serves every namespace: an Ingress left behind, even
	// for a moment while its namespace goes, would take other tests'
	// requests (a defaultBackend takes them all; an older Ingress wins a
	// host both claim), also in a lab kept with PORTICO_LAB_KEEP.
	t.Cleanup(func() { kubectl(t, "", "delete", "ingress", "-n", f.ns, ing.Name, "--wait=true") })
	return ing.Name
}

// echoBackend is what the suite deploys for a Service an Ingress names: a
// Deployment of one echo pod that reports the Ingress and the Service, and a
// NodePort Service on the port the Ingress names (8080 when it names one by
// name) in front of the pod's port 3000.
func echoBackend(deployment, ingress, service string, port networkingv1.ServiceBackendPort) string {
	number, name := port.Number, ""
	if number == 0 {
		number = 8080
	}
	if port.Name != "" {
		name = "name: " + port.Name + ", "
	}
	return fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - name: echo
        image: ingressconformance/echoserver:v0.0.1
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: INGRESS_NAME, value: %[2]s}
        - {name: SERVICE_NAME, value: %[3]s}
        ports: [{%[4]scontainerPort: 3000}]
        readinessProbe: {httpGet: {path: /health, port: 3000}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: %[3]s}
spec:
  type: NodePort
  selector: {app: %[1]s}
  ports: [{%[4]sport: %[5]d, targetPort: 3000}]
`, deployment, ingress, service, name, number)
}

// scale sets the replicas of the echo Deployment behind service and waits
// for them to be Ready.
func (f *feature) scale(t *testing.T, service string, replicas int) map[string]bool {
	t.Helper()
	dep := f.deployment[service]
	kubectl(t, "", "scale", "-n", f.ns, "deployment/"+dep, "--replicas="+strconv.Itoa(replicas))
	f.pods[service] = names(readyPods(t, f.ns, "app="+dep, replicas))
	return f.pods[service]
}

// address does what the suite's "The Ingress status shows the IP address
// or FQDN where it is exposed" does, and more: it waits for the Ingress's
// status to show an address, checks that it is the portico-ingress
// Service's first LoadBalancer address and the default pool's first
// address, and that `kubectl get ingress` shows it as ADDRESS.
func (f *feature) address(t *testing.T, ingress string) string {
	t.Helper()
	first, _, _ := strings.Cut(lab.PoolV4, "-")
	if got := lbIPs(t, "portico-system", "portico-ingress")[0]; got != first {
		t.Fatalf("the ingress Service has %s, want the pool's first address %s", got, first)
	}
	eventually(t, 30*time.Second, "the address of Ingress "+ingress, func() error {
		ing, err := cs.NetworkingV1().Ingresses(f.ns).Get(context.Background(), ingress, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lb := ing.Status.LoadBalancer.Ingress; len(lb) == 0 || lb[0].IP != first {
			return fmt.Errorf("status %+v, want %s first", lb, first)
		}
		return nil
	})
	out := kubectl(t, "", "get", "ingress", "-n", f.ns, ingress)
	if got := column(out, "ADDRESS"); got != first {
		t.Fatalf("kubectl get ingress shows ADDRESS %q, want %s:\n%s", got, first, out)
	}
	f.addr = first
	return first
}

// column returns the value in the named column of kubectl's one-object
// table output.
func column(table, name string) string {
	lines := strings.Split(strings.TrimSpace(table), "\n")
	at := strings.Index(lines[0], name)
	if len(lines) < 2 || at < 0 || at >= len(lines[1]) {
		return ""
	}
	if f := strings.Fields(lines[1][at:]); len(f) > 0 {
		return f[0]
	}
	return ""
}

// request is one HTTP request as the suite sends it to an Ingress's
// address: Host (and, over HTTPS, the TLS server name) is host, or the
// address itself when host is empty.
type request struct {
	method string // GET when empty
	https  bool
	host   string
	path   string // "/" when empty
	// ca, over HTTPS, is a PEM file of the CA the server's certificate must
	// verify against for host; empty: not verified (the suite does not).
	ca string
	// headers are more request header lines ("Name: value").
	headers []string
	// body, when set, is sent as the request's body.
	body string
	// cert and key, over HTTPS, are PEM files of the client certificate
	// to present.
	cert, key string
}

// response is what the client got.
type response struct {
	status int
	proto  string
	header http.Header
	body   string
	// echo is what the echo server says of the request it got; nil when
	// the body is not the echo server's.
	echo *echoserver.Response
	// redirects lists the Location of each redirect followed.
	redirects []string
	// err is set when curl got no HTTP response at all; exit is curl's
	// exit code.
	err  error
	exit int
	// at is when the request was sent (startSending only).
	at time.Time
}

// curlArgs is the curl command line for one request to addr. It writes
// the body, then curlMark, the status, HTTP version, curl's exit code and
// error message, the response headers as JSON, and curlEnd.
func (r request) curlArgs(addr string) []string {
	path := r.path
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	args := []string{"curl", "-s", "--http1.1", "-m", "10", "-X", cmp.Or(r.method, "GET"),
		// What the suite's Go client sends.
		"-A", "Go-http-client/1.1",
		"-w", `\n` + curlMark + `%{http_code} %{http_version} %{exitcode} %{errormsg}\n%{header_json}\n` + curlEnd + `\n`}
	for _, h := range r.headers {
		args = append(args, "-H", h)
	}
	if r.body != "" {
		args = append(args, "--data-binary", r.body)
	}
	host := cmp.Or(r.host, addr)
	if !r.https {
		return append(args, "-H", "Host: "+host, "http://"+addr+path)
	}
	if r.cert != "" {
		args = append(args, "--cert", r.cert, "--key", r.key)
	}
	if r.ca != "" {
		args = append(args, "--cacert", r.ca)
	} else {
		args = append(args, "-k")
	}
	// curl connects to addr, with host as the TLS server name and Host.
	return append(args, "--resolve", host+":443:"+addr, "https://"+host+path)
}

const (
	curlMark = "@@curl@@ "
	curlEnd  = "@@curl-end@@"
)

// parseCurl splits the output of one or more curlArgs runs into responses.
func parseCurl(out string) []response {
	var rs []response
	for _, rec := range strings.Split(out, curlEnd+"\n") {
		i := strings.LastIndex(rec, "\n"+curlMark)
		if i < 0 {
			continue
		}
		r := response{body: rec[:i]}
		meta, headers, _ := strings.Cut(rec[i+len(curlMark)+1:], "\n")
		f := strings.SplitN(meta, " ", 4)
		if len(f) < 3 {
			r.err = fmt.Errorf("curl wrote %q", meta)
			rs = append(rs, r)
			continue
		}
		r.status, _ = strconv.Atoi(f[0])
		r.proto = "HTTP/" + f[1]
		if r.exit, _ = strconv.Atoi(f[2]); r.exit != 0 || r.status == 0 {
			r.err = fmt.Errorf("curl: exit %d: %s", r.exit, strings.Join(f[3:], " "))
		}
		var hs map[string][]string
		if err := json.Unmarshal([]byte(headers), &hs); err == nil {
			r.header = http.Header{}
			for k, v := range hs {
				r.header[http.CanonicalHeaderKey(k)] = v
			}
		}
		var e echoserver.Response
		if json.Unmarshal([]byte(r.body), &e) == nil && e.Pod != "" {
			r.echo = &e
		}
		rs = append(rs, r)
	}
	return rs
}

// send sends req to addr from the client and, like the suite, follows
// redirects by sending the same request to addr again, with the scheme,
// host and path of the Location.
func send(t *testing.T, addr string, req request) response {
	t.Helper()
	var redirects []string
	for {
		out, _ := labExec(t, "client", req.curlArgs(addr)...)
		rs := parseCurl(out)
		if len(rs) != 1 {
			return response{err: fmt.Errorf("curl wrote %q", out)}
		}
		r := rs[0]
		r.redirects = redirects
		loc := r.header.Get("Location")
		if r.err != nil || r.status < 300 || r.status > 399 || loc == "" {
			return r
		}
		u, err := url.Parse(loc)
		if err != nil || len(redirects) == 5 {
			r.err = fmt.Errorf("redirects %v, then to %q", redirects, loc)
			return r
		}
		redirects = append(redirects, loc)
		req.https, req.host, req.path = u.Scheme == "https", u.Hostname(), u.Path
	}
}

// sendMany sends req to addr n times from the client, one curl (and so one
// connection) after another, and returns every response.
func sendMany(t *testing.T, addr string, req request, n int) []response {
	t.Helper()
	out, _ := labExec(t, "client", "sh", "-c", fmt.Sprintf("for i in $(seq %d); do %s; done", n, shellJoin(req.curlArgs(addr))))
	return parseCurl(out)
}

// startSending sends req to addr from the client, one curl (and so one
// connection) after another, 20 ms apart, until the returned function is
// called; that returns every response, each with the time it was sent.
func startSending(t *testing.T, addr string, req request) (stop func() []response) {
	t.Helper()
	quit, done := make(chan struct{}), make(chan []response)
	go func() {
		var rs []response
		for {
			select {
			case <-quit:
				done <- rs
				return
			case <-time.After(20 * time.Millisecond):
			}
			at := time.Now()
			out, _ := labExec(t, "client", req.curlArgs(addr)...)
			r := response{err: fmt.Errorf("curl wrote %q", out)}
			if got := parseCurl(out); len(got) == 1 {
				r = got[0]
			}
			r.at = at
			rs = append(rs, r)
		}
	}()
	return func() []response {
		close(quit)
		return <-done
	}
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// expect is what a scenario's Then steps check.
type expect struct {
	status int
	// service must have served the request ("the response must be served
	// by the ... service"): the echo server says so, and names one of the
	// service's pods and the feature's namespace. It also checks that the
	// request path reached the backend unchanged.
	service string
	// host is the Host the backend must have seen, when set.
	host string
	// path is the path the backend must have got, when it is not the
	// request's (a rewrite).
	path string
}

// check compares r with what is expected of req.
func (f *feature) check(req request, r response, want expect) error {
	if r.err != nil {
		return r.err
	}
	if r.status != want.status {
		return fmt.Errorf("status %d, want %d (body %q)", r.status, want.status, r.body)
	}
	if want.service == "" {
		return nil
	}
	e := r.echo
	if e == nil {
		return fmt.Errorf("the body is not the echo server's: %q", r.body)
	}
	if e.Service != want.service || e.Namespace != f.ns || !f.pods[want.service][e.Pod] {
		return fmt.Errorf("served by service %q, pod %s/%s; want service %q, one of %v in %s", e.Service, e.Namespace, e.Pod, want.service, f.pods[want.service], f.ns)
	}
	if path := cmp.Or(want.path, "/"+strings.TrimPrefix(req.path, "/")); e.Path != path {
		return fmt.Errorf("the backend got path %q, want %q", e.Path, path)
	}
	if want.host != "" && e.Host != want.host {
		return fmt.Errorf("the backend got Host %q, want %q", e.Host, want.host)
	}
	return nil
}

// scenario runs one scenario: it sends req and checks the answer. A
// backend whose endpoints the ingress has not seen yet answers 503, and a
// refused connection is no answer: those are sent again, for up to 15 s;
// the first other answer is judged.
func (f *feature) scenario(t *testing.T, why string, req request, want expect) response {
	t.Helper()
	var r response
	eventually(t, 15*time.Second, why, func() error {
		r = send(t, f.addr, req)
		if r.err != nil {
			return r.err
		}
		if r.status == http.StatusServiceUnavailable && want.status != r.status {
			return fmt.Errorf("status %d (body %q)", r.status, r.body)
		}
		return nil
	})
	if err := f.check(req, r, want); err != nil {
		t.Fatalf("%s: %v", why, err)
	}
	return r
}

// ready waits until a request the Ingress routes gets its backend's answer,
// so that the scenarios that expect 404 after it mean something.
func (f *feature) ready(t *testing.T, req request, want expect) {
	t.Helper()
	eventually(t, 30*time.Second, "the Ingress routes", func() error {
		return f.check(req, send(t, f.addr, req), want)
	})
}

// TestConformancePathRules: the path_rules feature. Exact paths match the
// whole path, case-sensitively; Prefix paths match whole path elements,
// the longest wins, a trailing slash of the rule or the request does not
// matter; for the same path, Exact beats Prefix; everything else is 404.
func TestConformancePathRules(t *testing.T) {
	f := newFeature(t)
	name := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: path-rules}
spec:
  rules:
  - host: exact-path-rules
    http:
      paths:
      - {path: /foo, pathType: Exact, backend: {service: {name: foo-exact, port: {number: 8080}}}}
  - host: prefix-path-rules
    http:
      paths:
      - {path: /foo, pathType: Prefix, backend: {service: {name: foo-prefix, port: {number: 8080}}}}
      - {path: /aaa/bbb, pathType: Prefix, backend: {service: {name: aaa-slash-bbb-prefix, port: {number: 8080}}}}
      - {path: /aaa, pathType: Prefix, backend: {service: {name: aaa-prefix, port: {number: 8080}}}}
  - host: mixed-path-rules
    http:
      paths:
      - {path: /foo, pathType: Prefix, backend: {service: {name: foo-prefix, port: {number: 8080}}}}
      - {path: /foo, pathType: Exact, backend: {service: {name: foo-exact, port: {number: 8080}}}}
  - host: trailing-slash-path-rules
    http:
      paths:
      - {path: /aaa/bbb/, pathType: Prefix, backend: {service: {name: aaa-slash-bbb-slash-prefix, port: {number: 8080}}}}
      - {path: /foo/, pathType: Exact, backend: {service: {name: foo-slash-exact, port: {number: 8080}}}}
`)
	f.address(t, name)
	f.ready(t, request{host: "exact-path-rules", path: "/foo"}, expect{status: 200, service: "foo-exact"})

	// The feature lists "prefix /foo matches request /foo/" twice; it runs
	// once here.
	for _, s := range []struct {
		name, why  string
		host, path string
		want       expect
	}{
		{"ExactMatches", "exact /foo matches request /foo", "exact-path-rules", "/foo", expect{status: 200, service: "foo-exact"}},
		{"ExactNotWithTrailingSlash", "exact /foo does not match request /foo/", "exact-path-rules", "/foo/", expect{status: 404}},
		{"ExactCaseSensitive", "exact /foo does not match request /FOO", "exact-path-rules", "/FOO", expect{status: 404}},
		{"ExactNotOtherLabel", "exact /foo does not match request /bar", "exact-path-rules", "/bar", expect{status: 404}},
		{"PrefixMatches", "prefix /foo matches request /foo", "prefix-path-rules", "/foo", expect{status: 200, service: "foo-prefix"}},
		{"PrefixIgnoresRequestTrailingSlash", "prefix /foo matches request /foo/", "prefix-path-rules", "/foo/", expect{status: 200, service: "foo-prefix"}},
		{"PrefixCaseSensitive", "prefix /foo does not match request /FOO", "prefix-path-rules", "/FOO", expect{status: 404}},
		{"PrefixLongestMultipleLabels", "prefix /aaa/bbb matches request /aaa/bbb", "prefix-path-rules", "/aaa/bbb", expect{status: 200, service: "aaa-slash-bbb-prefix"}},
		{"PrefixLongestSubpath", "prefix /aaa/bbb matches request /aaa/bbb/ccc", "prefix-path-rules", "/aaa/bbb/ccc", expect{status: 200, service: "aaa-slash-bbb-prefix"}},
		{"PrefixShorterSubpath", "prefix /aaa matches request /aaa/ccc", "prefix-path-rules", "/aaa/ccc", expect{status: 200, service: "aaa-prefix"}},
		{"PrefixWholeLabels", "prefix /aaa does not match request /aaaccc", "prefix-path-rules", "/aaaccc", expect{status: 404}},
		{"MixedExactPreferred", "exact /foo matches request /foo, over prefix /foo", "mixed-path-rules", "/foo", expect{status: 200, service: "foo-exact"}},
		{"TrailingSlashPrefixWithout", "prefix /aaa/bbb/ matches request /aaa/bbb", "trailing-slash-path-rules", "/aaa/bbb", expect{status: 200, service: "aaa-slash-bbb-slash-prefix"}},
		{"TrailingSlashPrefixWith", "prefix /aaa/bbb/ matches request /aaa/bbb/", "trailing-slash-path-rules", "/aaa/bbb/", expect{status: 200, service: "aaa-slash-bbb-slash-prefix"}},
		{"TrailingSlashExactWithout", "exact /foo/ does not match request /foo", "trailing-slash-path-rules", "/foo", expect{status: 404}},
	} {
		t.Run(s.name, func(t *testing.T) {
			f.scenario(t, s.why, request{host: s.host, path: s.path}, s.want)
		})
	}
}

// TestConformanceHostRules: the host_rules feature. A request reaches the
// backend of its host's rule, with that Host; a TLS host gets the
// certificate of its Secret by SNI, and plain HTTP to it is redirected to
// HTTPS; "*.foo.com" covers exactly one more label; other hosts get 404.
func TestConformanceHostRules(t *testing.T) {
	f := newFeature(t)
	ca := tlsSecret(t, f.ns, "conformance-tls", "foo.bar.com")
	name := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: host-rules}
spec:
  tls:
  - {hosts: [foo.bar.com], secretName: conformance-tls}
  rules:
  - host: "*.foo.com"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: wildcard-foo-com, port: {number: 8080}}}}
  - host: foo.bar.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: foo-bar-com, port: {name: http}}}}
`)
	f.address(t, name)
	f.ready(t, request{host: "bar.foo.com"}, expect{status: 200, service: "wildcard-foo-com"})

	t.Run("TLSToMatchingHost", func(t *testing.T) {
		// curl verifies the certificate against the Secret's CA and
		// foo.bar.com: the default certificate would fail.
		f.scenario(t, "https://foo.bar.com verifies foo.bar.com and is served by foo-bar-com",
			request{https: true, host: "foo.bar.com", ca: ca}, expect{status: 200, service: "foo-bar-com", host: "foo.bar.com"})
	})
	t.Run("MatchingHost", func(t *testing.T) {
		r := f.scenario(t, "http://foo.bar.com is served by foo-bar-com",
			request{host: "foo.bar.com"}, expect{status: 200, service: "foo-bar-com", host: "foo.bar.com"})
		// foo.bar.com has TLS: the plain request was redirected.
		if want := []string{"https://foo.bar.com/"}; !slices.Equal(r.redirects, want) {
			t.Errorf("redirects %v, want %v", r.redirects, want)
		}
	})
	for _, s := range []struct {
		name, why, host string
		want            expect
	}{
		{"NotOtherHost", "foo.bar.com does not match request subdomain.bar.com", "subdomain.bar.com", expect{status: 404}},
		{"WildcardMatches", "*.foo.com matches request bar.foo.com", "bar.foo.com", expect{status: 200, service: "wildcard-foo-com", host: "bar.foo.com"}},
		{"WildcardNotTwoLabels", "*.foo.com does not match request baz.bar.foo.com", "baz.bar.foo.com", expect{status: 404}},
		{"WildcardNotNoLabel", "*.foo.com does not match request foo.com", "foo.com", expect{status: 404}},
	} {
		t.Run(s.name, func(t *testing.T) {
			f.scenario(t, s.why, request{host: s.host}, s.want)
		})
	}
}

// TestConformanceDefaultBackend: the default_backend feature. An Ingress
// with only a defaultBackend gets every request, whatever its method, host
// and path; the backend sees the request as sent, over HTTP/1.1, and the
// response carries the headers a server sends.
func TestConformanceDefaultBackend(t *testing.T) {
	f := newFeature(t)
	name := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: default-backend}
spec:
  defaultBackend: {service: {name: echo-service, port: {number: 8080}}}
`)
	f.address(t, name)
	f.ready(t, request{host: "my-host"}, expect{status: 200, service: "echo-service"})

	for _, s := range []struct{ method, host, path string }{
		{"GET", "my-host", ""},
		{"GET", "my-host", "sub-path"},
		{"POST", "some-host", ""},
		{"PUT", "", "resource"},
		{"DELETE", "some-host", "resource"},
		{"PATCH", "my-host", "resource"},
	} {
		host, path := cmp.Or(s.host, "no-host"), cmp.Or(s.path, "root")
		t.Run(s.method+"_"+host+"_"+path, func(t *testing.T) {
			req := request{method: s.method, host: s.host, path: s.path}
			r := f.scenario(t, s.method+" to http://"+s.host+"/"+s.path+" is served by echo-service", req, expect{status: 200, service: "echo-service"})
			if r.proto != "HTTP/1.1" {
				t.Errorf("response proto %q, want HTTP/1.1", r.proto)
			}
			for _, h := range []string{"Content-Length", "Content-Type", "Date", "Server"} {
				if r.header.Get(h) == "" {
					t.Errorf("response has no %s header: %v", h, r.header)
				}
			}
			if r.echo.Method != s.method || r.echo.Proto != "HTTP/1.1" {
				t.Errorf("the backend got %s %s, want %s HTTP/1.1", r.echo.Method, r.echo.Proto, s.method)
			}
			if ua := r.echo.Headers["User-Agent"]; !slices.Equal(ua, []string{"Go-http-client/1.1"}) {
				t.Errorf("the backend got User-Agent %q, want the client's Go-http-client/1.1", ua)
			}
		})
	}
}

// TestConformanceLoadBalancing: the load_balancing feature. With the
// defaultBackend's Deployment scaled to 10, 100 requests all succeed and
// reach all 10 pods.
func TestConformanceLoadBalancing(t *testing.T) {
	f := newFeature(t)
	name := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: load-balancing}
spec:
  defaultBackend: {service: {name: echo-service, port: {number: 8080}}}
`)
	f.address(t, name)
	pods := f.scale(t, "echo-service", 10)

	t.Run("AllPodsGetRequests", func(t *testing.T) {
		// The suite waits a minute after scaling; here the 100 requests
		// are sent again until the ingress has all 10 endpoints.
		eventually(t, 30*time.Second, "100 requests to http://load-balancing reach 10 pods", func() error {
			req := request{host: "load-balancing"}
			return spreadOver(f, req, sendMany(t, f.addr, req, 100), 100, "echo-service", pods)
		})
	})
}

// spreadOver checks that n responses to req came, all 200 from service,
// and from every one of pods.
func spreadOver(f *feature, req request, rs []response, n int, service string, pods map[string]bool) error {
	if len(rs) != n {
		return fmt.Errorf("%d responses to %d requests", len(rs), n)
	}
	per := map[string]int{}
	for _, r := range rs {
		if err := f.check(req, r, expect{status: 200, service: service}); err != nil {
			return err
		}
		per[r.echo.Pod]++
	}
	if len(per) != len(pods) {
		return fmt.Errorf("answered by %d pods %v, want all %d of %v", len(per), per, len(pods), pods)
	}
	return nil
}

// TestConformanceIngressClass: the ingress_class feature. An Ingress that
// names a class that does not exist gets no address and no traffic, while
// an Ingress of class portico in the same namespace, made after it, gets
// both: so the controller has seen the first and left it alone.
func TestConformanceIngressClass(t *testing.T) {
	f := newFeature(t)
	other := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: test-ingress-class}
spec:
  ingressClassName: some-invalid-class-name
  rules:
  - host: ingress-class
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ingress-class-prefix, port: {number: 8080}}}}
`)
	ours := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: served}
spec:
  rules:
  - host: served
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ingress-class-prefix, port: {number: 8080}}}}
`)
	f.address(t, ours)
	f.ready(t, request{host: "served"}, expect{status: 200, service: "ingress-class-prefix"})

	t.Run("InvalidClassNotServed", func(t *testing.T) {
		// The suite waits 5 minutes for an address that must not come;
		// the served Ingress above shows the controller is past this one,
		// and 5 s more of no address stands for the rest.
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
			ing, err := cs.NetworkingV1().Ingresses(f.ns).Get(context.Background(), other, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if lb := ing.Status.LoadBalancer.Ingress; len(lb) != 0 {
				t.Fatalf("Ingress of class some-invalid-class-name got addresses %+v", lb)
			}
		}
		f.scenario(t, "the other class's host is not routed", request{host: "ingress-class"}, expect{status: 404})
	})
}

// tlsSecret makes a CA and a certificate for hosts signed by it, stores the
// certificate and its key in a kubernetes.io/tls Secret, and returns the
// CA's PEM file, for curl --cacert: a connection that verifies against it
// was served that certificate, not the default one or another host's.
func tlsSecret(t *testing.T, ns, name string, hosts ...string) string {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	create := func(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	caKey, key := newKey(), newKey()
	caTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "e2e CA for " + name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	ca := create(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	leaf := create(&x509.Certificate{Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &key.PublicKey, caKey)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("Secret %s: %v", name, err)
	}
	file := filepath.Join(t.TempDir(), name+"-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// failed describes the responses that are not a 200 from service.
func failed(rs []response, service string) []string {
	var bad []string
	for _, r := range rs {
		switch {
		case r.err != nil:
			bad = append(bad, r.err.Error())
		case r.status != 200 || r.echo == nil || r.echo.Service != service:
			bad = append(bad, fmt.Sprintf("%d %q", r.status, r.body))
		}
	}
	return bad
}

// TestIngressCertificateBySNI: on the one ingress address, each TLS host
// is served the certificate of its own Secret, chosen by SNI: it verifies
// against its own CA and not against the other host's, and a host without
// TLS gets the default certificate, which neither CA signed.
func TestIngressCertificateBySNI(t *testing.T) {
	f := newFeature(t)
	cas := map[string]string{
		"a.example.com": tlsSecret(t, f.ns, "a-tls", "a.example.com"),
		"b.example.com": tlsSecret(t, f.ns, "b-tls", "b.example.com"),
	}
	name := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: sni}
spec:
  tls:
  - {hosts: [a.example.com], secretName: a-tls}
  - {hosts: [b.example.com], secretName: b-tls}
  rules:
  - host: a.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 8080}}}}]}
  - host: b.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 8080}}}}]}
  - host: c.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 8080}}}}]}
`)
	f.address(t, name)
	for host, ca := range cas {
		f.scenario(t, "https://"+host+" verifies against its CA", request{https: true, host: host, ca: ca}, expect{status: 200, service: "echo", host: host})
	}
	// curl's exit code 60: the peer's certificate does not verify.
	for _, c := range []struct{ host, ca string }{
		{"a.example.com", cas["b.example.com"]},
		{"b.example.com", cas["a.example.com"]},
		{"c.example.com", cas["a.example.com"]},
		{"c.example.com", cas["b.example.com"]},
	} {
		if r := send(t, f.addr, request{https: true, host: c.host, ca: c.ca}); r.exit != 60 {
			t.Errorf("https://%s verified against %s: want curl exit 60, got %d %v", c.host, filepath.Base(c.ca), r.exit, r.err)
		}
	}
	f.scenario(t, "https://c.example.com with the default certificate", request{https: true, host: "c.example.com"}, expect{status: 200, service: "echo", host: "c.example.com"})
}

// TestIngressFollowsScaling: the pods that answer through the ingress are
// the Ready pods of the echo Deployment as it is scaled from 1 to 3 and
// back to 1, and not one request fails while it shrinks.
func TestIngressFollowsScaling(t *testing.T) {
	f := newFeature(t)
	name := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: scaling}
spec:
  rules:
  - host: echo.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}]}
`)
	f.address(t, name)
	req := request{host: "echo.example.com", path: "/some/path"}
	f.ready(t, req, expect{status: 200, service: "echo"})
	if err := spreadOver(f, req, sendMany(t, f.addr, req, 5), 5, "echo", f.pods["echo"]); err != nil {
		t.Fatalf("with 1 pod: %v", err)
	}

	pods := f.scale(t, "echo", 3)
	eventually(t, 30*time.Second, "30 requests reach all 3 pods", func() error {
		return spreadOver(f, req, sendMany(t, f.addr, req, 30), 30, "echo", pods)
	})

	sending := startSending(t, f.addr, req)
	time.Sleep(time.Second)
	left := f.scale(t, "echo", 1)
	eventually(t, 30*time.Second, "10 requests reach only the pod left", func() error {
		return spreadOver(f, req, sendMany(t, f.addr, req, 10), 10, "echo", left)
	})
	rs := sending()
	if bad := failed(rs, "echo"); len(bad) > 0 {
		t.Errorf("%d of %d requests failed while the Deployment went from 3 pods to 1: %q", len(bad), len(rs), bad)
	}
	t.Logf("%d requests while the Deployment went from 3 pods to 1", len(rs))
}

// echoThroughIngress routes echo.example.com to an echo Service and waits
// until it answers through the ingress address; it returns the request,
// and the ingress pod that takes it with the node that pod runs on.
func echoThroughIngress(t *testing.T) (f *feature, req request, pod, node string) {
	t.Helper()
	f = newFeature(t)
	name := f.ingress(t, `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: echo}
spec:
  rules:
  - host: echo.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}]}
`)
	f.address(t, name)
	req = request{host: "echo.example.com"}
	f.ready(t, req, expect{status: 200, service: "echo"})
	pod, node = ingressPodAnswering(t, f.addr)
	return f, req, pod, node
}

// TestIngressReplicaDeleted: with requests flowing from the client, the
// ingress replica that receives them (the one on the node that answers for
// the ingress address) is deleted; the other replica takes the traffic
// over, and not one request fails.
func TestIngressReplicaDeleted(t *testing.T) {
	f, req, victim, owner := echoThroughIngress(t)
	sending := startSending(t, f.addr, req)
	time.Sleep(2 * time.Second)
	kubectl(t, "", "delete", "pod", "-n", "portico-system", victim, "--wait=false")
	eventually(t, 60*time.Second, victim+" is gone", func() error {
		_, err := cs.CoreV1().Pods("portico-system").Get(context.Background(), victim, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	readyPods(t, "portico-system", "app.kubernetes.io/name=portico-ingress", 2)
	next := answeringNode(t, f.addr, "")
	time.Sleep(2 * time.Second)
	rs := sending()
	t.Logf("%d requests while %s on %s was deleted; %s answers for %s now", len(rs), victim, owner, next, f.addr)
	if len(rs) < 10 {
		t.Fatalf("only %d requests were sent", len(rs))
	}
	if bad := failed(rs, "echo"); len(bad) > 0 {
		t.Errorf("%d of %d requests failed: %q", len(bad), len(rs), bad)
	}
}

// TestIngressReplicaCrashes: the ingress replica that takes the client's
// requests crashes (SIGKILL, no goodbye) and stays down for 6 s, as a
// crash-looping process would. Requests fail only in the first moments,
// while the dead replica is still the one their address leads to, and only
// by failing to connect, never with a wrong answer; then the other replica
// serves them while the first is still down.
func TestIngressReplicaCrashes(t *testing.T) {
	f, req, victim, owner := echoThroughIngress(t)
	sending := startSending(t, f.addr, req)
	time.Sleep(time.Second)
	killed := time.Now()
	// The node agent restarts a dead container at once, then after 1 s,
	// 2 s, ...: keep it dead.
	kills := 0
	for time.Since(killed) < 6*time.Second {
		if pid, ok := findProcess("ingress", "HOSTNAME="+victim); ok && syscall.Kill(pid, syscall.SIGKILL) == nil {
			kills++
		}
		time.Sleep(20 * time.Millisecond)
	}
	rs := sending()
	if kills == 0 {
		t.Fatalf("found no process of %s to kill", victim)
	}
	readyPods(t, "portico-system", "app.kubernetes.io/name=portico-ingress", 2)

	// What a crash may cost: the request in flight (sent up to half a
	// second before, counting curl's start), and those sent until the
	// address leads to the other replica: the pod's Ready condition turns
	// false when its process dies, the EndpointSlice follows, then the
	// speakers move the address to the other replica's node.
	const before, window = -500 * time.Millisecond, 3 * time.Second
	var lost, late []string
	served := 0
	for _, r := range rs {
		after := r.at.Sub(killed)
		switch {
		case r.err == nil && r.status == 200 && r.echo != nil && r.echo.Service == "echo":
			if after > window {
				served++
			}
		case r.err == nil:
			t.Errorf("request sent %s after the crash got a wrong answer: %d %q", after.Round(time.Millisecond), r.status, r.body)
		case after < before || after > window:
			late = append(late, fmt.Sprintf("%s: %v", after.Round(time.Millisecond), r.err))
		default:
			lost = append(lost, after.Round(time.Millisecond).String())
		}
	}
	t.Logf("%d requests; %d failed to connect, sent at %v after %s on %s was killed (%d times)", len(rs), len(lost), lost, victim, owner, kills)
	if len(late) > 0 {
		t.Errorf("requests failed outside [%s, %s] around the crash: %q", before, window, late)
	}
	if served == 0 {
		t.Errorf("no request was served in the %s the replica stayed down after the first %s", 6*time.Second-window, window)
	}
}

// ingressPodAnswering returns the ingress pod that takes the requests for
// addr, the one on the node that answers for it, and that node.
func ingressPodAnswering(t *testing.T, addr string) (pod, node string) {
	t.Helper()
	node = answeringNode(t, addr, "")
	for _, p := range readyPods(t, "portico-system", "app.kubernetes.io/name=portico-ingress", 2) {
		if p.Spec.NodeName == node {
			return p.Name, node
		}
	}
	t.Fatalf("no ingress pod on %s, which answers for %s", node, addr)
	return "", ""
}
