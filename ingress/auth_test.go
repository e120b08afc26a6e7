package ingress

import (
	"encoding/base64"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// The auth-* annotations, in both spellings: what they settle on, and
// that whatever asks for authentication and cannot get it refuses.
func TestAuthAnnotations(t *testing.T) {
	const nginx, ours = NginxPrefix, PorticoPrefix
	users := types.NamespacedName{Namespace: "ns", Name: "users"}
	for _, c := range []struct {
		name    string
		ann     map[string]string
		ref     types.NamespacedName // zero: no BasicAuth
		kind    string
		realm   string
		refused bool
		reasons []string
	}{
		{"basic", map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "users"}, users, "auth-file", "", false, nil},
		{"ours", map[string]string{ours + "auth-type": "basic", ours + "auth-secret": "ns/users", ours + "auth-secret-type": "auth-map", ours + "auth-realm": "Staff - only"},
			users, "auth-map", "Staff - only", false, nil},
		{"ours wins", map[string]string{nginx + "auth-type": "digest", ours + "auth-type": "basic", nginx + "auth-secret": "other", ours + "auth-secret": "users"}, users, "auth-file", "", false, nil},
		{"digest is refused", map[string]string{nginx + "auth-type": "digest", nginx + "auth-secret": "users"}, types.NamespacedName{}, "", "", true, []string{ReasonInvalidAnnotation}},
		{"unknown type", map[string]string{nginx + "auth-type": "Basic ", nginx + "auth-secret": "users"}, types.NamespacedName{}, "", "", true, []string{ReasonInvalidAnnotation}},
		{"no secret", map[string]string{nginx + "auth-type": "basic"}, types.NamespacedName{}, "", "", true, []string{ReasonInvalidAnnotation}},
		{"a secret without the type", map[string]string{nginx + "auth-secret": "users"}, types.NamespacedName{}, "", "", true, []string{ReasonInvalidAnnotation}},
		{"another namespace's secret", map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "kube-system/users"}, types.NamespacedName{}, "", "", true, []string{ReasonInvalidAnnotation}},
		{"a bad secret name", map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "Users!"}, types.NamespacedName{}, "", "", true, []string{ReasonInvalidAnnotation}},
		{"a bad secret type", map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "users", nginx + "auth-secret-type": "auth-plain"}, users, "auth-file", "", true, []string{ReasonInvalidAnnotation}},
		{"a bad realm keeps the check", map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "users", nginx + "auth-realm": `a"b`}, users, "auth-file", "", false, []string{ReasonInvalidAnnotation}},
		{"realm alone", map[string]string{nginx + "auth-realm": "x"}, types.NamespacedName{}, "", "", false, []string{ReasonInvalidAnnotation}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := readAnnotations(types.NamespacedName{Namespace: "ns", Name: "x"}, c.ann)
			var reasons []string
			for _, p := range a.probs {
				reasons = append(reasons, p.Reason)
			}
			if !slices.Equal(reasons, c.reasons) {
				t.Errorf("problems %v, want %v", a.probs, c.reasons)
			}
			if refused := a.rules != nil && a.rules.Refuse != ""; refused != c.refused {
				t.Errorf("refused %v, want %v", refused, c.refused)
			}
			if a.auth.ref != c.ref || c.ref.Name != "" && (a.auth.secretType != c.kind || a.auth.realm != c.realm) {
				t.Errorf("auth %+v, want %v %s realm %q", a.auth, c.ref, c.kind, c.realm)
			}
		})
	}

	// Ingresses that claim a route with different auth do not merge.
	policy := func(ann map[string]string) string {
		return readAnnotations(types.NamespacedName{Namespace: "ns", Name: "x"}, ann).policy
	}
	basic := map[string]string{nginx + "auth-type": "basic", nginx + "auth-secret": "users"}
	for _, other := range []map[string]string{
		nil,
		{nginx + "auth-type": "basic", nginx + "auth-secret": "admins"},
		{nginx + "auth-type": "basic", nginx + "auth-secret": "users", nginx + "auth-realm": "x"},
		{nginx + "auth-type": "basic", nginx + "auth-secret": "users", nginx + "auth-secret-type": "auth-map"},
	} {
		if policy(basic) == policy(other) {
			t.Errorf("the Policy of %v is that of %v", other, basic)
		}
	}
	if !strings.Contains(policy(basic), `auth-secret-ref="ns/users"`) {
		t.Errorf("Policy %q does not name the Secret", policy(basic))
	}
}

func authIngress(name, secret string, extra map[string]string) *networkingv1.Ingress {
	ann := map[string]string{NginxPrefix + "auth-type": "basic", NginxPrefix + "auth-secret": secret}
	for k, v := range extra {
		ann[k] = v
	}
	i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: ann}}
	i.Spec.IngressClassName = ptr.To("portico")
	i.Spec.Rules = []networkingv1.IngressRule{{Host: name + ".example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}
	return i
}

func authSecretOf(name string, typ corev1.SecretType, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name), ResourceVersion: "1"}, Type: typ, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

// The compiler reads the users out of the Secret each Ingress names, and
// says what it could not use; a route whose Secret gives no user is
// answered 503, never served.
func TestCompileBasicAuth(t *testing.T) {
	const (
		foo  = `foo:$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0` // foo:bar, ingress-nginx's example
		dave = `{SHA}uE1+cBGmURe+4zihKsjfuHZgJbQ=`         // dave-pw
	)
	ings := []*networkingv1.Ingress{
		authIngress("file", "htpasswd", map[string]string{NginxPrefix + "auth-realm": "Staff"}),
		authIngress("map", "map", map[string]string{NginxPrefix + "auth-secret-type": "auth-map"}),
		authIngress("partly", "partly", nil),
		authIngress("missing", "absent", nil),
		authIngress("tls", "tls", nil),
		authIngress("nokey", "nokey", nil),
		authIngress("nouser", "nouser", nil),
	}
	secrets := []*corev1.Secret{
		authSecretOf("htpasswd", corev1.SecretTypeOpaque, map[string]string{"auth": "# users\n" + foo + "\n"}),
		authSecretOf("map", corev1.SecretTypeOpaque, map[string]string{"dave": dave + "\n", "eve": "rFaslvbF6e30U"}),
		authSecretOf("partly", corev1.SecretTypeOpaque, map[string]string{"auth": foo + "\nfrank:plain\n"}),
		authSecretOf("tls", corev1.SecretTypeTLS, map[string]string{"auth": foo}),
		authSecretOf("nokey", corev1.SecretTypeOpaque, map[string]string{"htpasswd": foo}),
		authSecretOf("nouser", corev1.SecretTypeOpaque, map[string]string{"auth": "eve:rFaslvbF6e30U\nfrank:plain"}),
	}
	var cp compiler
	cl := cluster{class: Class{Name: "portico", Found: true}, ingresses: ings, secrets: secrets}
	cfg, probs := cp.compile(cl)
	notes := map[string][]string{}
	for _, p := range probs {
		if p.Reason != ReasonInvalidAuthSecret {
			t.Errorf("unexpected problem %v", p)
			continue
		}
		notes[p.Ingress.Name] = append(notes[p.Ingress.Name], p.Note)
	}
	for ing, want := range map[string]string{
		"map":     `user "eve": the password is a crypt DES hash`,
		"partly":  `user "frank": the password is not a hash Portico knows (plain text?), which Portico does not check (use htpasswd -B for bcrypt); the user is left out; the other users can log in`,
		"missing": "Secret ns/absent: not found (Portico reads auth Secrets of type Opaque); no user can log in: every request to this Ingress is answered 503",
		"tls":     `has type "kubernetes.io/tls", want Opaque`,
		"nokey":   "has no key auth",
		"nouser":  `user "eve": the password is a crypt DES hash, which Portico does not check (use htpasswd -B for bcrypt); the user is left out; line 2: user "frank"`,
	} {
		if len(notes[ing]) != 1 || !strings.Contains(notes[ing][0], want) {
			t.Errorf("%s: problems %q, want one saying %q", ing, notes[ing], want)
		}
	}
	if len(notes["file"]) != 0 {
		t.Errorf("file: problems %q", notes["file"])
	}
	cfg.Upstreams[exchange.Target{Namespace: "ns", Service: "web", Port: route.Port{Number: 80}}] = exchange.NewUpstream("10.0.0.1:80")
	p := exchange.NewPolicy(exchange.Settings{})
	decide := func(host, user, password string) (int, string) {
		req := &exchange.Request{Method: "GET", Target: "/", Host: host, Proto: exchange.HTTP11, Client: netip.MustParseAddrPort("192.0.2.1:1")}
		if user != "" {
			req.Fields = []h1.Field{{Name: "Authorization", Value: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}}
		}
		var x exchange.Exchange
		p.Decide(cfg, req, time.Now(), &x)
		var challenge string
		for _, f := range x.AnswerFields(time.Now()) {
			if f.Name == "WWW-Authenticate" {
				challenge = f.Value
			}
		}
		return x.Status, challenge
	}
	for _, c := range []struct {
		host, user, password string
		status               int
		challenge            string
	}{
		{"file.example", "", "", 401, `Basic realm="Staff"`},
		{"file.example", "foo", "bar", 0, ""},
		{"file.example", "foo", "baz", 401, `Basic realm="Staff"`},
		{"map.example", "dave", "dave-pw", 0, ""},
		{"map.example", "eve", "evepw", 401, `Basic realm=""`},
		{"partly.example", "foo", "bar", 0, ""},
		{"partly.example", "frank", "plain", 401, `Basic realm=""`},
		{"missing.example", "foo", "bar", 503, ""},
		{"tls.example", "foo", "bar", 503, ""},
		{"nokey.example", "foo", "bar", 503, ""},
		{"nouser.example", "frank", "plain", 503, ""},
	} {
		if status, challenge := decide(c.host, c.user, c.password); status != c.status || challenge != c.challenge {
			t.Errorf("%s as %q:%q: %d %q, want %d %q", c.host, c.user, c.password, status, challenge, c.status, c.challenge)
		}
	}

	// The same Secret version keeps the BasicAuth (and the logins it
	// remembers) from compile to compile; a new version replaces it.
	before := cfg.Rules["ns/file"].Auth
	cfg, _ = cp.compile(cl)
	if cfg.Rules["ns/file"].Auth != before {
		t.Error("a compile with nothing changed made a new BasicAuth")
	}
	changed := authSecretOf("htpasswd", corev1.SecretTypeOpaque, map[string]string{"auth": "dave:" + dave})
	changed.ResourceVersion = "2"
	cl.secrets = append([]*corev1.Secret{changed}, secrets[1:]...)
	cfg, _ = cp.compile(cl)
	if cfg.Rules["ns/file"].Auth == before {
		t.Error("a new version of the Secret kept the old BasicAuth")
	}
	cfg.Upstreams[exchange.Target{Namespace: "ns", Service: "web", Port: route.Port{Number: 80}}] = exchange.NewUpstream("10.0.0.1:80")
	if status, _ := decide("file.example", "foo", "bar"); status != 401 {
		t.Errorf("a user removed from the Secret: %d, want 401", status)
	}
	if status, _ := decide("file.example", "dave", "dave-pw"); status != 0 {
		t.Errorf("a user added to the Secret: %d, want it served", status)
	}
	if len(cp.auths) != len(ings) {
		t.Errorf("%d BasicAuths kept, want one per Ingress", len(cp.auths))
	}
}
