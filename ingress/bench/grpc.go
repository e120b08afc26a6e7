package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

// The gRPC run: unary calls over TLS and h2 to a gRPC backend in the
// clear (grpc-go's interop service, in a child process of its own so that
// its CPU is nobody's), through Portico (backend-protocol GRPC) and through
// nginx's grpc_pass, loaded by h2load with the same request.

const (
	grpcHost = "grpc.example"
	// grpcMethod is the call made, and grpcRequestSize and
	// grpcResponseSize the payloads of its messages.
	grpcMethod       = "/grpc.testing.TestService/UnaryCall"
	grpcRequestSize  = 256
	grpcResponseSize = 256
	grpcBackendEnv   = "PORTICO_BENCH_GRPC_BACKEND"
)

func isGRPCBackend() bool { return os.Getenv(grpcBackendEnv) != "" }

// runGRPCBackend serves the interop service on the address in its
// variable until stdin closes.
func runGRPCBackend() error {
	ln, err := net.Listen("tcp", os.Getenv(grpcBackendEnv))
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(srv, unaryService{})
	go func() { _ = srv.Serve(ln) }()
	_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	srv.Stop()
	return nil
}

type unaryService struct {
	grpc_testing.UnimplementedTestServiceServer
}

func (unaryService) UnaryCall(_ context.Context, in *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	return &grpc_testing.SimpleResponse{Payload: &grpc_testing.Payload{Body: make([]byte, in.ResponseSize)}}, nil
}

// startGRPCBackend starts the gRPC backend as a child process.
func (r *rig) startGRPCBackend() error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), grpcBackendEnv+"="+addr)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe() // closed with the bench: the child ends
	if err != nil {
		return err
	}
	r.held = append(r.held, stdin)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the gRPC backend: %w", err)
	}
	r.procs = append(r.procs, cmd)
	r.grpcBackend = addr
	return waitListen(addr)
}

// grpcServer is nginx's grpc_pass to the gRPC backend, over TLS and h2,
// as ingress-nginx configures backend-protocol GRPC.
func grpcServer(listen, backend, certFile, keyFile string) string {
	return fmt.Sprintf(`
    upstream grpc_backend {
        server %[2]s;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen %[1]s ssl http2 reuseport backlog=4096;
        ssl_certificate %[3]s;
        ssl_certificate_key %[4]s;
        ssl_protocols TLSv1.3;
        keepalive_requests 1000000;
        location / {
            grpc_pass grpc://grpc_backend;
            grpc_set_header X-Forwarded-For $remote_addr;
            grpc_set_header X-Forwarded-Proto $scheme;
            grpc_set_header X-Real-IP $remote_addr;
            grpc_set_header X-Request-ID $request_id;
        }
    }`, listen, backend, certFile, keyFile)
}

// grpcFrame is the request's body: one length-prefixed message.
func grpcFrame() ([]byte, error) {
	m, err := proto.Marshal(&grpc_testing.SimpleRequest{ResponseSize: grpcResponseSize, Payload: &grpc_testing.Payload{Body: make([]byte, grpcRequestSize)}})
	if err != nil {
		return nil, err
	}
	f := make([]byte, 5, 5+len(m))
	binary.BigEndian.PutUint32(f[1:], uint32(len(m)))
	return append(f, m...), nil
}

// h2loadGRPC loads addr with the unary call. h2load counts HTTP statuses,
// not gRPC's: checkGRPC makes a real call first, through each proxy.
func h2loadGRPC(addr string, l load, dir string) (result, error) {
	frame, err := grpcFrame()
	if err != nil {
		return result{}, err
	}
	body := filepath.Join(dir, "grpc-request.bin")
	if err := os.WriteFile(body, frame, 0o644); err != nil {
		return result{}, err
	}
	if err := checkGRPC(addr); err != nil {
		return result{}, err
	}
	return h2loadRun(addr, l, dir, "https://"+grpcHost+grpcMethod,
		"-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers")
}

// checkGRPC makes one call through the proxy at addr with grpc-go's client,
// and checks its answer and status.
func checkGRPC(addr string) error {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{ServerName: grpcHost, InsecureSkipVerify: true})),
		grpc.WithAuthority(grpcHost))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := grpc_testing.NewTestServiceClient(cc).UnaryCall(ctx, &grpc_testing.SimpleRequest{ResponseSize: grpcResponseSize})
	if err != nil {
		return fmt.Errorf("a gRPC call through %s: %w", addr, err)
	}
	if n := len(res.GetPayload().GetBody()); n != grpcResponseSize {
		return fmt.Errorf("a gRPC call through %s: %d bytes of payload, want %d", addr, n, grpcResponseSize)
	}
	return nil
}
