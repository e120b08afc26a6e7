package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/portico-lb/portico/e2e/grpcecho"
	"github.com/portico-lb/portico/ingress/proxy/exchange"
	"github.com/portico-lb/portico/ingress/route"
)

// Endpoints spoken to by Go's client (transport.go): gRPC with and
// without TLS, HTTPS with the proxy-ssl-* settings, h2c. Real gRPC
// clients and servers (grpc-go) over real sockets.

// grpcBackend is the lab's gRPC service (grpc-go's interop service, its
// streams), with calls of its own that say what they saw.
type grpcBackend struct {
	grpcecho.Server
	mu        sync.Mutex
	deadline  time.Duration // the deadline EmptyCall saw, from its start
	ended     chan error    // EmptyCall's context's end, as it saw it
	authority string
}

func (b *grpcBackend) EmptyCall(ctx context.Context, _ *grpc_testing.Empty) (*grpc_testing.Empty, error) {
	if d, ok := ctx.Deadline(); ok {
		b.mu.Lock()
		b.deadline = time.Until(d)
		b.mu.Unlock()
	}
	<-ctx.Done() // waits for the client's deadline or cancellation
	b.ended <- ctx.Err()
	return nil, ctx.Err()
}

func (b *grpcBackend) UnaryCall(ctx context.Context, in *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	b.authority = strings.Join(md[":authority"], ",")
	b.mu.Unlock()
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-head", "h"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t:"+strings.Join(md["x-call"], ",")))
	if s := in.GetResponseStatus(); s != nil {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	return &grpc_testing.SimpleResponse{Payload: &grpc_testing.Payload{Body: make([]byte, in.ResponseSize)}}, nil
}

// startGRPC serves the test service, over TLS when cert is set.
func startGRPC(t *testing.T, cert *tls.Certificate) (*grpcBackend, string) {
	t.Helper()
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(cert)))
	}
	srv := grpc.NewServer(opts...)
	b := &grpcBackend{ended: make(chan error, 4)}
	grpc_testing.RegisterTestServiceServer(srv, b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return b, ln.Addr().String()
}

// protoIngress routes host to service, whose endpoints speak proto.
func protoIngress(name, host, service string, proto route.Protocol) route.Ingress {
	ing := ingress(name, host, prefix("/", service))
	ing.Protocol = proto
	return ing
}

func protoTarget(service string, proto route.Protocol) exchange.Target {
	t := target(service)
	t.Protocol = proto
	return t
}

// grpcClient dials the proxy's TLS listener as a gRPC client of host.
func grpcClient(t *testing.T, p *proxy, host string) grpc_testing.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(p.secure,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{ServerName: host, InsecureSkipVerify: true})),
		grpc.WithAuthority(host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return grpc_testing.NewTestServiceClient(cc)
}

func TestGRPCBackend(t *testing.T) {
	be, beAddr := startGRPC(t, nil)
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, protoIngress("grpc", "grpc.example", "grpc", route.GRPC)),
		Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("grpc", route.GRPC): exchange.NewUpstream(beAddr)},
	})
	c := grpcClient(t, p, "grpc.example")
	testGRPC(t, c)

	t.Run("authority", func(t *testing.T) {
		if _, err := c.UnaryCall(context.Background(), &grpc_testing.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		be.mu.Lock()
		defer be.mu.Unlock()
		if be.authority != "grpc.example" {
			t.Errorf("the backend saw :authority %q, want grpc.example", be.authority)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.EmptyCall(ctx, &grpc_testing.Empty{})
		// The backend has the same deadline (grpc-timeout): whether the
		// client's expires first (DeadlineExceeded) or the backend's reset
		// reaches the proxy first (a 502, Unavailable) is a race; either
		// way the call ends at its deadline, not before.
		if took := time.Since(start); status.Code(err) != codes.DeadlineExceeded && (status.Code(err) != codes.Unavailable || took < 600*time.Millisecond) {
			t.Errorf("EmptyCall past its deadline: %v after %v, want DeadlineExceeded at the deadline", err, took)
		}
		if err := waitEnd(t, be); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Errorf("the backend's call ended with %v", err)
		}
		be.mu.Lock()
		defer be.mu.Unlock()
		if be.deadline <= 0 || be.deadline > 700*time.Millisecond {
			t.Errorf("the backend saw a deadline %v away, want the client's (grpc-timeout passed through)", be.deadline)
		}
	})
	t.Run("cancellation", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := c.EmptyCall(ctx, &grpc_testing.Empty{})
			done <- err
		}()
		time.Sleep(200 * time.Millisecond) // the call reached the backend
		cancel()
		if err := <-done; status.Code(err) != codes.Canceled {
			t.Errorf("canceled EmptyCall: %v", err)
		}
		if err := waitEnd(t, be); !errors.Is(err, context.Canceled) {
			t.Errorf("the backend's call ended with %v, want Canceled (the reset passed through)", err)
		}
	})
}

// waitEnd waits for the backend's EmptyCall to end.
func waitEnd(t *testing.T, be *grpcBackend) error {
	t.Helper()
	select {
	case err := <-be.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's call never ended: the client's end did not reach it")
		return nil
	}
}

// testGRPC makes the calls of every kind through the proxy.
func testGRPC(t *testing.T, c grpc_testing.TestServiceClient) {
	t.Run("unary", func(t *testing.T) {
		var head, trail metadata.MD
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-call", "1")
		res, err := c.UnaryCall(ctx, &grpc_testing.SimpleRequest{ResponseSize: 100 << 10}, grpc.Header(&head), grpc.Trailer(&trail))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(res.GetPayload().GetBody()); n != 100<<10 {
			t.Errorf("payload of %d bytes, want %d", n, 100<<10)
		}
		if head.Get("x-head")[0] != "h" || len(trail.Get("x-trailer")) != 1 || trail.Get("x-trailer")[0] != "t:1" {
			t.Errorf("header %v, trailer %v: want x-head h and x-trailer t:1", head, trail)
		}
	})
	t.Run("status", func(t *testing.T) {
		_, err := c.UnaryCall(context.Background(), &grpc_testing.SimpleRequest{ResponseStatus: &grpc_testing.EchoStatus{Code: int32(codes.PermissionDenied), Message: "no, ünïcode"}})
		if s := status.Convert(err); s.Code() != codes.PermissionDenied || s.Message() != "no, ünïcode" {
			t.Errorf("got %v, want PermissionDenied \"no, ünïcode\" (grpc-status and grpc-message in the trailers)", err)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		s, err := c.StreamingOutputCall(context.Background(), &grpc_testing.StreamingOutputCallRequest{ResponseParameters: []*grpc_testing.ResponseParameters{{Size: 1}, {Size: 70000}, {Size: 3}}})
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for {
			m, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(m.GetPayload().GetBody()))
		}
		if fmt.Sprint(sizes) != "[1 70000 3]" {
			t.Errorf("got messages of %v bytes, want [1 70000 3]", sizes)
		}
	})
	t.Run("client streaming", func(t *testing.T) {
		s, err := c.StreamingInputCall(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{10, 200000, 5} {
			if err := s.Send(&grpc_testing.StreamingInputCallRequest{Payload: &grpc_testing.Payload{Body: make([]byte, n)}}); err != nil {
				t.Fatal(err)
			}
		}
		res, err := s.CloseAndRecv()
		if err != nil || res.AggregatedPayloadSize != 200015 {
			t.Errorf("got %v, %v: want 200015 bytes counted", res, err)
		}
	})
	t.Run("bidirectional", func(t *testing.T) {
		s, err := c.FullDuplexCall(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			body := []byte(fmt.Sprint("message ", i))
			if err := s.Send(&grpc_testing.StreamingOutputCallRequest{Payload: &grpc_testing.Payload{Body: body}}); err != nil {
				t.Fatal(err)
			}
			m, err := s.Recv() // the answer must come before the next message goes
			if err != nil {
				t.Fatal(err)
			}
			if string(m.GetPayload().GetBody()) != string(body) {
				t.Fatalf("got %q, want %q", m.GetPayload().GetBody(), body)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != io.EOF {
			t.Errorf("after CloseSend: %v, want the end of the stream", err)
		}
	})
}

func TestGRPCSBackend(t *testing.T) {
	beCert, err := SelfSigned("grpc backend", "grpc.ns.svc", "other.example")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _ := twoCerts(t)
	_, beAddr := startGRPC(t, beCert)
	p := start(t, Options{})
	for _, c := range []struct {
		name string
		tls  *exchange.BackendTLS
		ok   bool
	}{
		{"no verification, as nginx's default", nil, true},
		{"verified for the Service's name", &exchange.BackendTLS{Verify: true, Roots: certPool(beCert), Key: "1"}, true},
		{"verified for proxy-ssl-name", &exchange.BackendTLS{Verify: true, Roots: certPool(beCert), Name: "other.example", SNI: true, Key: "2"}, true},
		{"wrong authority", &exchange.BackendTLS{Verify: true, Roots: certPool(otherCA), Key: "3"}, false},
		{"wrong name", &exchange.BackendTLS{Verify: true, Roots: certPool(beCert), Name: "wrong.example", Key: "4"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ing := protoIngress("grpcs", "grpcs.example", "grpc", route.GRPCS)
			p.Store(&exchange.Config{
				Routes:    table(t, ing),
				Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("grpc", route.GRPCS): exchange.NewUpstream(beAddr)},
				Rules:     map[string]*exchange.Rules{"ns/grpcs": {BackendTLS: c.tls}},
			})
			cl := grpcClient(t, p, "grpcs.example")
			if c.ok {
				testGRPC(t, cl)
				return
			}
			_, err := cl.UnaryCall(context.Background(), &grpc_testing.SimpleRequest{})
			if status.Code(err) != codes.Unavailable { // 502, as gRPC reads it
				t.Errorf("an endpoint whose certificate fails verification: %v, want Unavailable", err)
			}
		})
	}
}

// httpsBackend is an HTTPS echo that asks for a client certificate and
// says which it got.
func httpsBackend(t *testing.T, cert *tls.Certificate) string {
	t.Helper()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			client := "none"
			if len(r.TLS.PeerCertificates) > 0 {
				client = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			w.Header().Set("X-Client-Cert", client)
			w.Header().Set("X-SNI", r.TLS.ServerName)
			w.Header().Set("Trailer", "X-Sum")
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %s %d", r.Proto, r.Host, r.RequestURI, len(body))
			w.Header().Set("X-Sum", "42")
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{*cert}, ClientAuth: tls.RequestClientCert},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestHTTPSBackend(t *testing.T) {
	beCert, err := SelfSigned("https backend", "web.ns.svc")
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := SelfSigned("portico client")
	if err != nil {
		t.Fatal(err)
	}
	beAddr := httpsBackend(t, beCert)
	p := start(t, Options{})
	up := map[exchange.Target]*exchange.Upstream{protoTarget("web", route.HTTPS): exchange.NewUpstream(beAddr)}
	store := func(b *exchange.BackendTLS) {
		p.Store(&exchange.Config{
			Routes:    table(t, protoIngress("web", "web.example", "web", route.HTTPS)),
			Upstreams: up,
			Rules:     map[string]*exchange.Rules{"ns/web": {BackendTLS: b}},
		})
	}
	h2 := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, p.secure)
		},
	}}
	get := func(t *testing.T, client *http.Client, url string, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Host = "web.example"
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	t.Run("defaults", func(t *testing.T) {
		store(nil)
		// Plain HTTP/1.1 (an event loop hands it over) and HTTP/2 by ALPN.
		res, body := get(t, http.DefaultClient, "http://"+p.plain+"/a?b=1", "hello")
		if res.StatusCode != 200 || body != "HTTP/1.1 web.example /a?b=1 5" {
			t.Errorf("over HTTP/1.1: %d %q", res.StatusCode, body)
		}
		if res.Trailer.Get("X-Sum") != "42" || res.Header.Get("X-Client-Cert") != "none" || res.Header.Get("X-SNI") != "" {
			t.Errorf("trailer %v, client cert %q, SNI %q: want the trailer, no certificate and no SNI by default",
				res.Trailer, res.Header.Get("X-Client-Cert"), res.Header.Get("X-SNI"))
		}
		res, body = get(t, h2, "https://web.example/h2", strings.Repeat("x", 100000))
		if res.StatusCode != 200 || res.ProtoMajor != 2 || body != "HTTP/1.1 web.example /h2 100000" {
			t.Errorf("over HTTP/2: %d %s %q", res.StatusCode, res.Proto, body)
		}
	})
	t.Run("verified, with a client certificate and SNI", func(t *testing.T) {
		store(&exchange.BackendTLS{Verify: true, Roots: certPool(beCert), SNI: true, Cert: clientCert, Key: "v"})
		res, body := get(t, h2, "https://web.example/", "")
		if res.StatusCode != 200 || res.Header.Get("X-Client-Cert") != "portico client" || res.Header.Get("X-SNI") != "web.ns.svc" {
			t.Errorf("%d %q: client cert %q, SNI %q", res.StatusCode, body, res.Header.Get("X-Client-Cert"), res.Header.Get("X-SNI"))
		}
	})
	t.Run("verification fails", func(t *testing.T) {
		other, _ := twoCerts(t)
		store(&exchange.BackendTLS{Verify: true, Roots: certPool(other), Key: "w"})
		if res, body := get(t, http.DefaultClient, "http://"+p.plain+"/", ""); res.StatusCode != 502 {
			t.Errorf("an endpoint whose certificate fails verification: %d %q, want 502", res.StatusCode, body)
		}
	})
	t.Run("WebSocket is refused, not sent in the clear", func(t *testing.T) {
		store(nil)
		res := raw(t, p.plain, "GET / HTTP/1.1\r\nHost: web.example\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
		if res.StatusCode != 501 {
			t.Errorf("WebSocket to an HTTPS endpoint: %d, want 501", res.StatusCode)
		}
	})
}

func TestH2CBackend(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-End")
		fmt.Fprintf(w, "%s %s", r.Proto, r.Host)
		w.(http.Flusher).Flush() // no Content-Length: the trailer can follow
		w.Header().Set("X-End", "yes")
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	p := start(t, Options{})
	p.Store(&exchange.Config{
		Routes:    table(t, protoIngress("h2c", "h2c.example", "h2c", route.H2C)),
		Upstreams: map[exchange.Target]*exchange.Upstream{protoTarget("h2c", route.H2C): exchange.NewUpstream(ln.Addr().String())},
	})
	req, _ := http.NewRequest("GET", "http://"+p.plain+"/", nil)
	req.Host = "h2c.example"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "HTTP/2.0 h2c.example" || res.Trailer.Get("X-End") != "yes" {
		t.Errorf("got %d %q, trailer %v: want the endpoint spoken to in HTTP/2, its trailer relayed", res.StatusCode, body, res.Trailer)
	}
}
