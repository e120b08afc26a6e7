package ingress_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/ingress"
)

// Basic authentication against the real API server: the controller reads
// the Opaque Secret an Ingress names, follows its changes and its
// creation, and a broken one closes the route (503) with a Warning.
func TestBasicAuthSecrets(t *testing.T) {
	needAPI(t)
	const ns = "basic-auth"
	makeNamespace(t, ns)
	_, port := backend(t, "web")
	web := serviceBackend("web", 80, "")
	authed := func(name, secret string, ann map[string]string) *networkingv1.Ingress {
		i := newIngress(ns, name, ptr.To(className), networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{hostRule(name+".example", prefixPath("/", web))}})
		i.Annotations = map[string]string{ingress.NginxPrefix + "auth-type": "basic", ingress.NginxPrefix + "auth-secret": secret,
			ingress.NginxPrefix + "auth-realm": "Staff"}
		for k, v := range ann {
			i.Annotations[k] = v
		}
		return i
	}
	secret := func(name string, data map[string]string) *corev1.Secret {
		s := &corev1.Secret{Type: corev1.SecretTypeOpaque, StringData: data}
		s.Namespace, s.Name = ns, name
		return s
	}
	users := secret("users", map[string]string{"auth": "foo:$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0\n" + // foo:bar
		"carol:$2y$04$Il4EwTXzJE7W6mEiegpL1e2abjg1PG7rxgvZVKNwufdrRg5hVf8iC\n" + // carol:c@rol:pass
		"eve:rFaslvbF6e30U\n"}) // crypt DES: left out, with a Warning
	create(t, service(ns, "web"), endpointSlice(t, ns, "web-1", "web", port, true), users,
		secret("no-key", map[string]string{"htpasswd": "foo:$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0"}),
		authed("files", "users", nil),
		authed("broken", "no-key", nil),
		authed("later", "later", nil),
		authed("digest", "users", map[string]string{ingress.NginxPrefix + "auth-type": "digest"}))

	in := startInstance(t, "basic-auth-test", "pub-basic-auth")
	want := func(host, user, password string, code int) func() error {
		return func() error {
			req, _ := http.NewRequest("GET", "http://"+in.plain+"/", nil)
			req.Host = host
			if user != "" {
				req.SetBasicAuth(user, password)
			}
			res, err := noRedirects.Do(req)
			if err != nil {
				return err
			}
			res.Body.Close()
			if res.StatusCode != code {
				return fmt.Errorf("%s as %q: %d, want %d", host, user, res.StatusCode, code)
			}
			if code == 401 && res.Header.Get("WWW-Authenticate") != `Basic realm="Staff"` {
				return fmt.Errorf("%s: challenge %q", host, res.Header.Get("WWW-Authenticate"))
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "no credentials", want("files.example", "", "", 401))
	for _, c := range []struct {
		what, user, password string
		code                 int
	}{
		{"apr1", "foo", "bar", 200},
		{"bcrypt", "carol", "c@rol:pass", 200},
		{"wrong password", "foo", "baz", 401},
		{"a user left out", "eve", "evepw", 401},
	} {
		if err := want("files.example", c.user, c.password, c.code)(); err != nil {
			t.Errorf("%s: %v", c.what, err)
		}
	}
	eventually(t, 5*time.Second, "a Secret without the key auth closes the route", want("broken.example", "foo", "bar", 503))
	eventually(t, 5*time.Second, "a missing Secret closes the route", want("later.example", "foo", "bar", 503))
	eventually(t, 5*time.Second, "digest is refused", want("digest.example", "foo", "bar", 403))
	for _, w := range []struct{ ingress, reason string }{
		{"files", ingress.ReasonInvalidAuthSecret}, // eve's line
		{"broken", ingress.ReasonInvalidAuthSecret},
		{"later", ingress.ReasonInvalidAuthSecret},
		{"digest", ingress.ReasonInvalidAnnotation},
	} {
		eventually(t, 10*time.Second, "Event "+w.reason+" on "+w.ingress, wantWarning(ns, w.ingress, w.reason))
	}

	// The Secret appears: the route opens to its users.
	create(t, secret("later", map[string]string{"auth": "foo:$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0"}))
	eventually(t, 5*time.Second, "the Secret created later is read", want("later.example", "foo", "bar", 200))
	// The Secret changes: the old password stops working at once.
	update(t, users, func(s *corev1.Secret) {
		s.StringData = map[string]string{"auth": "foo:{SHA}uE1+cBGmURe+4zihKsjfuHZgJbQ=\n"} // foo:dave-pw
	})
	eventually(t, 5*time.Second, "the changed Secret is read", want("files.example", "foo", "dave-pw", 200))
	for _, c := range [][2]string{{"foo", "bar"}, {"carol", "c@rol:pass"}} {
		if err := want("files.example", c[0], c[1], 401)(); err != nil {
			t.Errorf("a password the Secret no longer holds: %v", err)
		}
	}
}
