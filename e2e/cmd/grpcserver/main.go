// Command grpcserver is the lab's gRPC backend (lab.portico.dev/grpcserver):
// the interop test service of package grpcecho on GRPC_PORT (default 50051)
// in the clear, and on TLS_PORT (default 50052) over TLS when TLS_CERT and
// TLS_KEY hold a PEM certificate and key.
package main

import (
	"cmp"
	"crypto/tls"
	"log/slog"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop/grpc_testing"

	"github.com/portico-lb/portico/e2e/grpcecho"
)

func main() {
	svc := &grpcecho.Server{Pod: os.Getenv("POD_NAME")}
	serve := func(port string, opts ...grpc.ServerOption) {
		ln, err := net.Listen("tcp", net.JoinHostPort("", port))
		if err != nil {
			slog.Error("grpcserver cannot listen", "port", port, "err", err)
			os.Exit(1)
		}
		s := grpc.NewServer(opts...)
		grpc_testing.RegisterTestServiceServer(s, svc)
		slog.Info("grpcserver listening", "addr", ln.Addr().String(), "tls", len(opts) > 0)
		if err := s.Serve(ln); err != nil {
			slog.Error("grpcserver stopped", "err", err)
			os.Exit(1)
		}
	}
	if crt, key := os.Getenv("TLS_CERT"), os.Getenv("TLS_KEY"); crt != "" {
		cert, err := tls.X509KeyPair([]byte(crt), []byte(key))
		if err != nil {
			slog.Error("grpcserver: TLS_CERT and TLS_KEY", "err", err)
			os.Exit(1)
		}
		go serve(cmp.Or(os.Getenv("TLS_PORT"), "50052"), grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	}
	serve(cmp.Or(os.Getenv("GRPC_PORT"), "50051"))
}
