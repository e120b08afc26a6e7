// Command echoserver is the lab's stand-in for the ingressconformance/echoserver
// image: it echoes each request as JSON on HTTP_PORT (default 3000).
package main

import (
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/portico-lb/portico/e2e/echoserver"
)

func main() {
	port := os.Getenv("HTTP_PORT")
	if port == "" {
		port = os.Getenv("PORT") // older images of the suite read PORT
	}
	if port == "" {
		port = "3000"
	}
	addr := net.JoinHostPort("", port)
	slog.Info("echoserver listening", "addr", addr)
	if err := http.ListenAndServe(addr, echoserver.Handler(echoserver.ContextFromEnv())); err != nil {
		slog.Error("echoserver stopped", "err", err)
		os.Exit(1)
	}
}
