// Package echoserver answers every HTTP request with a JSON description of
// the request, in the format of the ingress conformance suite's echo image
// (ingressconformance/echoserver). The lab runs it wherever a Pod asks for
// that image, so Ingress and Service tests can see which pod served them and
// what request reached it.
package echoserver

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
)

// Context says where the server runs; the conformance suite reads it to
// check that a request reached the intended backend.
type Context struct {
	Namespace string `json:"namespace"`
	Ingress   string `json:"ingress"`
	Service   string `json:"service"`
	Pod       string `json:"pod"`
}

// Response is the JSON body of every echoed request.
type Response struct {
	Path    string              `json:"path"`
	Host    string              `json:"host"`
	Method  string              `json:"method"`
	Proto   string              `json:"proto"`
	Headers map[string][]string `json:"headers"`

	Context
}

// ContextFromEnv reads the context the way the upstream image does.
func ContextFromEnv() Context {
	return Context{
		Namespace: os.Getenv("NAMESPACE"),
		Ingress:   os.Getenv("INGRESS_NAME"),
		Service:   os.Getenv("SERVICE_NAME"),
		Pod:       os.Getenv("POD_NAME"),
	}
}

// Handler serves /health with "OK" and echoes everything else.
func Handler(c Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("OK"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := json.MarshalIndent(Response{
			Path:    r.RequestURI,
			Host:    r.Host,
			Method:  r.Method,
			Proto:   r.Proto,
			Headers: r.Header,
			Context: c,
		}, "", " ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(body)
	})
	// The upstream image collapses doubled slashes before routing, so
	// "//health" is a health check too; keep that behaviour.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.ReplaceAll(r.URL.Path, "//", "/")
		mux.ServeHTTP(w, r)
	})
}
