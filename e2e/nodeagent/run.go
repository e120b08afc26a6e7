package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func (a *Agent) pidFile(uid types.UID, container string) string {
	return filepath.Join(a.cfg.StateDir, "pids", string(uid), container+".pid")
}

var mountpointsMu sync.Mutex

// recordMountpoints notes paths created on the host for bind mounts, so
// `lab down` can remove them (they may be shared by pods of every node, so
// nothing removes them while the lab runs).
func (a *Agent) recordMountpoints(paths []string) {
	if len(paths) == 0 {
		return
	}
	mountpointsMu.Lock()
	defer mountpointsMu.Unlock()
	f, err := os.OpenFile(filepath.Join(a.cfg.StateDir, "mountpoints.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		a.log.Warn("record mount points", "err", err)
		return
	}
	defer f.Close()
	for _, p := range paths {
		fmt.Fprintln(f, p)
	}
}

// probeLoop runs the container's startup probe, then its readiness and
// liveness probes, and reports transitions as events.
func (w *worker) probeLoop(ctx context.Context, c *ctr, gen, pid int) {
	host := w.podIPs[0]
	spec := c.spec
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	period := func(p *corev1.Probe) time.Duration { return time.Duration(max(p.PeriodSeconds, 1)) * time.Second }
	threshold := func(n int32) int32 { return max(n, 1) }

	if p := spec.StartupProbe; p != nil {
		if !sleep(time.Duration(p.InitialDelaySeconds) * time.Second) {
			return
		}
		for fails := int32(0); ; {
			err := probe(ctx, p, host, pid, spec)
			if err == nil {
				break
			}
			if fails++; fails >= threshold(p.FailureThreshold) {
				w.emit(event{c: c, gen: gen, kind: evUnhealthy, msg: "startup probe: " + err.Error()})
				return
			}
			if !sleep(period(p)) {
				return
			}
		}
	}
	if p := spec.LivenessProbe; p != nil {
		go func() {
			if !sleep(time.Duration(p.InitialDelaySeconds) * time.Second) {
				return
			}
			for fails := int32(0); ; {
				if err := probe(ctx, p, host, pid, spec); err != nil {
					if fails++; fails >= threshold(p.FailureThreshold) {
						w.emit(event{c: c, gen: gen, kind: evUnhealthy, msg: "liveness probe: " + err.Error()})
						return
					}
				} else {
					fails = 0
				}
				if !sleep(period(p)) {
					return
				}
			}
		}()
	}
	p := spec.ReadinessProbe
	if p == nil {
		w.emit(event{c: c, gen: gen, kind: evReady})
		return
	}
	if !sleep(time.Duration(p.InitialDelaySeconds) * time.Second) {
		return
	}
	ready := false
	var fails, oks int32
	for {
		err := probe(ctx, p, host, pid, spec)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			fails, oks = 0, oks+1
			if !ready && oks >= threshold(p.SuccessThreshold) {
				ready = true
				w.emit(event{c: c, gen: gen, kind: evReady})
			}
		} else {
			oks, fails = 0, fails+1
			if ready && fails >= threshold(p.FailureThreshold) {
				ready = false
				w.emit(event{c: c, gen: gen, kind: evNotReady})
			}
		}
		if !sleep(period(p)) {
			return
		}
	}
}

// nginx writes a configuration that behaves as the official image's: a
// server on port 80 (both families) for /usr/share/nginx/html, defined in
// /etc/nginx/conf.d/default.conf so a ConfigMap mounted over conf.d
// replaces it, as tutorials expect. Logs go to the container's log.
func (w *worker) nginx(c *ctr, user []Mount) ([]string, []Mount, error) {
	dir := filepath.Join(w.dir, "nginx-"+c.spec.Name)
	confd := filepath.Join(dir, "conf.d")
	for _, d := range []string{confd, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, err
		}
	}
	main := fmt.Sprintf(`user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include /etc/nginx/conf.d/*.conf;
}
`, dir)
	def := `server {
    listen 80;
    listen [::]:80;
    server_name localhost;
    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }
    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        root /usr/share/nginx/html;
    }
}
`
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(confd, "default.conf"), []byte(def), 0o644); err != nil {
		return nil, nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	var extra []Mount
	confdMounted := false
	for _, m := range user {
		switch m.Target {
		case "/etc/nginx/nginx.conf":
			conf = m.Target
		case "/etc/nginx/conf.d":
			confdMounted = true
		}
	}
	if !confdMounted {
		extra = append(extra, Mount{Source: confd, Target: "/etc/nginx/conf.d", ReadOnly: true})
	}
	return []string{"/usr/sbin/nginx", "-c", conf, "-g", "daemon off;"}, extra, nil
}
