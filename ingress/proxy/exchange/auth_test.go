package exchange

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// Known answers, written by Apache's htpasswd 2.4 (apache2-utils) and
// OpenSSL's passwd -1, and the line of ingress-nginx's own basic-auth
// example (foo:bar).
var htpasswdVectors = []struct{ user, password, line string }{
	{"alice", "wonder land", `alice:$apr1$t1b/GI3Q$eeOdKBonWg7AyKO0qgIpK.`},
	{"bob", "x", `bob:$apr1$NUqL.5kH$vh646uE6S2Jdf99Pzzva50`},
	{"uni", "pässwörd", `uni:$apr1$utRE7OO.$r4KiZHlF/HDs/k/ZkVAqn/`},
	{"empty", "", `empty:$apr1$gedMSM70$M1OvucXbrQGuiYaG4J8Rc1`},
	{"foo", "bar", `foo:$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0`},
	{"md5", "md5crypt", `md5:$1$abcdefgh$CLglA/4RVzp9Tqs7DodPc0`},
	{"carol", "c@rol:pass", `carol:$2y$04$Il4EwTXzJE7W6mEiegpL1e2abjg1PG7rxgvZVKNwufdrRg5hVf8iC`},
	{"dave", "dave-pw", `dave:{SHA}uE1+cBGmURe+4zihKsjfuHZgJbQ=`},
}

func TestHashes(t *testing.T) {
	for _, v := range htpasswdVectors {
		t.Run(v.user, func(t *testing.T) {
			_, hashed, _ := strings.Cut(v.line, ":")
			u, err := ParseUser(v.user, hashed)
			if err != nil {
				t.Fatal(err)
			}
			if u.hash.kind == md5Hash {
				if got := md5Crypt([]byte(v.password), u.hash.magic, u.hash.salt); got != hashed {
					t.Errorf("md5Crypt = %s, want %s", got, hashed)
				}
			}
			if !u.hash.matches([]byte(v.password)) {
				t.Error("the right password does not match")
			}
			for _, wrong := range []string{v.password + "x", strings.ToUpper(v.password) + "!", "", "bar"} {
				if wrong != v.password && u.hash.matches([]byte(wrong)) {
					t.Errorf("%q matches", wrong)
				}
			}
		})
	}
}

// Lines of other kinds are left out with an error that names the user and
// the kind; none is ever taken as the password itself.
func TestParseHtpasswd(t *testing.T) {
	var file strings.Builder
	for _, v := range htpasswdVectors {
		file.WriteString(v.line + "\n")
	}
	file.WriteString("# a comment\n\n" +
		"eve:rFaslvbF6e30U\n" + // htpasswd -d
		"frank:plain\n" + // htpasswd -p
		"gina:{PLAIN}secret\n" +
		"hal:{SSHA}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n" +
		"ida:$6$salt$abcdef\n" +
		"joe:$2y$13$Il4EwTXzJE7W6mEiegpL1e2abjg1PG7rxgvZVKNwufdrRg5hVf8iC\n" + // too costly
		"kim:$2y$04$short\n" +
		"lee:$apr1$t1b/GI3Q$tooshort\n" +
		"alice:{SHA}uE1+cBGmURe+4zihKsjfuHZgJbQ=\n" + // a second alice: the first counts
		"no colon here\r\n")
	users, errs := ParseHtpasswd(file.String())
	if len(users) != len(htpasswdVectors) {
		t.Errorf("%d users, want the %d valid lines", len(users), len(htpasswdVectors))
	}
	want := []string{
		`user "eve": the password is a crypt DES hash`,
		`user "frank": the password is not a hash Portico knows (plain text?)`,
		`user "gina": the password is plain text ({PLAIN})`,
		`user "hal": the password is a salted SHA-1 hash ({SSHA})`,
		`user "ida": the password is a SHA-crypt hash ($6$)`,
		`user "joe": the bcrypt hash has cost 13, over 12`,
		`user "kim": the bcrypt hash is malformed`,
		`user "lee": the MD5-crypt hash is malformed`,
		`user "alice" is on line 1 already`,
		`is not user:hash`,
	}
	if len(errs) != len(want) {
		t.Errorf("errors %q, want %d", errs, len(want))
	}
	for i, w := range want {
		if i < len(errs) && !strings.Contains(errs[i].Error(), w) {
			t.Errorf("error %d: %q, want it to say %q", i, errs[i], w)
		}
	}
	a := NewBasicAuth("", users)
	if a.users["alice"].kind != md5Hash {
		t.Error("the second alice line replaced the first")
	}
}

func basic(user, password string) h1.Field {
	return h1.Field{Name: "Authorization", Value: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
}

// Requests to a route with Basic authentication: 401 with the realm's
// challenge without the right credentials, forwarded with them and with
// the Authorization field kept; 503 when the route has no user.
func TestBasicAuthDecisions(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{})
	var users []User
	for _, v := range htpasswdVectors {
		name, hashed, _ := strings.Cut(v.line, ":")
		u, err := ParseUser(name, hashed)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	auth := NewBasicAuth("Staff only", users)
	rules := &Rules{Auth: auth}
	for _, c := range []struct {
		name   string
		rules  *Rules
		fields []h1.Field
		status int // 0: forwarded
		reason string
	}{
		{"no credentials", rules, nil, 401, "credentials are required"},
		{"apr1", rules, []h1.Field{basic("alice", "wonder land")}, 0, ""},
		{"apr1 wrong", rules, []h1.Field{basic("alice", "wonder")}, 401, "not valid"},
		{"md5-crypt", rules, []h1.Field{basic("md5", "md5crypt")}, 0, ""},
		{"bcrypt, colon in the password", rules, []h1.Field{basic("carol", "c@rol:pass")}, 0, ""},
		{"bcrypt wrong", rules, []h1.Field{basic("carol", "c@rol")}, 401, "not valid"},
		{"sha", rules, []h1.Field{basic("dave", "dave-pw")}, 0, ""},
		{"empty password", rules, []h1.Field{basic("empty", "")}, 0, ""},
		{"unknown user", rules, []h1.Field{basic("mallory", "bar")}, 401, "not valid"},
		{"another user's password", rules, []h1.Field{basic("foo", "dave-pw")}, 401, "not valid"},
		{"scheme in any case, padding left out", rules, []h1.Field{{Name: "authorization", Value: "bASIC " + base64.RawStdEncoding.EncodeToString([]byte("foo:bar"))}}, 0, ""},
		{"not base64", rules, []h1.Field{{Name: "Authorization", Value: "Basic !!!!"}}, 401, "does not hold Basic"},
		{"no colon", rules, []h1.Field{{Name: "Authorization", Value: "Basic " + base64.StdEncoding.EncodeToString([]byte("foobar"))}}, 401, "does not hold Basic"},
		{"bearer", rules, []h1.Field{{Name: "Authorization", Value: "Bearer abc"}}, 401, "does not hold Basic"},
		{"huge", rules, []h1.Field{{Name: "Authorization", Value: "Basic " + strings.Repeat("QUFB", 4000)}}, 401, "does not hold Basic"},
		{"two fields", rules, []h1.Field{basic("foo", "bar"), basic("dave", "x")}, 400, "more than one"},
		{"no user: closed", &Rules{Auth: NewBasicAuth("", nil)}, []h1.Field{basic("foo", "bar")}, 503, "could not be read"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg.Rules = map[string]*Rules{"ns/plain": c.rules}
			var x Exchange
			p.Decide(cfg, get("plain.example", "/", c.fields...), time.Now(), &x)
			if c.status == 0 {
				if x.Outcome != Forward {
					t.Fatalf("answer %d %q, want it forwarded", x.Status, x.Body)
				}
				if got := fieldValue(x.Out.Fields, "Authorization"); got != c.fields[0].Value {
					t.Errorf("Authorization sent upstream %q, want the client's %q", got, c.fields[0].Value)
				}
				return
			}
			if x.Outcome != Answer || x.Status != c.status || !strings.Contains(x.Body, c.reason) {
				t.Fatalf("answer %d %q, want %d with %q", x.Status, x.Body, c.status, c.reason)
			}
			challenge := fieldValue(x.AnswerFields(time.Now()), "WWW-Authenticate")
			if want := map[bool]string{true: `Basic realm="Staff only"`}[c.status == 401]; challenge != want {
				t.Errorf("WWW-Authenticate %q, want %q", challenge, want)
			}
		})
	}

	// The route's own answers come first: a preflight and the redirect
	// to HTTPS do not ask for credentials (nginx's rewrites come before
	// its access phase), so none are sent over plain HTTP.
	cfg.Rules = map[string]*Rules{"ns/shop": rules}
	var x Exchange
	p.Decide(cfg, get("shop.example", "/"), time.Now(), &x)
	if x.Status != 308 {
		t.Errorf("plain HTTP to a TLS host: %d, want the redirect first", x.Status)
	}
	tls := get("shop.example", "/")
	tls.TLS = true
	p.Decide(cfg, tls, time.Now(), &x)
	if x.Status != 401 {
		t.Errorf("over TLS: %d, want 401", x.Status)
	}
}

// A valid client pays for bcrypt once: the second check of the same
// credentials is remembered. Someone guessing is slowed down per address.
func TestBasicAuthBcryptCost(t *testing.T) {
	cfg := testConfig(t)
	p := NewPolicy(Settings{LimitStatus: 429})
	u, err := ParseUser("carol", "$2y$04$Il4EwTXzJE7W6mEiegpL1e2abjg1PG7rxgvZVKNwufdrRg5hVf8iC")
	if err != nil {
		t.Fatal(err)
	}
	auth := NewBasicAuth("", []User{u})
	cfg.Rules = map[string]*Rules{"ns/plain": {Auth: auth}}
	now := time.Unix(1e9, 0)
	decide := func(client, password string) int {
		req := get("plain.example", "/", basic("carol", password))
		req.Client = netip.MustParseAddrPort(client)
		var x Exchange
		p.Decide(cfg, req, now, &x)
		return x.Status
	}
	if s := decide("192.0.2.1:1", "c@rol:pass"); s != 0 {
		t.Fatalf("first login: %d", s)
	}
	if len(auth.verified) != 1 {
		t.Fatalf("%d credentials remembered, want 1", len(auth.verified))
	}
	// The guesser's address has a burst of ten checks, then one a second.
	for i := range 10 {
		if s := decide("192.0.2.66:1", fmt.Sprint("guess", i)); s != 401 {
			t.Fatalf("guess %d: %d, want 401", i, s)
		}
	}
	if s := decide("192.0.2.66:1", "guess"); s != 429 {
		t.Errorf("eleventh guess at once: %d, want the limit status", s)
	}
	// The remembered login costs no check, and another address is not
	// slowed by the guesser.
	for range 20 {
		if s := decide("192.0.2.1:1", "c@rol:pass"); s != 0 {
			t.Fatalf("remembered login: %d", s)
		}
	}
	if s := decide("192.0.2.2:1", "c@rol:pass"); s != 0 {
		t.Errorf("another address: %d", s)
	}
	if len(auth.verified) != 1 {
		t.Errorf("%d credentials remembered, want 1", len(auth.verified))
	}
	// A check past the bound of concurrent ones is refused, not queued.
	for range maxSlowChecks {
		auth.slow <- struct{}{}
	}
	if s := decide("192.0.2.3:1", "other"); s != 503 {
		t.Errorf("with every check slot taken: %d, want 503", s)
	}
}

func TestValidRealm(t *testing.T) {
	for realm, want := range map[string]bool{"": true, "Authentication Required - foo": true, `a"b`: false, `a\b`: false, "tab\t": false, "é": false} {
		if ValidRealm(realm) != want {
			t.Errorf("ValidRealm(%q) = %v", realm, !want)
		}
	}
}
