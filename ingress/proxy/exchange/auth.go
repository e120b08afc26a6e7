package exchange

import (
	"crypto/md5" //nolint:gosec // Apache's MD5-crypt ($apr1$) is what htpasswd writes by default
	crand "crypto/rand"
	"crypto/sha1" //nolint:gosec // {SHA} htpasswd lines: what they are, not a choice
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// BasicAuth is a route's HTTP Basic authentication (ingress-nginx's
// auth-type: basic, nginx's auth_basic): a request without the
// credentials of one of its users gets 401 and a challenge for its realm.
// The Authorization field of a request that passes goes upstream, as
// nginx sends it.
//
// Checking a bcrypt hash takes milliseconds of a CPU on purpose, and the
// front-ends decide on their event loops, so a BasicAuth remembers the
// credentials it has accepted (at most maxVerified of them): a user's
// client pays for bcrypt once, not on every request. Uncached bcrypt
// checks are bounded: at most maxSlowChecks run at once per route (more
// get 503), and each client address may start one a second with bursts
// of ten (more get the proxy's LimitStatus), so that a client guessing
// passwords cannot keep the proxy's CPUs busy.
//
// A BasicAuth with no user answers every request 503, as ingress-nginx
// does when an Ingress's auth Secret cannot be used: closed, never open.
// It is safe for concurrent use, and outlives Configs: the controller
// hands the same one to every Config while its Secret stays the same.
type BasicAuth struct {
	challenge h1.Field
	users     map[string]hash
	// key makes the remembered credentials' digests unguessable, so that
	// the timing of a look-up among them says nothing.
	key      [32]byte
	mu       sync.Mutex
	verified map[[32]byte]struct{}
	slow     chan struct{}
	attempts *RateLimit
}

const (
	// maxVerified bounds the credentials a BasicAuth remembers: 1,024
	// digests of 32 bytes. Only credentials that matched are remembered,
	// so the list grows with the users that log in, not with guesses.
	maxVerified = 1024
	// maxSlowChecks bounds the bcrypt checks running at once for one
	// route (per replica).
	maxSlowChecks = 2
	// maxCredentials bounds the Authorization value read: a longer one
	// is refused without being decoded.
	maxCredentials = 4096
	// MaxBcryptCost is the costliest bcrypt hash accepted: 2^12 rounds,
	// a quarter of a second of a CPU or so. Costlier ones would let one
	// login stall an event loop for seconds.
	MaxBcryptCost = 12
)

// User is one user of a BasicAuth: a name and the hash of its password.
type User struct {
	Name string
	hash hash
}

// NewBasicAuth returns the authentication of users, challenging for realm
// (ingress-nginx's auth-realm; empty as its default). When two users have
// the same name, the first one counts, as in nginx's htpasswd files. With
// no user, every request is answered 503.
func NewBasicAuth(realm string, users []User) *BasicAuth {
	a := &BasicAuth{
		challenge: h1.Field{Name: "WWW-Authenticate", Value: `Basic realm="` + realm + `"`},
		users:     make(map[string]hash, len(users)),
		verified:  map[[32]byte]struct{}{},
		slow:      make(chan struct{}, maxSlowChecks),
		attempts:  NewRateLimit(1, 10),
	}
	_, _ = crand.Read(a.key[:])
	for _, u := range users {
		if _, dup := a.users[u.Name]; !dup {
			a.users[u.Name] = u.hash
		}
	}
	return a
}

// ValidRealm reports whether a realm can go into a challenge as it is:
// visible ASCII and spaces, no quote or backslash.
func ValidRealm(realm string) bool {
	for i := 0; i < len(realm); i++ {
		if c := realm[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// authenticate decides whether req may pass a's check; when not, x is
// the answer and it returns false.
func (p *Policy) authenticate(a *BasicAuth, req *Request, x *Exchange) bool {
	start := len(x.scratch)
	code, why := a.check(p, req, x)
	clear(x.scratch[start:]) // the decoded password does not outlive the check
	x.scratch = x.scratch[:start]
	switch code {
	case 0:
		return true
	case 401:
		x.answer(401, why, a.challenge)
	default:
		x.answer(code, why)
	}
	return false
}

// check returns 0 when req has the credentials of one of a's users, else
// the status of the answer and why.
func (a *BasicAuth) check(p *Policy, req *Request, x *Exchange) (int, string) {
	if len(a.users) == 0 {
		return 503, "the credentials of this route could not be read; see its Ingress's Events"
	}
	value, n := "", 0
	for _, f := range req.Fields {
		if len(f.Name) == 13 && h1.Is(f.Name, "Authorization") {
			value = f.Value
			n++
		}
	}
	switch {
	case n > 1:
		// As nginx: the endpoint might read another one than was checked.
		return 400, "more than one Authorization field"
	case n == 0:
		return 401, "credentials are required"
	}
	user, password, ok := x.basicCredentials(value)
	if !ok {
		return 401, "the Authorization field does not hold Basic credentials"
	}
	h, known := a.users[string(user)]
	if !known {
		return 401, "the credentials are not valid"
	}
	digest := a.digest(x, user, h.text, password)
	a.mu.Lock()
	_, seen := a.verified[digest]
	a.mu.Unlock()
	if seen {
		return 0, ""
	}
	if h.kind == bcryptHash {
		if !a.attempts.Allow(p.clientOf(req, x).Unmap().WithZone(""), x.Record.Start) {
			return p.s.LimitStatus, "too many password checks from this address"
		}
		select {
		case a.slow <- struct{}{}:
			defer func() { <-a.slow }()
		default:
			return 503, "too many password checks at once on this route"
		}
	}
	if !h.matches(password) {
		return 401, "the credentials are not valid"
	}
	a.mu.Lock()
	if len(a.verified) >= maxVerified {
		for k := range a.verified { // forget any one
			delete(a.verified, k)
			break
		}
	}
	a.verified[digest] = struct{}{}
	a.mu.Unlock()
	return 0, ""
}

// basicCredentials decodes the user and password of a Basic Authorization
// value into x's scratch buffer (views, valid during the decision).
func (x *Exchange) basicCredentials(value string) (user, password []byte, ok bool) {
	value = strings.Trim(value, " \t")
	scheme, token, found := strings.Cut(value, " ")
	if !found || !h1.Is(scheme, "Basic") || len(token) > maxCredentials {
		return nil, nil, false
	}
	// nginx decodes with or without the padding.
	token = strings.TrimRight(strings.TrimLeft(token, " "), "=")
	start, need := len(x.scratch), base64.RawStdEncoding.DecodedLen(len(token))
	x.scratch = slices.Grow(x.scratch, need)[:start+need]
	n, err := base64.RawStdEncoding.Decode(x.scratch[start:], []byte(token))
	if err != nil {
		return nil, nil, false
	}
	dec := x.scratch[start : start+n]
	i := strings.IndexByte(view(dec), ':')
	if i < 0 {
		return nil, nil, false
	}
	return dec[:i], dec[i+1:], true
}

// digest returns the keyed digest of credentials checked against a hash.
func (a *BasicAuth) digest(x *Exchange, user []byte, hashText string, password []byte) [32]byte {
	start := len(x.scratch)
	b := append(x.scratch, a.key[:]...)
	b = append(b, user...)
	b = append(b, 0)
	b = append(b, hashText...)
	b = append(b, 0)
	b = append(b, password...)
	d := sha256.Sum256(b[start:])
	clear(b[start:]) // the password does not stay in the buffer
	x.scratch = b[:start]
	return d
}

// The hashes of htpasswd lines that are accepted.
type hashKind uint8

const (
	bcryptHash hashKind = iota + 1 // $2y$, $2a$, $2b$ (htpasswd -B)
	md5Hash                        // $apr1$ (htpasswd's default, -m) and $1$ (openssl passwd -1)
	shaHash                        // {SHA}: base64 of SHA-1 (htpasswd -s)
)

type hash struct {
	kind  hashKind
	text  string
	magic string // md5Hash: "$apr1$" or "$1$"
	salt  string // md5Hash
	sum   []byte // shaHash
}

// ParseUser reads the hash of a user's password (an htpasswd line's part
// after the colon, or an auth-map value). A hash of a kind Portico does
// not check is an error that names the kind: it is never taken for the
// password itself.
func ParseUser(name, hashed string) (User, error) {
	if name == "" {
		return User{}, errors.New("the user name is empty")
	}
	h, err := parseHash(hashed)
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", name, err)
	}
	return User{Name: name, hash: h}, nil
}

// ParseHtpasswd reads the users of an htpasswd file, "user:hash" a line;
// blank lines and '#' comments are skipped. The errors say which lines
// were left out and why; the users of the other lines are returned.
func ParseHtpasswd(text string) ([]User, []error) {
	var users []User
	var errs []error
	seen := map[string]int{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		name, hashed, ok := strings.Cut(line, ":")
		if !ok {
			errs = append(errs, fmt.Errorf("line %d is not user:hash", i+1))
			continue
		}
		if first, dup := seen[name]; dup {
			errs = append(errs, fmt.Errorf("line %d: user %q is on line %d already, which counts", i+1, name, first))
			continue
		}
		u, err := ParseUser(name, strings.TrimSpace(hashed))
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", i+1, err))
			continue
		}
		seen[name] = i + 1
		users = append(users, u)
	}
	return users, errs
}

func parseHash(s string) (hash, error) {
	h := hash{text: s}
	switch {
	case strings.HasPrefix(s, "$2y$") || strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil || len(s) != 60 {
			return h, errors.New("the bcrypt hash is malformed")
		}
		if cost > MaxBcryptCost {
			return h, fmt.Errorf("the bcrypt hash has cost %d, over %d, too slow to check on a login (htpasswd -B -C %d)", cost, MaxBcryptCost, min(10, MaxBcryptCost))
		}
		h.kind = bcryptHash
	case strings.HasPrefix(s, "$apr1$") || strings.HasPrefix(s, "$1$"):
		h.magic = s[:strings.IndexByte(s[1:], '$')+2]
		salt, sum, ok := strings.Cut(s[len(h.magic):], "$")
		if !ok || len(salt) > 8 || len(sum) != 22 || !crypt64(salt) || !crypt64(sum) {
			return h, errors.New("the MD5-crypt hash is malformed")
		}
		h.kind, h.salt = md5Hash, salt
	case strings.HasPrefix(s, "{SHA}"):
		sum, err := base64.StdEncoding.DecodeString(s[5:])
		if err != nil || len(sum) != sha1.Size {
			return h, errors.New("the {SHA} hash is malformed")
		}
		h.kind, h.sum = shaHash, sum
	default:
		return h, fmt.Errorf("the password is %s, which Portico does not check (use htpasswd -B for bcrypt); the user is left out", kindOf(s))
	}
	return h, nil
}

// kindOf names the kind of hash s is, for a Warning.
func kindOf(s string) string {
	switch {
	case s == "":
		return "empty"
	case strings.HasPrefix(s, "{SSHA}"):
		return "a salted SHA-1 hash ({SSHA})"
	case strings.HasPrefix(s, "{PLAIN}"):
		return "plain text ({PLAIN})"
	case strings.HasPrefix(s, "$5$"), strings.HasPrefix(s, "$6$"):
		return "a SHA-crypt hash (" + s[:3] + ")"
	case strings.HasPrefix(s, "$"):
		if i := strings.IndexByte(s[1:], '$'); i >= 0 && i < 8 {
			return "a crypt hash of scheme " + strconv.Quote(s[:i+2])
		}
	case len(s) == 13 && crypt64(s):
		return "a crypt DES hash"
	}
	return "not a hash Portico knows (plain text?)"
}

// matches reports whether password hashes to h, in time that does not
// depend on how much of it matches.
func (h hash) matches(password []byte) bool {
	switch h.kind {
	case bcryptHash:
		return bcrypt.CompareHashAndPassword([]byte(h.text), password) == nil
	case md5Hash:
		return subtle.ConstantTimeCompare([]byte(md5Crypt(password, h.magic, h.salt)), []byte(h.text)) == 1
	case shaHash:
		sum := sha1.Sum(password) //nolint:gosec // see shaHash
		return subtle.ConstantTimeCompare(sum[:], h.sum) == 1
	}
	return false
}

const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func crypt64(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(itoa64, s[i]) < 0 {
			return false
		}
	}
	return true
}

// md5Crypt is Poul-Henning Kamp's MD5-crypt, with magic "$1$", and
// Apache's variant of it, the same but for the magic "$apr1$" (apr_md5.c).
func md5Crypt(password []byte, magic, salt string) string {
	alt := md5.New() //nolint:gosec // see md5Hash
	alt.Write(password)
	alt.Write([]byte(salt))
	alt.Write(password)
	altSum := alt.Sum(nil)

	ctx := md5.New() //nolint:gosec // see md5Hash
	ctx.Write(password)
	ctx.Write([]byte(magic))
	ctx.Write([]byte(salt))
	for n := len(password); n > 0; n -= 16 {
		ctx.Write(altSum[:min(n, 16)])
	}
	for n := len(password); n > 0; n >>= 1 {
		if n&1 != 0 {
			ctx.Write([]byte{0})
		} else {
			ctx.Write(password[:1])
		}
	}
	sum := ctx.Sum(nil)
	for i := range 1000 {
		r := md5.New() //nolint:gosec // see md5Hash
		if i&1 != 0 {
			r.Write(password)
		} else {
			r.Write(sum)
		}
		if i%3 != 0 {
			r.Write([]byte(salt))
		}
		if i%7 != 0 {
			r.Write(password)
		}
		if i&1 != 0 {
			r.Write(sum)
		} else {
			r.Write(password)
		}
		sum = r.Sum(sum[:0])
	}
	out := make([]byte, 0, len(magic)+len(salt)+1+22)
	out = append(out, magic...)
	out = append(out, salt...)
	out = append(out, '$')
	to64 := func(v uint32, n int) {
		for ; n > 0; n-- {
			out = append(out, itoa64[v&0x3f])
			v >>= 6
		}
	}
	for _, t := range [5][3]int{{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}} {
		to64(uint32(sum[t[0]])<<16|uint32(sum[t[1]])<<8|uint32(sum[t[2]]), 4)
	}
	to64(uint32(sum[11]), 2)
	return string(out)
}
