// Command authserver is the lab's external authentication service
// (lab.portico.dev/authserver), as oauth2-proxy is to ingress-nginx's
// auth-url: on HTTP_PORT (default 3000), every request whose
// Authorization is "Bearer <TOKEN>" gets 200 with X-Auth-User: <USER>;
// any other gets 401. /health answers OK. It logs the X-Original-URL and
// X-Original-Method of each request.
package main

import (
	"cmp"
	"log/slog"
	"net"
	"net/http"
	"os"
)

func main() {
	token, user := os.Getenv("TOKEN"), cmp.Or(os.Getenv("USER_NAME"), "alice")
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ok := token != "" && r.Header.Get("Authorization") == "Bearer "+token
		slog.Info("auth", "ok", ok, "url", r.Header.Get("X-Original-URL"), "method", r.Header.Get("X-Original-Method"))
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Auth-User", user)
		w.WriteHeader(http.StatusOK)
	})
	addr := net.JoinHostPort("", cmp.Or(os.Getenv("HTTP_PORT"), "3000"))
	slog.Info("authserver listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		slog.Error("authserver stopped", "err", err)
		os.Exit(1)
	}
}
