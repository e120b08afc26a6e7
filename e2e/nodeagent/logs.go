package nodeagent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// KubeletPort is where the agent serves the part of the kubelet API the
// API server proxies for `kubectl logs`.
const KubeletPort = 10250

func (a *Agent) logFile(ns, pod, container string) string {
	return filepath.Join(a.cfg.LogDir, fmt.Sprintf("%s_%s_%s.log", ns, pod, container))
}

// serveLogs serves the kubelet API the lab has: GET
// /containerLogs/<ns>/<pod>/<container> (tailLines, follow) and
// /exec/<ns>/<pod>/<container> (no TTY), over TLS, to clients with a
// certificate of the lab's CA: the API server.
func (a *Agent) serveLogs(ctx context.Context) error {
	if a.cfg.TLSCert == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(a.cfg.ClientCA)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		a.containerLogs(w, r, r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container"))
	})
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", a.execInContainer)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(KubeletPort)))
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("kubelet API", "err", err)
		}
	}()
	return nil
}

func (a *Agent) containerLogs(w http.ResponseWriter, r *http.Request, ns, pod, container string) {
	f, err := os.Open(a.logFile(ns, pod, container))
	if err != nil {
		http.Error(w, fmt.Sprintf("no logs for container %q of pod %s/%s", container, ns, pod), http.StatusNotFound)
		return
	}
	defer f.Close()
	q := r.URL.Query()
	w.Header().Set("Content-Type", "text/plain")
	if n, err := strconv.Atoi(q.Get("tailLines")); err == nil && n >= 0 {
		b, _ := io.ReadAll(f)
		_, _ = w.Write(lastLines(b, n))
	} else if _, err := io.Copy(w, f); err != nil {
		return
	}
	if q.Get("follow") != "true" {
		return
	}
	fl, _ := w.(http.Flusher)
	rd := bufio.NewReader(f)
	for {
		if fl != nil {
			fl.Flush()
		}
		if _, err := io.Copy(w, rd); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lastLines is the last n lines of b, each ending in a newline.
func lastLines(b []byte, n int) []byte {
	if n <= 0 || len(b) == 0 {
		return nil
	}
	lines := bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return append(bytes.Join(lines, nil), '\n')
}
