package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// rig is what every mode starts with: a scratch directory, the certificate
// both proxies serve (with PEM files for nginx), and the backend.
type rig struct {
	dir               string
	cert              *tls.Certificate
	certFile, keyFile string
	backend           string
	// grpcBackend is the gRPC backend's address, when one was started.
	grpcBackend string
	procs       []*exec.Cmd
	// held are the children's stdin pipes, open while they are to run.
	held []io.Closer
}

// newRig starts the backend nginx; it answers "/" with a small fixed body
// and reads "/upload" to the end before answering, as an upload handler
// would. maxConns sizes its connection limits.
func newRig(maxConns int) (*rig, error) {
	dir, err := os.MkdirTemp("", "portico-bench-")
	if err != nil {
		return nil, err
	}
	r := &rig{dir: dir}
	// nginx's workers run as nobody when the bench runs as root, and write
	// request bodies to temporary files under the directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		r.close()
		return nil, err
	}
	if err := r.writeCert(); err != nil {
		r.close()
		return nil, err
	}
	if r.backend, err = freeAddr(); err != nil {
		r.close()
		return nil, err
	}
	// nginx answers a `return` at once, reading the body as it goes; the
	// upload location proxies to the server itself instead, so that nginx
	// buffers the whole body before it answers (proxy_request_buffering).
	_, err = r.startNginx("backend", maxConns, fmt.Sprintf(`
    server {
        listen %[1]s reuseport backlog=4096;
        keepalive_requests 1000000;
        client_max_body_size 2m;
        location / { default_type text/plain; return 200 "hello from the backend\n"; }
        location = /upload { proxy_pass http://%[1]s/; }
    }`, r.backend))
	if err != nil {
		r.close()
		return nil, err
	}
	if err := waitListen(r.backend); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// close stops every process the rig started, newest first, and removes the
// scratch directory.
func (r *rig) close() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		stop(r.procs[i])
	}
	r.procs = nil
	_ = os.RemoveAll(r.dir)
}

func (r *rig) writeCert() error {
	c, err := newCert()
	if err != nil {
		return err
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return err
	}
	r.cert = c
	r.certFile, r.keyFile = filepath.Join(r.dir, "cert.pem"), filepath.Join(r.dir, "key.pem")
	if err := os.WriteFile(r.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(r.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
}

// Kinds of nginx listener.
const (
	plainHTTP = "plain"
	https     = "https"
	http2     = "h2"
	// annotated is plain HTTP/1.1 to a route that carries what a migrated
	// ingress-nginx Ingress often does: rewrite-target on a regex path, an
	// allowlist, CORS, and a canary taking 10%.
	annotated = "annotated"
	// grpcKind is gRPC unary calls over TLS and h2 to a gRPC backend.
	grpcKind = "grpc"
)

// annotatedPath is the annotated route's path, written as ingress-nginx's
// users write it, and annotatedHost its host at Portico.
const (
	annotatedPath = "/app(/|$)(.*)"
	annotatedHost = "annotated.example"
	corsOrigin    = "https://app.example"
)

// proxyHeaders is how both nginx fronts talk to the backend: upstream
// keep-alive, and the request head Portico sends (the X-Forwarded fields,
// X-Real-IP and X-Request-ID, as ingress-nginx sends them).
const proxyHeaders = `            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Request-ID $request_id;`

// annotatedServer is nginx configured as ingress-nginx configures those
// annotations: allow/deny, the CORS headers for an allowed origin, the
// rewrite, and split_clients sending 10% to the canary's upstream.
func annotatedServer(listen, backend string) string {
	return fmt.Sprintf(`
    upstream canary {
        server %[2]s;
        keepalive 128;
        keepalive_requests 1000000;
    }
    split_clients "${request_id}" $annotated_pool { 10%% canary; * backend; }
    map $http_origin $cors_origin { "~*^https://app\.example$" $http_origin; default ""; }
    map $cors_origin $cors_vary { "" ""; default "Origin"; }
    map $cors_origin $cors_credentials { "" ""; default "true"; }
    map $cors_origin $cors_methods { "" ""; default "GET, PUT, POST, DELETE, PATCH, OPTIONS"; }
    map $cors_origin $cors_headers { "" ""; default "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"; }
    server {
        listen %[1]s reuseport backlog=4096;
        keepalive_requests 1000000;
        location ~* "^%[3]s" {
            allow 127.0.0.0/8;
            deny all;
            add_header Access-Control-Allow-Origin $cors_origin always;
            add_header Vary $cors_vary always;
            add_header Access-Control-Allow-Credentials $cors_credentials always;
            add_header Access-Control-Allow-Methods $cors_methods always;
            add_header Access-Control-Allow-Headers $cors_headers always;
            rewrite "(?i)%[3]s" /$2 break;
            proxy_pass http://$annotated_pool;
%[4]s
        }
    }`, listen, backend, annotatedPath, proxyHeaders)
}

// startFront starts nginx as the proxy measured against Portico: one
// listener per kind given, each on a free port, proxying to the backend
// with upstream keep-alive and the X-Forwarded headers Portico sets. It
// returns the process and each kind's address.
func (r *rig) startFront(name string, maxConns int, kinds ...string) (*exec.Cmd, map[string]string, error) {
	addrs := map[string]string{}
	var listen strings.Builder
	var extra string
	for _, k := range kinds {
		a, err := freeAddr()
		if err != nil {
			return nil, nil, err
		}
		addrs[k] = a
		switch k {
		case annotated:
			extra += annotatedServer(a, r.backend)
			continue
		case grpcKind:
			if err := r.startGRPCBackend(); err != nil {
				return nil, nil, err
			}
			extra += grpcServer(a, r.grpcBackend, r.certFile, r.keyFile)
			continue
		}
		// Debian's nginx 1.22 takes http2 as a listen parameter.
		param := map[string]string{plainHTTP: "", https: " ssl", http2: " ssl http2"}[k]
		fmt.Fprintf(&listen, "        listen %s%s reuseport backlog=4096;\n", a, param)
	}
	// TLS 1.3 only, and the server's choice of cipher, AES-128-GCM first
	// as Go's: both proxies then run the same cipher whatever the client
	// prefers (OpenSSL's clients put AES-256 first).
	cmd, err := r.startNginx(name, maxConns, fmt.Sprintf(`
    upstream backend {
        server %s;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
%s        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_protocols TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        keepalive_requests 1000000;
        client_max_body_size 2m;
        location / {
            proxy_pass http://backend;
%s
        }
    }`, r.backend, listen.String(), r.certFile, r.keyFile, proxyHeaders)+extra)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range addrs {
		if err := waitListen(a); err != nil {
			return nil, nil, err
		}
	}
	return cmd, addrs, nil
}

// startNginx runs nginx in the foreground with the http block body given,
// its limits sized for maxConns client connections (each may take an
// upstream connection too).
func (r *rig) startNginx(name string, maxConns int, httpBody string) (*exec.Cmd, error) {
	prefix := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		return nil, err
	}
	workerConns := max(4096, 2*maxConns+1024)
	conf := fmt.Sprintf(`worker_processes auto;
worker_rlimit_nofile %[3]d;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections %[3]d; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, prefix, httpBody, workerConns)
	file := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	bin := toolPath("nginx")
	if bin == "" {
		return nil, fmt.Errorf("nginx is not installed")
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", file, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	// Should the bench die before it stops nginx (killed, or its output
	// piped into head), the master gets SIGTERM, which it passes on to its
	// workers; SIGKILL would leave them running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting nginx %s: %w", name, err)
	}
	r.procs = append(r.procs, cmd)
	return cmd, nil
}

// stopProc stops one process the rig started, before the rig closes.
func (r *rig) stopProc(cmd *exec.Cmd) {
	for i, c := range r.procs {
		if c == cmd {
			r.procs = append(r.procs[:i], r.procs[i+1:]...)
			break
		}
	}
	stop(cmd)
}

// command is exec.Command for a load generator or checker, which gets
// SIGTERM should the bench die before it ends.
func command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return cmd
}

func stop(cmd *exec.Cmd) {
	// nginx stops gracefully on SIGQUIT, at once on SIGTERM; the latter is
	// what a bench wants.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// freeAddr returns a loopback address nothing listens on now, so that runs
// on a shared machine do not collide on fixed ports.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitListen(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// raiseNofile makes sure this process may open n files, raising the hard
// limit too when it must (as root).
func raiseNofile(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= uint64(n) {
		return nil
	}
	lim.Cur = uint64(n)
	lim.Max = max(lim.Max, lim.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising the open-file limit to %d (run as root, or ulimit -Hn %d): %w", n, n, err)
	}
	return nil
}

// selfCPU is the CPU time this process (Portico's proxy, in-process) used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processTree returns pid and its children (nginx's master and workers),
// from /proc.
func processTree(pid int) []int {
	pids := []int{pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		self, err := strconv.Atoi(e.Name())
		if err != nil || self == pid {
			continue
		}
		if f := procStat(self); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			pids = append(pids, self)
		}
	}
	return pids
}

// procStat returns the fields of /proc/pid/stat after the command name,
// which is in parentheses and may hold spaces: state first, then ppid.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// processTreeCPU is the CPU time used by pid and its children.
func processTreeCPU(pid int) time.Duration {
	const tick = 100 // USER_HZ on Linux
	var total int64
	for _, p := range processTree(pid) {
		f := procStat(p)
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += ut + st
	}
	return time.Duration(total) * time.Second / tick
}

// rss is the resident memory of pid and its children, in bytes, from
// VmRSS in /proc/PID/status.
func rss(pid int) (int64, error) {
	var total int64
	for _, p := range processTree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			if p == pid {
				return 0, fmt.Errorf("process %d: %w", pid, err)
			}
			continue // a worker that just exited
		}
		kb, err := statusField(string(b), "VmRSS")
		if err != nil {
			return 0, fmt.Errorf("process %d: %w", p, err)
		}
		total += kb << 10
	}
	return total, nil
}

// statusField reads a "Name:  123 kB" line of /proc/PID/status, in kB.
func statusField(status, name string) (int64, error) {
	for line := range strings.Lines(status) {
		v, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc/PID/status", name)
}
