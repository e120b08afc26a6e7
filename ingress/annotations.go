package ingress

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/proxy/h1"
	"github.com/portico-lb/portico/ingress/route"
)

// Ingress annotations are read in two spellings: ingress-nginx's, so that
// Ingresses written for it keep their meaning, and Portico's own, which
// wins when both are set. Every annotation under either prefix is
// accounted for: applied, or named in a Warning Event (refused, not
// supported yet, or unknown). Nothing is ignored silently, and an
// annotation that restricts access fails closed: when Portico cannot
// enforce it, or its value is invalid, the Ingress's routes answer 403
// rather than serve unprotected.
const (
	NginxPrefix   = "nginx.ingress.kubernetes.io/"
	PorticoPrefix = "portico.dev/"
)

// More Event reasons for annotations (see ReasonInvalidAnnotation).
const (
	// ReasonUnsupportedAnnotation: an ingress-nginx annotation Portico does
	// not implement yet, or one it does not know at all (a typo?).
	ReasonUnsupportedAnnotation = "UnsupportedAnnotation"
	// ReasonSnippetRefused: a *-snippet annotation, nginx configuration
	// text, which Portico never executes.
	ReasonSnippetRefused = "SnippetRefused"
	// ReasonAccessRefused: an access restriction Portico never executes
	// (a snippet's allow, deny, satisfy or auth_*); the Ingress's routes
	// answer 403 until it is removed.
	ReasonAccessRefused = "AccessRefused"
)

// annotated is what an Ingress's annotations make of it.
type annotated struct {
	// noSSLRedirect: ssl-redirect "false".
	noSSLRedirect bool
	// rules for the proxy; nil when no annotation sets one.
	rules *exchange.Rules
	// cors: enable-cors; corsOpts collects the cors-* annotations.
	cors               bool
	corsOpts           exchange.CORS
	corsCredentialsSet bool
	// limits: limit-rps, limit-rpm, limit-burst-multiplier; the
	// compiler turns them into RateLimits that outlive a compile.
	limits limitSpec
	// canary: the Ingress is a canary (route.Ingress.Canary); canaryOpts
	// collects its canary-* annotations.
	canary     bool
	canaryOpts route.Canary
	// policy stands for the annotations that change how the routes are
	// served (route.Ingress.Policy).
	policy string
	// regex, rewrite and serviceUpstream: use-regex, rewrite-target,
	// service-upstream (route.Ingress).
	regex           bool
	rewrite         string
	serviceUpstream bool
	// protocol and proxySSL: backend-protocol and proxy-ssl-* (backend.go).
	protocol route.Protocol
	proxySSL proxySSL
	// passthrough: ssl-passthrough (route.Ingress.Passthrough).
	passthrough bool
	// fromToWWW: from-to-www-redirect (route.Ingress.FromToWWW).
	fromToWWW bool
	// affinity: affinity "cookie"; affinityOpts collects the
	// session-cookie-* and affinity-mode annotations (traffic.go).
	affinity     bool
	affinityOpts exchange.Affinity
	// The redirects, settled once every annotation is read.
	permanent, temporal         string
	permanentCode, temporalCode int
	// auth: auth-type, auth-secret, auth-secret-type, auth-realm (auth.go).
	auth authSpec
	// clientTLS: the auth-tls-* annotations (clienttls.go).
	clientTLS clientTLSSpec
	// errors: custom-http-errors, default-backend,
	// disable-proxy-intercept-errors (errorpages.go).
	errors errorSpec
	// ext: auth-url and its companions (extauth.go).
	ext   extAuthSpec
	probs []problem
}

// annotation is one annotation Portico applies: parse reads a value into a.
type annotation struct {
	parse func(a *annotated, name, value string) error
	// access: the annotation restricts who is served; an invalid value
	// refuses every request instead of being left out.
	access bool
}

// annotations are the ones applied, by name without prefix.
var annotations = map[string]annotation{
	"ssl-redirect": {parse: func(a *annotated, _, v string) error {
		b, err := parseBool(v)
		a.noSSLRedirect = err == nil && !b
		return err
	}},
	"whitelist-source-range": {parse: sourceRange(func(r *exchange.Rules) *[]netip.Prefix { return &r.Allow }), access: true},
	"allowlist-source-range": {parse: sourceRange(func(r *exchange.Rules) *[]netip.Prefix { return &r.Allow }), access: true},
	"denylist-source-range":  {parse: sourceRange(func(r *exchange.Rules) *[]netip.Prefix { return &r.Deny }), access: true},
	"proxy-body-size": {parse: func(a *annotated, _, v string) error {
		n, err := exchange.ParseSize(v)
		if err != nil {
			return err
		}
		if n == 0 {
			n = -1 // nginx's 0: no limit
		}
		a.rulesOf().Limits.MaxBodySize = n
		return nil
	}},
	"proxy-connect-timeout": {parse: timeout(func(l *exchange.Limits) *time.Duration { return &l.ConnectTimeout })},
	"proxy-read-timeout":    {parse: timeout(func(l *exchange.Limits) *time.Duration { return &l.ReadTimeout })},
	"proxy-send-timeout":    {parse: timeout(func(l *exchange.Limits) *time.Duration { return &l.SendTimeout })},
	"proxy-next-upstream": {parse: func(a *annotated, _, v string) error {
		n, err := exchange.ParseNextUpstream(v)
		if err == nil {
			a.rulesOf().NextUpstream = n
		}
		return err
	}},
	"use-regex": {parse: boolean(func(a *annotated) *bool { return &a.regex })},
	"rewrite-target": {parse: func(a *annotated, _, v string) error {
		if !printable(v) || strings.ContainsAny(v, "#") {
			return fmt.Errorf("%q is not a path to rewrite to: want one without blanks, control bytes or '#' (groups as $1 to $9)", v)
		}
		a.rewrite = v
		return nil
	}},
	"enable-cors":           {parse: boolean(func(a *annotated) *bool { return &a.cors })},
	"service-upstream":      {parse: boolean(func(a *annotated) *bool { return &a.serviceUpstream })},
	"backend-protocol":      {parse: parseProtocol},
	"ssl-passthrough":       {parse: boolean(func(a *annotated) *bool { return &a.passthrough })},
	"proxy-ssl-secret":      {parse: parseProxySSL},
	"proxy-ssl-verify":      {parse: parseProxySSL},
	"proxy-ssl-name":        {parse: parseProxySSL},
	"proxy-ssl-server-name": {parse: parseProxySSL},
	"cors-allow-origin": {parse: func(a *annotated, _, v string) error {
		var origins []string
		for o := range strings.SplitSeq(v, ",") {
			o = strings.ToLower(strings.TrimSpace(o))
			if o == "" {
				continue
			}
			if o != "*" && !validOrigin(o) {
				a.corsOpts.Origins = []string{} // allows none: a bad list never widens to "*"
				return fmt.Errorf("%q is not an origin: want *, or scheme://host[:port] with at most a leading *. in the host; no origin is allowed until it is fixed", o)
			}
			origins = append(origins, o)
		}
		if len(origins) == 0 {
			a.corsOpts.Origins = []string{}
			return fmt.Errorf("%q names no origin; no origin is allowed until it is fixed", v)
		}
		a.corsOpts.Origins = origins
		return nil
	}},
	"cors-allow-methods":  {parse: tokenList(func(c *exchange.CORS) *string { return &c.Methods })},
	"cors-allow-headers":  {parse: tokenList(func(c *exchange.CORS) *string { return &c.Headers })},
	"cors-expose-headers": {parse: tokenList(func(c *exchange.CORS) *string { return &c.Expose })},
	"cors-allow-credentials": {parse: func(a *annotated, _, v string) error {
		b, err := parseBool(v)
		if err == nil {
			a.corsOpts.Credentials = b
			a.corsCredentialsSet = true
		}
		return err
	}},
	"cors-max-age": {parse: func(a *annotated, _, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a number of seconds", v)
		}
		a.corsOpts.MaxAge = strconv.Itoa(n)
		return nil
	}},
	"limit-rps":              {parse: count(func(l *limitSpec) *int { return &l.rps })},
	"limit-rpm":              {parse: count(func(l *limitSpec) *int { return &l.rpm })},
	"limit-burst-multiplier": {parse: count(func(l *limitSpec) *int { return &l.burst })},
	"limit-whitelist":        {parse: sourceRange(func(r *exchange.Rules) *[]netip.Prefix { return &r.LimitExempt })},
	"upstream-vhost": {parse: func(a *annotated, _, v string) error {
		if !h1.ValidHost(v) || v == "" {
			return fmt.Errorf("%q is not a host", v)
		}
		a.rulesOf().UpstreamHost = v
		return nil
	}},
	"x-forwarded-prefix": {parse: func(a *annotated, _, v string) error {
		if !strings.HasPrefix(v, "/") || !printable(v) {
			return fmt.Errorf("%q is not a path prefix", v)
		}
		a.rulesOf().ForwardedPrefix = v
		return nil
	}},
	"canary": {parse: boolean(func(a *annotated) *bool { return &a.canary })},
	"canary-by-header": {parse: func(a *annotated, _, v string) error {
		if !h1.ValidToken(v) {
			return fmt.Errorf("%q is not a header name", v)
		}
		a.canaryOpts.Header = v
		return nil
	}},
	"canary-by-header-value": {parse: func(a *annotated, _, v string) error {
		if !printable(v) {
			return fmt.Errorf("%q is not a header value: want visible characters only", v)
		}
		a.canaryOpts.HeaderValue = v
		return nil
	}},
	"canary-by-cookie": {parse: func(a *annotated, _, v string) error {
		if !h1.ValidToken(v) {
			return fmt.Errorf("%q is not a cookie name", v)
		}
		a.canaryOpts.Cookie = v
		return nil
	}},
	"canary-weight":           {parse: weight(func(c *route.Canary) *int { return &c.Weight })},
	"canary-weight-total":     {parse: weight(func(c *route.Canary) *int { return &c.WeightTotal })},
	"permanent-redirect":      {parse: redirectURL(func(a *annotated) *string { return &a.permanent })},
	"temporal-redirect":       {parse: redirectURL(func(a *annotated) *string { return &a.temporal })},
	"permanent-redirect-code": {parse: redirectCode(func(a *annotated) *int { return &a.permanentCode })},
	"temporal-redirect-code":  {parse: redirectCode(func(a *annotated) *int { return &a.temporalCode })},
	"force-ssl-redirect": {parse: func(a *annotated, _, v string) error {
		b, err := parseBool(v)
		if err == nil && b {
			a.rulesOf().ForceSSLRedirect = true
		}
		return err
	}},
	"app-root": {parse: func(a *annotated, _, v string) error {
		if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || !printable(v) {
			return fmt.Errorf("%q is not a path: want one that starts with a single /, without blanks or control bytes", v)
		}
		a.rulesOf().AppRoot = v
		return nil
	}},
	"auth-type":        {parse: authType, access: true},
	"auth-secret":      {parse: authSecret, access: true},
	"auth-secret-type": {parse: authSecretType, access: true},
	"auth-realm":       {parse: authRealm},
	// Client certificates: see clienttls.go, which reads them together.
	"auth-tls-secret":                       {parse: clientTLSValue, access: true},
	"auth-tls-verify-client":                {parse: clientTLSValue, access: true},
	"auth-tls-verify-depth":                 {parse: clientTLSValue},
	"auth-tls-match-cn":                     {parse: clientTLSValue, access: true},
	"auth-tls-error-page":                   {parse: clientTLSValue},
	"auth-tls-pass-certificate-to-upstream": {parse: clientTLSValue},
	// External authentication: see extauth.go.
	"auth-url":                   {parse: authURL, access: true},
	"auth-method":                {parse: authMethod, access: true},
	"auth-response-headers":      {parse: authResponseHeaders, access: true},
	"auth-request-redirect":      {parse: authRequestRedirect, access: true},
	"auth-signin":                {parse: authSignin, access: true},
	"auth-signin-redirect-param": {parse: authSigninRedirectParam, access: true},
	"proxy-next-upstream-tries": {parse: func(a *annotated, _, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a number of tries (0 for every endpoint)", v)
		}
		if n == 0 {
			n = math.MaxInt32 // nginx's 0: no limit but the endpoints
		}
		a.rulesOf().Tries = n
		return nil
	}},
	// Traffic: see route/www.go, exchange/connlimit.go, exchange/affinity.go.
	"from-to-www-redirect":    {parse: boolean(func(a *annotated) *bool { return &a.fromToWWW })},
	"limit-connections":       {parse: count(func(l *limitSpec) *int { return &l.conns })},
	"affinity":                {parse: parseAffinity},
	"affinity-mode":           {parse: parseAffinityMode},
	"session-cookie-name":     {parse: parseCookieName},
	"session-cookie-path":     {parse: parseCookiePath},
	"session-cookie-max-age":  {parse: seconds(func(a *exchange.Affinity) *int { return &a.MaxAge })},
	"session-cookie-expires":  {parse: seconds(func(a *exchange.Affinity) *int { return &a.Expires })},
	"session-cookie-samesite": {parse: parseSameSite},
	"session-cookie-secure": {parse: func(a *annotated, _, v string) error {
		b, err := parseBool(v)
		a.affinityOpts.Secure, a.affinityOpts.SecureSet = b, err == nil
		return err
	}},
	"session-cookie-change-on-failure": {parse: func(a *annotated, _, v string) error {
		b, err := parseBool(v)
		a.affinityOpts.ChangeOnFailure = b
		return err
	}},
	// Error pages: see errorpages.go.
	"custom-http-errors":             {parse: parseErrorCodes},
	"default-backend":                {parse: parseDefaultBackend},
	"disable-proxy-intercept-errors": {parse: boolean(func(a *annotated) *bool { return &a.errors.noIntercept })},
	"upstream-hash-by": {parse: func(a *annotated, _, v string) error {
		k, err := exchange.ParseHashKey(v)
		if err != nil {
			return fmt.Errorf("%w; requests are spread round robin", err)
		}
		a.rulesOf().HashBy = k
		return nil
	}},
}

// unsupported are the other ingress-nginx annotations, known and not
// implemented yet: each gets a Warning saying it has no effect.
var unsupported = []string{
	"affinity-canary-behavior", "auth-always-set-cookie",
	"auth-cache-duration", "auth-cache-key", "auth-keepalive", "auth-keepalive-requests",
	"auth-keepalive-share-vars", "auth-keepalive-timeout", "auth-proxy-set-headers",
	"canary-by-header-pattern", "client-body-buffer-size", "connection-proxy-header",
	"custom-headers", "enable-access-log", "enable-modsecurity", "enable-opentelemetry", "enable-owasp-core-rules",
	"enable-rewrite-log", "global-rate-limit", "http2-push-preload",
	"limit-rate", "limit-rate-after", "load-balance", "mirror-host",
	"mirror-request-body", "mirror-target", "modsecurity-transaction-id",
	"opentelemetry-trust-incoming-span", "preserve-trailing-slash", "proxy-buffer-size",
	"proxy-buffering", "proxy-buffers-number", "proxy-cookie-domain", "proxy-cookie-path",
	"proxy-http-version", "proxy-max-temp-file-size", "proxy-redirect-from", "proxy-redirect-to",
	"proxy-request-buffering", "proxy-ssl-ciphers", "proxy-ssl-protocols", "proxy-ssl-verify-depth",
	"relative-redirects", "satisfy", "server-alias",
	"session-cookie-conditional-samesite-none", "session-cookie-domain",
	"ssl-ciphers", "ssl-prefer-server-ciphers",
	"upstream-hash-by-subset", "upstream-hash-by-subset-size",
}

// readAnnotations applies the annotations of an Ingress and says what it
// could not.
func readAnnotations(key types.NamespacedName, ann map[string]string) annotated {
	var a annotated
	// name → value, Portico's spelling over ingress-nginx's.
	values := map[string]string{}
	spelled := map[string]string{}
	for k, v := range ann {
		name, ok := strings.CutPrefix(k, NginxPrefix)
		if !ok {
			continue
		}
		values[name], spelled[name] = v, k
	}
	for k, v := range ann {
		if name, ok := strings.CutPrefix(k, PorticoPrefix); ok {
			values[name], spelled[name] = v, k
		}
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	slices.Sort(names)
	warn := func(reason, format string, args ...any) {
		a.probs = append(a.probs, problem{key, reason, fmt.Sprintf(format, args...)})
	}
	for _, name := range names {
		k, v := spelled[name], values[name]
		switch an, ok := annotations[name]; {
		case ok:
			if err := an.parse(&a, name, v); err != nil {
				if an.access {
					a.rulesOf().Refuse = refused
					warn(ReasonInvalidAnnotation, "annotation %s: %v; every request to this Ingress is refused (403) until it is fixed", k, err)
				} else {
					warn(ReasonInvalidAnnotation, "annotation %s: %v; the proxy's setting applies", k, err)
				}
			}
		case strings.HasSuffix(name, "-snippet") && accessDirectives(v):
			a.rulesOf().Refuse = refused
			warn(ReasonAccessRefused, "annotation %s holds nginx access directives (allow, deny, satisfy or auth_*), which Portico never executes: every request to this Ingress is refused (403) rather than served without them, until it is removed", k)
		case strings.HasSuffix(name, "-snippet"):
			warn(ReasonSnippetRefused, "annotation %s is nginx configuration, which Portico never executes; it has no effect", k)
		case slices.Contains(unsupported, name):
			warn(ReasonUnsupportedAnnotation, "annotation %s is not supported by Portico yet; it has no effect", k)
		default:
			warn(ReasonUnsupportedAnnotation, "annotation %s is not one Portico or ingress-nginx knows (a typo?); it has no effect", k)
		}
	}
	a.settleRedirect(spelled, warn)
	a.settleCanary(spelled, warn)
	a.settleCORS(spelled, warn)
	a.settleAuth(key, spelled, warn)
	a.settleClientTLS(key, spelled, warn)
	a.settleExtAuth(spelled, warn)
	a.settleAffinity(spelled, warn)
	a.settleErrors(spelled, warn)
	var policy strings.Builder
	for _, name := range names {
		if _, applied := annotations[name]; applied || strings.HasSuffix(name, "-snippet") {
			fmt.Fprintf(&policy, "%s=%q\n", name, values[name])
		}
	}
	if a.auth.ref.Name != "" { // a name means a Secret of the Ingress's namespace
		fmt.Fprintf(&policy, "auth-secret-ref=%q\n", a.auth.ref.String())
	}
	if a.clientTLS.ref.Name != "" {
		fmt.Fprintf(&policy, "auth-tls-secret-ref=%q\n", a.clientTLS.ref.String())
	}
	a.policy = policy.String()
	if w, ok := values["whitelist-source-range"]; ok {
		if al, ok := values["allowlist-source-range"]; ok && al != w {
			a.rulesOf().Refuse = refused
			warn(ReasonInvalidAnnotation, "annotations whitelist-source-range and allowlist-source-range are both set and differ: every request to this Ingress is refused (403) until one is removed")
		}
	}
	return a
}

// refused is what a client of a route that fails closed is told; the
// Warning Event on the Ingress says why.
const refused = "this route is closed until its Ingress's annotations are fixed"

// accessDirectives reports whether nginx configuration text holds
// directives that restrict who is served.
func accessDirectives(conf string) bool {
	words := strings.FieldsFunc(conf, func(r rune) bool { return r == ';' || r == '{' || r == '}' || unicode.IsSpace(r) })
	for _, w := range words {
		if w == "allow" || w == "deny" || w == "satisfy" || strings.HasPrefix(w, "auth_") {
			return true
		}
	}
	return false
}

func (a *annotated) rulesOf() *exchange.Rules {
	if a.rules == nil {
		a.rules = &exchange.Rules{}
	}
	return a.rules
}

// settleRedirect makes the redirect of the Ingress out of its four
// annotations: temporal-redirect wins over permanent-redirect, as in
// ingress-nginx, and a Warning says the other has no effect.
func (a *annotated) settleRedirect(spelled map[string]string, warn func(reason, format string, args ...any)) {
	to, code := a.permanent, cmp.Or(a.permanentCode, 301)
	if a.temporal != "" {
		if a.permanent != "" {
			warn(ReasonInvalidAnnotation, "annotations %s and %s are both set: the temporal redirect applies, %s has no effect",
				spelled["temporal-redirect"], spelled["permanent-redirect"], spelled["permanent-redirect"])
		}
		to, code = a.temporal, cmp.Or(a.temporalCode, 302)
	}
	if to != "" {
		r := a.rulesOf()
		r.RedirectURL, r.RedirectCode = to, code
	}
}

// settleCanary checks the canary-* annotations against each other: they
// mean something on a canary Ingress only, and a weight is out of its
// total.
func (a *annotated) settleCanary(spelled map[string]string, warn func(reason, format string, args ...any)) {
	c := &a.canaryOpts
	if !a.canary {
		for _, n := range []string{"canary-by-header", "canary-by-header-value", "canary-by-cookie", "canary-weight", "canary-weight-total"} {
			if k, ok := spelled[n]; ok {
				warn(ReasonInvalidAnnotation, "annotation %s has no effect: the Ingress is not a canary (canary: \"true\")", k)
			}
		}
		return
	}
	c.WeightTotal = cmp.Or(c.WeightTotal, 100)
	if c.Weight > c.WeightTotal {
		warn(ReasonInvalidAnnotation, "annotation %s: %d is more than the total %d; every request goes to the canary", spelled["canary-weight"], c.Weight, c.WeightTotal)
		c.Weight = c.WeightTotal
	}
	if c.HeaderValue != "" && c.Header == "" {
		warn(ReasonInvalidAnnotation, "annotation %s has no effect without canary-by-header", spelled["canary-by-header-value"])
	}
}

// settleCORS makes the CORS policy out of enable-cors and the cors-*
// annotations, with ingress-nginx's defaults for those not set.
func (a *annotated) settleCORS(spelled map[string]string, warn func(reason, format string, args ...any)) {
	if !a.cors {
		for _, n := range []string{"cors-allow-origin", "cors-allow-methods", "cors-allow-headers", "cors-expose-headers", "cors-allow-credentials", "cors-max-age"} {
			if k, ok := spelled[n]; ok {
				warn(ReasonInvalidAnnotation, "annotation %s has no effect without enable-cors: \"true\"", k)
			}
		}
		return
	}
	c := a.corsOpts
	if c.Origins == nil {
		c.Origins = []string{"*"}
	}
	c.Methods = cmp.Or(c.Methods, "GET, PUT, POST, DELETE, PATCH, OPTIONS")
	c.Headers = cmp.Or(c.Headers, "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization")
	c.MaxAge = cmp.Or(c.MaxAge, "1728000")
	if !a.corsCredentialsSet {
		c.Credentials = true
	}
	a.rulesOf().CORS = &c
}

// tokenList parses a comma-separated list of tokens (methods, header
// names) into the field picks, as written.
func tokenList(field func(*exchange.CORS) *string) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		n := 0
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if t != "*" && !h1.ValidToken(t) {
				return fmt.Errorf("%q is not a name: want a comma-separated list", t)
			}
			n++
		}
		if n == 0 {
			return fmt.Errorf("%q names nothing", v)
		}
		*field(&a.corsOpts) = strings.TrimSpace(v)
		return nil
	}
}

// validOrigin reports whether o is scheme://host[:port], lower case, the
// host possibly starting with "*.".
func validOrigin(o string) bool {
	scheme, host, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || host == "" || !printable(o) || strings.ContainsAny(host, "/?#@,") {
		return false
	}
	for _, c := range scheme {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	host = strings.TrimPrefix(host, "*.")
	return host != "" && !strings.Contains(host, "*")
}

// limitSpec is what the rate-limit annotations ask for.
type limitSpec struct{ rps, rpm, burst, conns int }

// count parses a whole number of requests from 1 to 1000000 into the
// field picks.
func count(field func(*limitSpec) *int) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 1000000 {
			return fmt.Errorf("%q is not a number from 1 to 1000000", v)
		}
		*field(&a.limits) = n
		return nil
	}
}

// weight parses a canary weight: a whole number from 0 to 1000000.
func weight(field func(*route.Canary) *int) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 1000000 {
			return fmt.Errorf("%q is not a weight: want a whole number from 0 to 1000000", v)
		}
		*field(&a.canaryOpts) = n
		return nil
	}
}

// redirectURL parses an absolute http(s) URL to redirect to.
func redirectURL(field func(*annotated) *string) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !printable(v) {
			return fmt.Errorf("%q is not an absolute http or https URL", v)
		}
		*field(a) = v
		return nil
	}
}

// redirectCode parses a redirect status: 301, 302, 303, 307 or 308.
func redirectCode(field func(*annotated) *int) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n != 301 && n != 302 && n != 303 && n != 307 && n != 308 {
			return fmt.Errorf("%q is not a redirect status (301, 302, 303, 307 or 308)", v)
		}
		*field(a) = n
		return nil
	}
}

// printable reports whether s is not empty and has only visible ASCII: a
// value that goes into a Location field must not break it.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return s != ""
}

// sourceRange parses a comma-separated list of CIDRs or addresses into the
// list field picks.
func sourceRange(field func(*exchange.Rules) *[]netip.Prefix) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		var out []netip.Prefix
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				ip, ierr := netip.ParseAddr(s)
				if ierr != nil || ip.Zone() != "" {
					return fmt.Errorf("%q is not a CIDR or an IP address", s)
				}
				p = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
			}
			if p.Addr().Is4In6() {
				// The proxy compares IPv4 clients unmapped: an
				// ::ffff:a.b.c.d/n range is the IPv4 range it spells.
				if p.Bits() < 96 {
					return fmt.Errorf("%q spans IPv4-mapped and other IPv6 addresses: write the IPv4 range", s)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
		}
		if len(out) == 0 {
			return fmt.Errorf("%q names no address", v)
		}
		*field(a.rulesOf()) = out
		return nil
	}
}

// timeout parses an ingress-nginx timeout, in seconds ("60"), or with
// nginx's units ("500ms", "30s", "2m"), into the field picks.
func timeout(field func(*exchange.Limits) *time.Duration) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		d, err := parseSeconds(v)
		if err != nil {
			return err
		}
		*field(&a.rulesOf().Limits) = d
		return nil
	}
}

func parseSeconds(v string) (time.Duration, error) {
	s := strings.TrimSpace(v)
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 86400 {
			return 0, fmt.Errorf("%q: want a number of seconds from 1 to 86400", v)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 24*time.Hour || strings.ContainsAny(s, ".-+") {
		return 0, fmt.Errorf("%q is not a timeout: want seconds (60) or a number with ms, s, m or h", v)
	}
	return d, nil
}

// boolean parses "true" or "false" into the field picks.
func boolean(field func(*annotated) *bool) func(*annotated, string, string) error {
	return func(a *annotated, _, v string) error {
		b, err := parseBool(v)
		*field(a) = err == nil && b
		return err
	}
}

func parseBool(v string) (bool, error) {
	switch strings.TrimSpace(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is neither \"true\" nor \"false\"", v)
}
