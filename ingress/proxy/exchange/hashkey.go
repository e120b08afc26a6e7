package exchange

import (
	"fmt"
	"strings"

	"github.com/portico-lb/portico/ingress/proxy/h1"
)

// HashKey is the key of ingress-nginx's upstream-hash-by: text and nginx
// variables, in any combination ("$request_uri", "${host}-x",
// "$http_x_user$arg_id"). Portico knows the variables such keys use:
// $request_uri, $uri, $remote_addr, $host, and $http_NAME, $cookie_NAME,
// $arg_NAME for a header, a cookie and a query argument.
type HashKey struct {
	parts []keyPart
}

type keyPart struct {
	kind keyKind
	// text is the literal text, or the NAME of an $http_, $cookie_ or
	// $arg_ variable (a header name with '_' for '-').
	text string
}

type keyKind uint8

const (
	keyText keyKind = iota
	keyRequestURI
	keyURI
	keyRemoteAddr
	keyHost
	keyHeader
	keyCookie
	keyArg
)

var keyVars = map[string]keyKind{"request_uri": keyRequestURI, "uri": keyURI, "remote_addr": keyRemoteAddr, "host": keyHost}

var keyPrefixes = []struct {
	prefix string
	kind   keyKind
}{{"http_", keyHeader}, {"cookie_", keyCookie}, {"arg_", keyArg}}

// ParseHashKey reads an upstream-hash-by value. A '$' must start a
// variable Portico knows, "$name" or "${name}", as in nginx, where it
// cannot be escaped either.
func ParseHashKey(s string) (*HashKey, error) {
	k := &HashKey{}
	for s != "" {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			i = len(s)
		}
		if i > 0 {
			k.parts = append(k.parts, keyPart{kind: keyText, text: s[:i]})
			s = s[i:]
			continue
		}
		var name string
		if strings.HasPrefix(s, "${") {
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return nil, fmt.Errorf("%q: a \"${\" is not closed", s)
			}
			name, s = s[2:end], s[end+1:]
		} else {
			n := 1
			for n < len(s) && varByte(s[n]) {
				n++
			}
			name, s = s[1:n], s[n:]
		}
		p, err := keyVar(name)
		if err != nil {
			return nil, err
		}
		k.parts = append(k.parts, p)
	}
	if len(k.parts) == 0 {
		return nil, fmt.Errorf("the key is empty")
	}
	return k, nil
}

func varByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

func keyVar(name string) (keyPart, error) {
	for i := 0; i < len(name); i++ {
		if !varByte(name[i]) {
			return keyPart{}, fmt.Errorf("%q is not a variable name", name)
		}
	}
	if name == "" {
		return keyPart{}, fmt.Errorf("a '$' names no variable")
	}
	if k, ok := keyVars[name]; ok {
		return keyPart{kind: k}, nil
	}
	for _, p := range keyPrefixes {
		if rest, ok := strings.CutPrefix(name, p.prefix); ok && rest != "" {
			return keyPart{kind: p.kind, text: rest}, nil
		}
	}
	return keyPart{}, fmt.Errorf("$%s is not a variable Portico knows: use $request_uri, $uri, $remote_addr, $host, $http_NAME, $cookie_NAME or $arg_NAME", name)
}

// String returns the key with every variable as "${name}".
func (k *HashKey) String() string {
	var b strings.Builder
	for _, p := range k.parts {
		switch p.kind {
		case keyText:
			b.WriteString(p.text)
			continue
		case keyHeader, keyCookie, keyArg:
			b.WriteString("${" + keyPrefixes[p.kind-keyHeader].prefix + p.text + "}")
			continue
		}
		for name, kind := range keyVars {
			if kind == p.kind {
				b.WriteString("${" + name + "}")
			}
		}
	}
	return b.String()
}

// append appends the key's value for req to b; path is its decoded path.
// $remote_addr is the address the proxy judges the client by (see
// clientOf), as nginx's with real_ip.
func (k *HashKey) append(b []byte, req *Request, path string, x *Exchange) []byte {
	for _, p := range k.parts {
		switch p.kind {
		case keyText:
			b = append(b, p.text...)
		case keyRequestURI:
			b = append(b, req.Target...)
		case keyURI:
			b = append(b, path...)
		case keyRemoteAddr:
			b = x.policy.clientOf(req, x).AppendTo(b)
		case keyHost:
			h := hostOnly(req.Host)
			for i := 0; i < len(h); i++ {
				c := h[i]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				b = append(b, c)
			}
		case keyHeader:
			b = append(b, headerVar(req.Fields, p.text)...)
		case keyCookie:
			v, _ := cookie(req.Fields, p.text)
			b = append(b, v...)
		case keyArg:
			b = append(b, arg(req.Target, p.text)...)
		}
	}
	return b
}

// headerVar returns the value of nginx's $http_NAME: the first field
// whose name, '-' read as '_', is NAME, in any case.
func headerVar(fields []h1.Field, name string) string {
	for _, f := range fields {
		if len(f.Name) != len(name) {
			continue
		}
		same := true
		for i := 0; i < len(name) && same; i++ {
			a, b := lower(f.Name[i]), lower(name[i])
			if a == '-' {
				a = '_'
			}
			same = a == b
		}
		if same {
			return f.Value
		}
	}
	return ""
}

// arg returns the raw value of the first query argument called name, in
// any case, as nginx's $arg_NAME.
func arg(target, name string) string {
	_, query, ok := strings.Cut(target, "?")
	if !ok {
		return ""
	}
	for a := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(a, "=")
		if len(k) == len(name) && h1.Is(k, name) {
			return v
		}
	}
	return ""
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
