// Package grpcecho is the lab's gRPC backend and client: grpc-go's interop
// test service (unary, server, client and bidirectional streaming), whose
// answers say which pod served them, and a client that checks every kind
// of call through a proxy as a gRPC user's program would.
package grpcecho

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Server is the service. Every answer carries the pod's name in the
// "x-pod" header, and UnaryCall echoes the caller's "x-call" in the
// "x-trailer" trailer.
type Server struct {
	grpc_testing.UnimplementedTestServiceServer
	Pod string
}

// EmptyCall waits for the caller's deadline or cancellation.
func (s *Server) EmptyCall(ctx context.Context, _ *grpc_testing.Empty) (*grpc_testing.Empty, error) {
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-pod", s.Pod))
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (s *Server) UnaryCall(ctx context.Context, in *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-pod", s.Pod))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", fmt.Sprint(md.Get("x-call"))))
	if st := in.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	return &grpc_testing.SimpleResponse{Payload: &grpc_testing.Payload{Body: make([]byte, in.ResponseSize)}}, nil
}

func (s *Server) StreamingOutputCall(in *grpc_testing.StreamingOutputCallRequest, st grpc.ServerStreamingServer[grpc_testing.StreamingOutputCallResponse]) error {
	for _, p := range in.ResponseParameters {
		if err := st.Send(&grpc_testing.StreamingOutputCallResponse{Payload: &grpc_testing.Payload{Body: make([]byte, p.Size)}}); err != nil {
			return err
		}
		time.Sleep(time.Duration(p.IntervalUs) * time.Microsecond)
	}
	return nil
}

func (s *Server) StreamingInputCall(st grpc.ClientStreamingServer[grpc_testing.StreamingInputCallRequest, grpc_testing.StreamingInputCallResponse]) error {
	var n int32
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&grpc_testing.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(m.GetPayload().GetBody()))
	}
}

// FullDuplexCall answers every message as it comes.
func (s *Server) FullDuplexCall(st grpc.BidiStreamingServer[grpc_testing.StreamingOutputCallRequest, grpc_testing.StreamingOutputCallResponse]) error {
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := st.Send(&grpc_testing.StreamingOutputCallResponse{Payload: m.Payload}); err != nil {
			return err
		}
	}
}

// Check makes every kind of call to addr over TLS (not verified), with
// authority as :authority and TLS server name, and reports the first
// that went wrong, and the pod that answered.
func Check(ctx context.Context, addr, authority string) (pod string, err error) {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{ServerName: authority, InsecureSkipVerify: true})),
		grpc.WithAuthority(authority))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	c := grpc_testing.NewTestServiceClient(cc)

	var head, trail metadata.MD
	res, err := c.UnaryCall(metadata.AppendToOutgoingContext(ctx, "x-call", "e2e"), &grpc_testing.SimpleRequest{ResponseSize: 300 << 10},
		grpc.Header(&head), grpc.Trailer(&trail))
	if err != nil {
		return "", fmt.Errorf("unary: %w", err)
	}
	if len(res.GetPayload().GetBody()) != 300<<10 || fmt.Sprint(trail.Get("x-trailer")) != "[[e2e]]" || len(head.Get("x-pod")) != 1 {
		return "", fmt.Errorf("unary: %d bytes, header %v, trailer %v", len(res.GetPayload().GetBody()), head, trail)
	}
	pod = head.Get("x-pod")[0]

	_, err = c.UnaryCall(ctx, &grpc_testing.SimpleRequest{ResponseStatus: &grpc_testing.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "from the backend"}})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "from the backend" {
		return pod, fmt.Errorf("status: got %v, want FailedPrecondition from the backend", err)
	}

	out, err := c.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{ResponseParameters: []*grpc_testing.ResponseParameters{
		{Size: 10, IntervalUs: 200000}, {Size: 100000, IntervalUs: 200000}, {Size: 1}}})
	if err != nil {
		return pod, fmt.Errorf("server streaming: %w", err)
	}
	var sizes []int
	for {
		m, err := out.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return pod, fmt.Errorf("server streaming: %w", err)
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
	if fmt.Sprint(sizes) != "[10 100000 1]" {
		return pod, fmt.Errorf("server streaming: messages of %v bytes", sizes)
	}

	in, err := c.StreamingInputCall(ctx)
	if err != nil {
		return pod, fmt.Errorf("client streaming: %w", err)
	}
	for _, n := range []int{1, 200000, 2} {
		if err := in.Send(&grpc_testing.StreamingInputCallRequest{Payload: &grpc_testing.Payload{Body: make([]byte, n)}}); err != nil {
			return pod, fmt.Errorf("client streaming: %w", err)
		}
	}
	if r, err := in.CloseAndRecv(); err != nil || r.AggregatedPayloadSize != 200003 {
		return pod, fmt.Errorf("client streaming: %v %v", r, err)
	}

	bidi, err := c.FullDuplexCall(ctx)
	if err != nil {
		return pod, fmt.Errorf("bidirectional: %w", err)
	}
	for i := range 10 {
		body := []byte(fmt.Sprint("ping ", i))
		if err := bidi.Send(&grpc_testing.StreamingOutputCallRequest{Payload: &grpc_testing.Payload{Body: body}}); err != nil {
			return pod, fmt.Errorf("bidirectional: %w", err)
		}
		m, err := bidi.Recv() // the answer comes before the next message goes
		if err != nil || string(m.GetPayload().GetBody()) != string(body) {
			return pod, fmt.Errorf("bidirectional: %v %v", m, err)
		}
	}
	if err := bidi.CloseSend(); err != nil {
		return pod, err
	}
	if _, err := bidi.Recv(); err != io.EOF {
		return pod, fmt.Errorf("bidirectional: after CloseSend %v", err)
	}

	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.EmptyCall(dctx, &grpc_testing.Empty{})
	took := time.Since(start)
	// The server has the same deadline (grpc-timeout): its reset may reach
	// the proxy before the client's own deadline fires (Unavailable, 502).
	// Either way the call ends at its deadline.
	if code := status.Code(err); code != codes.DeadlineExceeded && (code != codes.Unavailable || took < 400*time.Millisecond) {
		return pod, fmt.Errorf("deadline: got %v after %v, want DeadlineExceeded at the deadline", err, took)
	}
	if took > 5*time.Second {
		return pod, errors.New("deadline: the call outlived its deadline by seconds")
	}
	return pod, nil
}
