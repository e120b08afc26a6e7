package grpcecho

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop/grpc_testing"

	"github.com/portico-lb/portico/ingress/proxy"
)

// The lab's client passes against the lab's server, spoken to directly.
func TestCheck(t *testing.T) {
	cert, err := proxy.SelfSigned("grpcecho", "grpc.example")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(cert)))
	grpc_testing.RegisterTestServiceServer(s, &Server{Pod: "pod-1"})
	go func() { _ = s.Serve(ln) }()
	defer s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pod, err := Check(ctx, ln.Addr().String(), "grpc.example")
	if err != nil || pod != "pod-1" {
		t.Fatalf("Check: pod %q, %v", pod, err)
	}
}
