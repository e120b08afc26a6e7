package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probe runs one check of p against a container reachable at host whose
// process is pid.
func probe(ctx context.Context, p *corev1.Probe, host string, pid int, c *corev1.Container) error {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := resolvePort(g.Port, c)
		if err != nil {
			return err
		}
		h := host
		if g.Host != "" {
			h = g.Host
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(h, strconv.Itoa(port)), path), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/1.36")
		for _, hd := range g.HTTPHeaders {
			if strings.EqualFold(hd.Name, "Host") {
				req.Host = hd.Value
			} else {
				req.Header.Add(hd.Name, hd.Value)
			}
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		h := host
		if p.TCPSocket.Host != "" {
			h = p.TCPSocket.Host
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.Exec != nil:
		cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--target", strconv.Itoa(pid),
			"--mount", "--net", "--uts", "--wd=/", "--"}, p.Exec.Command...)...)
		cmd.Env = processEnv(pid)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("exec probe %v: %w: %s", p.Exec.Command, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return fmt.Errorf("gRPC probes do not run in the lab")
}

func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("container %q has no port named %q", c.Name, p.StrVal)
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
