package nodeagent

import (
	"context"
	"math"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// terminate is graceful deletion: the preStop hooks, SIGTERM, the rest of
// the grace period, SIGKILL, then the Pod object goes for good.
func (w *worker) terminate(ctx context.Context) {
	g := w.grace()
	w.log.Info("deleting pod", "grace", g)
	w.a.events.Eventf(w.pod, corev1.EventTypeNormal, "Killing", "Stopping containers with a grace period of %s", g)
	start := time.Now()
	w.preStop(g)
	// As the kubelet does, SIGTERM gets at least 2 s after the hooks.
	w.stopAll(max(g-time.Since(start), 2*time.Second))
	w.teardown()
	w.push(ctx)
	w.finishDeletion(ctx)
}

// grace is the termination grace period: the deletion's, else the spec's,
// else the default 30 s.
func (w *worker) grace() time.Duration {
	if g := w.pod.DeletionGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	if g := w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// preStop runs the preStop hooks of the running containers, all at once,
// and waits for them, at most grace. Containers that exit meanwhile stay
// stopped.
func (w *worker) preStop(grace time.Duration) {
	w.stopping = true
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	host := ""
	if len(w.podIPs) > 0 {
		host = w.podIPs[0]
	}
	var wg sync.WaitGroup
	for _, c := range w.ctrs {
		if l := c.spec.Lifecycle; l == nil || l.PreStop == nil || !c.running {
			continue
		}
		wg.Add(1)
		go func(h *corev1.LifecycleHandler, spec *corev1.Container, pid int) {
			defer wg.Done()
			if err := runHook(ctx, h, host, pid, spec); err != nil {
				w.log.Warn("preStop hook failed", "container", spec.Name, "err", err)
				w.a.events.Eventf(w.pod, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook of container %s failed: %v", spec.Name, err)
			}
		}(c.spec.Lifecycle.PreStop, c.spec, c.pid)
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	for {
		select {
		case <-done:
			return
		case ev := <-w.events:
			w.handle(context.Background(), ev)
		}
	}
}

// runHook runs a lifecycle hook of a container reachable at host whose
// process is pid: sleep, or an exec, HTTP GET or TCP check as a probe runs.
func runHook(ctx context.Context, h *corev1.LifecycleHandler, host string, pid int, c *corev1.Container) error {
	if h.Sleep != nil {
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// The probe's own timeout is not the hook's: ctx bounds it.
	p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: h.Exec, HTTPGet: h.HTTPGet, TCPSocket: h.TCPSocket}, TimeoutSeconds: math.MaxInt32}
	return probe(ctx, p, host, pid, c)
}

// stopAll sends SIGTERM, waits up to grace for the processes to exit, then
// SIGKILLs the rest and waits for them.
func (w *worker) stopAll(grace time.Duration) {
	w.stopping = true
	running := func() int {
		n := 0
		for _, c := range w.all() {
			if c.running {
				n++
			}
		}
		return n
	}
	for _, c := range w.all() {
		c.pending = false
		w.signal(c, syscall.SIGTERM)
	}
	deadline := time.After(grace)
	killed := false
	for running() > 0 {
		select {
		case ev := <-w.events:
			w.handle(context.Background(), ev)
		case <-deadline:
			if !killed {
				for _, c := range w.all() {
					w.signal(c, syscall.SIGKILL)
				}
				killed = true
				deadline = time.After(5 * time.Second)
			} else {
				w.log.Error("processes survive SIGKILL")
				return
			}
		}
	}
}
