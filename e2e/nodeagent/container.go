package nodeagent

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type eventKind int

const (
	evExited eventKind = iota
	evReady
	evNotReady
	evUnhealthy // liveness or startup probe failed
	evRestart   // back-off elapsed
)

type event struct {
	c    *ctr
	gen  int
	kind eventKind
	code int32
	msg  string
}

// ctr is one container: its process, probes and what the status reports.
type ctr struct {
	spec     *corev1.Container
	init     bool
	prog     Program
	pid      int
	gen      int // bumps at every start; events of older runs are ignored
	running  bool
	ready    bool
	startAt  metav1.Time
	restarts int32
	backoff  time.Duration
	pending  bool // waiting for a back-off restart
	waitWhy  string
	waitMsg  string
	term     *corev1.ContainerStateTerminated // final state, no restart coming
	last     *corev1.ContainerStateTerminated
	stop     context.CancelFunc // stops the probes of the current run
}

// all is every container of the Pod, init containers first.
func (w *worker) all() []*ctr {
	return append(append([]*ctr{}, w.inits...), w.ctrs...)
}

// start runs a container's process and, for a regular container, its
// probes. A process that cannot start counts as an exit with code 128.
func (w *worker) start(ctx context.Context, c *ctr) {
	c.gen++
	c.pending, c.waitWhy, c.waitMsg = false, "", ""
	if err := w.startProcess(ctx, c); err != nil {
		w.log.Error("start container", "container", c.spec.Name, "err", err)
		c.waitWhy, c.waitMsg = "CreateContainerError", err.Error()
		// Treat as an immediate failure so restartPolicy and back-off apply.
		go w.emit(event{c: c, gen: c.gen, kind: evExited, code: 128, msg: err.Error()})
		return
	}
	c.running, c.startAt = true, metav1.Now()
	pctx, cancel := context.WithCancel(ctx)
	c.stop = cancel
	c.ready = false
	if !c.init {
		go w.probeLoop(pctx, c, c.gen, c.pid)
	}
	w.log.Info("container started", "container", c.spec.Name, "pid", c.pid, "argv", c.prog.Argv)
	w.a.events.Eventf(w.pod, corev1.EventTypeNormal, "Started", "Started container %s (%s)", c.spec.Name, c.prog.Argv[0])
}

// handle applies one event of a container's current run: readiness,
// a probe's verdict that kills it, an exit (restart with back-off or not,
// by restartPolicy), or a back-off that elapsed.
func (w *worker) handle(ctx context.Context, ev event) {
	c := ev.c
	if ev.gen != c.gen {
		return
	}
	switch ev.kind {
	case evReady:
		c.ready = c.running
	case evNotReady:
		c.ready = false
	case evUnhealthy:
		if c.running && !w.stopping {
			w.log.Info("container unhealthy, killing it", "container", c.spec.Name, "why", ev.msg)
			w.a.events.Eventf(w.pod, corev1.EventTypeWarning, "Unhealthy", "Container %s: %s; restarting it", c.spec.Name, ev.msg)
			w.signal(c, syscall.SIGTERM)
			grace := w.grace()
			pid := c.pid
			go func() {
				time.Sleep(grace)
				if pid > 0 {
					_ = syscall.Kill(-pid, syscall.SIGKILL)
				}
			}()
		}
	case evRestart:
		if c.pending && !w.stopping {
			c.restarts++
			w.start(ctx, c)
		}
	case evExited:
		ran := time.Since(c.startAt.Time)
		c.running, c.ready = false, false
		if c.stop != nil {
			c.stop()
		}
		_ = os.Remove(w.a.pidFile(w.pod.UID, c.spec.Name))
		reason := "Completed"
		if ev.code != 0 {
			reason = "Error"
		}
		t := &corev1.ContainerStateTerminated{ExitCode: ev.code, Reason: reason, Message: ev.msg,
			StartedAt: c.startAt, FinishedAt: metav1.Now(), ContainerID: fmt.Sprintf("lab://%d", c.pid)}
		w.log.Info("container exited", "container", c.spec.Name, "code", ev.code)
		policy := w.pod.Spec.RestartPolicy
		restart := !w.stopping && !c.init && (policy == corev1.RestartPolicyAlways || policy == "" ||
			(policy == corev1.RestartPolicyOnFailure && ev.code != 0))
		if c.init && ev.code != 0 && policy != corev1.RestartPolicyNever {
			c.backoff = nextBackoff(c.backoff, ran)
		}
		if !restart {
			c.term = t
			return
		}
		c.last = t
		delay := c.backoff
		c.backoff = nextBackoff(c.backoff, ran)
		c.pending = true
		if delay > 0 {
			c.waitWhy = "CrashLoopBackOff"
			c.waitMsg = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", delay, c.spec.Name, w.pod.Name)
			w.a.events.Event(w.pod, corev1.EventTypeWarning, "BackOff", c.waitMsg)
		}
		gen := c.gen
		time.AfterFunc(delay, func() { w.emit(event{c: c, gen: gen, kind: evRestart}) })
	}
}

// nextBackoff doubles from 1 s to 30 s (the kubelet uses 10 s to 5 min; the
// lab keeps tests fast), and resets after a run of a minute or more.
func nextBackoff(prev, ran time.Duration) time.Duration {
	if ran > time.Minute {
		return 0
	}
	return min(max(2*prev, time.Second), 30*time.Second)
}

// signal sends sig to the process group of a running container.
func (w *worker) signal(c *ctr, sig syscall.Signal) {
	if c.running && c.pid > 0 {
		_ = syscall.Kill(-c.pid, sig)
	}
}
