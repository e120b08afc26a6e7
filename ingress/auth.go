package ingress

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
)

// Basic authentication, ingress-nginx's way: auth-type: basic, and
// auth-secret names an Opaque Secret of the Ingress's namespace holding
// an htpasswd file under the key "auth" (auth-secret-type: auth-file), or
// a user per key with its hash as value (auth-map); auth-realm is the
// realm of the challenge. The check itself is the proxy core's
// (exchange.BasicAuth). It fails closed: annotations that ask for
// authentication and cannot be applied refuse every request (403), and a
// Secret that cannot be used answers every request 503, as ingress-nginx
// does; never are the routes served without the check.

// ReasonInvalidAuthSecret: the Secret of auth-secret is missing or holds
// no usable user, or some of its lines were left out.
const ReasonInvalidAuthSecret = "InvalidAuthSecret"

// authSpec is what the auth-* annotations ask for.
type authSpec struct {
	basic      bool   // auth-type: basic
	secret     string // auth-secret as written
	secretType string // auth-secret-type, "auth-file" when not set
	realm      string
	// ref is the Secret, once settleAuth found the annotations usable.
	ref types.NamespacedName
}

func authType(a *annotated, _, v string) error {
	switch strings.TrimSpace(v) {
	case "basic":
		a.auth.basic = true
		return nil
	case "digest":
		return errors.New("digest authentication is not supported by Portico (use basic, over HTTPS)")
	}
	return fmt.Errorf("%q is not an authentication type: want basic", v)
}

func authSecret(a *annotated, _, v string) error {
	v = strings.TrimSpace(v)
	ns, name, qualified := strings.Cut(v, "/")
	if !qualified {
		ns, name = "", v
	}
	if len(validation.IsDNS1123Subdomain(name)) > 0 || qualified && len(validation.IsDNS1123Label(ns)) > 0 {
		return fmt.Errorf("%q is not a Secret name, or namespace/name", v)
	}
	a.auth.secret = v
	return nil
}

func authSecretType(a *annotated, _, v string) error {
	switch v = strings.TrimSpace(v); v {
	case "auth-file", "auth-map":
		a.auth.secretType = v
		return nil
	}
	return fmt.Errorf("%q is not a Secret type: want auth-file or auth-map", v)
}

func authRealm(a *annotated, _, v string) error {
	if !exchange.ValidRealm(v) {
		return fmt.Errorf("%q is not a realm: want visible ASCII and spaces, without '\"' or '\\'; the realm is empty", v)
	}
	a.auth.realm = v
	return nil
}

// settleAuth checks the auth-* annotations against each other and settles
// the Secret that auth-secret names.
func (a *annotated) settleAuth(ing types.NamespacedName, spelled map[string]string, warn func(reason, format string, args ...any)) {
	s := &a.auth
	typeKey, typed := spelled["auth-type"]
	secretKey, withSecret := spelled["auth-secret"]
	refuse := func(format string, args ...any) {
		a.rulesOf().Refuse = refused
		warn(ReasonInvalidAnnotation, format+"; every request to this Ingress is refused (403) until it is fixed", args...)
	}
	if !s.basic {
		if !typed && withSecret {
			refuse("annotation %s asks for authentication, and auth-type: basic is not set", secretKey)
		}
		if !typed {
			for _, n := range []string{"auth-realm", "auth-secret-type"} {
				if k, ok := spelled[n]; ok {
					warn(ReasonInvalidAnnotation, "annotation %s has no effect without auth-type: basic", k)
				}
			}
		}
		return // an invalid auth-type has refused already
	}
	if s.secret == "" {
		if !withSecret {
			refuse("annotation %s needs auth-secret, the Secret of the users", typeKey)
		}
		return // an invalid auth-secret has refused already
	}
	ns, name, qualified := strings.Cut(s.secret, "/")
	if !qualified {
		ns, name = ing.Namespace, s.secret
	}
	if ns != ing.Namespace {
		// As ingress-nginx's default since 1.12: an Ingress does not get to use
		// (nor learn, through Events, the users of) another namespace's
		// Secret.
		refuse("annotation %s names a Secret of namespace %s: auth Secrets are read from the Ingress's own namespace only", secretKey, ns)
		return
	}
	if s.secretType == "" {
		s.secretType = "auth-file"
	}
	s.ref = types.NamespacedName{Namespace: ns, Name: name}
}

// authKey identifies a BasicAuth the compiler made: the same Ingress,
// Secret version and settings make the same one, so that its remembered
// logins survive compiles.
type authKey struct {
	ingress           string
	secret            types.NamespacedName
	uid               types.UID
	version           string
	secretType, realm string
}

type authEntry struct {
	auth  *exchange.BasicAuth
	probs []problem
}

// basicAuth gives a's rules the BasicAuth its annotations ask for, the
// one of the last compile when nothing changed, and returns what is wrong
// with its Secret.
func (cp *compiler) basicAuth(ing types.NamespacedName, a *annotated, secrets map[types.NamespacedName]*corev1.Secret, used map[authKey]bool) []problem {
	s := secrets[a.auth.ref]
	k := authKey{ingress: ing.String(), secret: a.auth.ref, secretType: a.auth.secretType, realm: a.auth.realm}
	if s != nil {
		k.uid, k.version = s.UID, s.ResourceVersion
	}
	used[k] = true
	if e, ok := cp.auths[k]; ok {
		a.rulesOf().Auth = e.auth
		return e.probs
	}
	users, err := authUsers(s, a.auth.secretType)
	var probs []problem
	note := func(format string, args ...any) {
		probs = append(probs, problem{ing, ReasonInvalidAuthSecret, fmt.Sprintf("annotation auth-secret: Secret %s: ", a.auth.ref) + fmt.Sprintf(format, args...)})
	}
	if len(err) > 0 {
		const shown = 5
		var b strings.Builder
		for i, e := range err[:min(len(err), shown)] {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(e.Error())
		}
		if len(err) > shown {
			fmt.Fprintf(&b, "; and %d more", len(err)-shown)
		}
		if len(users) == 0 {
			note("%s; no user can log in: every request to this Ingress is answered 503 until it is fixed", b.String())
		} else {
			note("%s; the other users can log in", b.String())
		}
	}
	e := authEntry{auth: exchange.NewBasicAuth(a.auth.realm, users), probs: probs}
	if cp.auths == nil {
		cp.auths = map[authKey]authEntry{}
	}
	cp.auths[k] = e
	a.rulesOf().Auth = e.auth
	return e.probs
}

// authUsers reads the users of an auth Secret.
func authUsers(s *corev1.Secret, secretType string) ([]exchange.User, []error) {
	switch {
	case s == nil:
		return nil, []error{errors.New("not found (Portico reads auth Secrets of type Opaque)")}
	case s.Type != corev1.SecretTypeOpaque && s.Type != "":
		return nil, []error{fmt.Errorf("has type %q, want Opaque", s.Type)}
	}
	if secretType == "auth-map" {
		var users []exchange.User
		var errs []error
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			u, err := exchange.ParseUser(k, strings.TrimSpace(string(s.Data[k])))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			users = append(users, u)
		}
		if len(keys) == 0 {
			errs = append(errs, errors.New("holds no key (auth-secret-type auth-map: a user per key, its password's hash as value)"))
		}
		return users, errs
	}
	file, ok := s.Data["auth"]
	if !ok {
		return nil, []error{errors.New("has no key auth (auth-secret-type auth-file: an htpasswd file under the key auth)")}
	}
	users, errs := exchange.ParseHtpasswd(string(file))
	if len(users) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("the key auth holds no user"))
	}
	return users, errs
}

// forgetAuths drops the BasicAuths no Ingress uses any more.
func (cp *compiler) forgetAuths(used map[authKey]bool) {
	for k := range cp.auths {
		if !used[k] {
			delete(cp.auths, k)
		}
	}
}

// authSecrets makes a cache of the cluster's Opaque Secrets, where
// auth-secret points (the manager's own cache holds kubernetes.io/tls
// Secrets only), and has mgr run it on every replica. Opaque is the type
// kubectl create secret generic makes, as ingress-nginx's guide does. To
// keep memory down, what a Secret carries besides its data is dropped:
// its managed fields, labels and annotations (kubectl apply's
// last-applied-configuration would hold a second copy of the data).
func authSecrets(mgr manager.Manager) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(),
		Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Field: fields.OneTermEqualSelector("type", string(corev1.SecretTypeOpaque)),
				Transform: func(o any) (any, error) {
					if s, ok := o.(*corev1.Secret); ok {
						s.ManagedFields, s.Annotations, s.Labels = nil, nil, nil
					}
					return o, nil
				},
			},
		},
	})
	if err == nil {
		err = mgr.Add(everyReplica{c})
	}
	if err != nil {
		return nil, fmt.Errorf("watching Opaque Secrets: %w", err)
	}
	return c, nil
}

// everyReplica runs a cache on every replica, not on the leader only (the
// manager's default for what it is given): every replica serves traffic.
type everyReplica struct{ cache.Cache }

func (everyReplica) NeedLeaderElection() bool { return false }
