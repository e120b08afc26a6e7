package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

type podUpdate struct {
	pod  *corev1.Pod
	gone bool // deleted from the API
}

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

// worker owns one Pod: its network, volumes, processes and status. All its
// state is touched only by its own goroutine; process exits and probe
// results arrive as events.
type worker struct {
	a       *Agent
	log     *slog.Logger
	pod     *corev1.Pod // latest from the API, a private copy
	updates chan podUpdate
	events  chan event
	done    chan struct{}

	dir      string
	netns    string
	ipIdx    int
	podIPs   []string
	hostIPs  []string
	started  metav1.Time
	inits    []*ctr
	ctrs     []*ctr
	initDone bool
	failWhy  string
	failMsg  string
	pushed   *corev1.PodStatus
	vols     map[string]string
	stopping bool
}

func newWorker(a *Agent, p *corev1.Pod) *worker {
	return &worker{a: a, pod: p.DeepCopy(),
		log:     a.log.With("pod", p.Namespace+"/"+p.Name),
		updates: make(chan podUpdate, 1), events: make(chan event, 64), done: make(chan struct{}),
		dir: filepath.Join(a.cfg.StateDir, "pods", string(p.UID))}
}

// send replaces any update the worker has not read yet: only the latest
// version of a Pod matters.
func (w *worker) send(p *corev1.Pod, gone bool) {
	for {
		select {
		case w.updates <- podUpdate{p.DeepCopy(), gone}:
			return
		default:
			select {
			case <-w.updates:
			default:
			}
		}
	}
}

func (w *worker) emit(ev event) {
	select {
	case w.events <- ev:
	case <-w.done:
	}
}

func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	u := <-w.updates
	w.pod = u.pod
	if u.gone {
		return
	}
	if w.pod.Status.Phase == corev1.PodSucceeded || w.pod.Status.Phase == corev1.PodFailed {
		// Finished before this agent started: nothing runs; only deletion is left.
		w.waitForDeletion(ctx)
		return
	}
	if w.pod.DeletionTimestamp != nil {
		w.finishDeletion(ctx)
		return
	}
	w.hostIPs = []string{w.a.cfg.NodeIPs[0].String(), w.a.cfg.NodeIPs[1].String()}
	w.started = metav1.Now()
	w.awaitAuthorization(ctx)
	if !w.setUp(ctx) {
		return
	}
	w.push(ctx)
	if !w.runInits(ctx) {
		w.teardown()
		w.push(ctx)
		w.waitForDeletion(ctx)
		return
	}
	for _, c := range w.ctrs {
		w.start(ctx, c)
	}
	w.push(ctx)
	for {
		select {
		case <-ctx.Done():
			w.stopAll(2 * time.Second)
			w.teardown()
			return
		case u := <-w.updates:
			w.pod = u.pod
			w.fillIPs()
			if u.gone {
				w.stopAll(0)
				w.teardown()
				return
			}
			if w.pod.DeletionTimestamp != nil {
				w.terminate(ctx)
				return
			}
		case ev := <-w.events:
			w.handle(ctx, ev)
		}
		w.push(ctx)
		if w.finished() {
			w.teardown()
			w.push(ctx)
			w.waitForDeletion(ctx)
			return
		}
	}
}

// awaitAuthorization waits until the Node authorizer lets this node read
// the Pod. The watch can deliver a freshly bound Pod before the authorizer's
// graph links it to the node; until then every read of its Secrets,
// ConfigMaps and tokens, and every status write, is forbidden.
func (w *worker) awaitAuthorization(ctx context.Context) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		_, err := w.a.cs.CoreV1().Pods(w.pod.Namespace).Get(ctx, w.pod.Name, metav1.GetOptions{})
		if !apierrors.IsForbidden(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setUp resolves images and prepares the network and volumes. A Pod that
// may restart waits, Pending, and retries, as the kubelet does when it
// cannot pull an image or find a ConfigMap: failing it would make its
// controller replace it in a tight loop. A Pod that never restarts fails.
// False means the worker is done (the Pod failed, went away or the agent
// stops).
func (w *worker) setUp(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		err := w.resolve()
		why := "ImageNotMapped"
		if err == nil {
			why = "CreateContainerConfigError"
			if err = w.prepare(ctx); err == nil {
				return true
			}
			w.teardown()
			for _, c := range append(append([]*ctr{}, w.inits...), w.ctrs...) {
				c.waitWhy, c.waitMsg = why, err.Error()
			}
		}
		w.log.Error("pod cannot start", "reason", why, "err", err)
		w.a.events.Event(w.pod, corev1.EventTypeWarning, why, err.Error())
		if w.pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			w.failWhy, w.failMsg = why, err.Error()
			w.push(ctx)
			w.waitForDeletion(ctx)
			return false
		}
		w.push(ctx)
		select {
		case <-ctx.Done():
			return false
		case u := <-w.updates:
			w.pod = u.pod
			if u.gone {
				return false
			}
			if w.pod.DeletionTimestamp != nil {
				w.finishDeletion(ctx)
				return false
			}
		case <-time.After(min(time.Duration(1<<attempt)*time.Second, 10*time.Second)):
		}
	}
}

// resolve maps every container's image to a program. Containers whose
// image has no local binary wait with reason ImageNotMapped.
func (w *worker) resolve() error {
	w.inits, w.ctrs = nil, nil
	var first error
	mk := func(c *corev1.Container, init bool) *ctr {
		p, err := Resolve(c.Image, c.Command, c.Args, w.a.cfg.BinDir)
		if err == nil {
			if _, serr := os.Stat(p.Argv[0]); serr != nil {
				err = &ImageError{c.Image, fmt.Sprintf("its binary %s is missing: build it with go build -o bin/ ./cmd/... ./e2e/cmd/...", p.Argv[0])}
			}
		}
		cc := &ctr{spec: c, init: init, prog: p}
		if err != nil {
			cc.waitWhy, cc.waitMsg = "ImageNotMapped", err.Error()
			if first == nil {
				first = err
			}
		}
		// Restart counts survive an agent restart.
		for _, s := range w.pod.Status.ContainerStatuses {
			if s.Name == c.Name {
				cc.restarts = s.RestartCount
			}
		}
		return cc
	}
	for i := range w.pod.Spec.InitContainers {
		w.inits = append(w.inits, mk(&w.pod.Spec.InitContainers[i], true))
	}
	for i := range w.pod.Spec.Containers {
		w.ctrs = append(w.ctrs, mk(&w.pod.Spec.Containers[i], false))
	}
	return first
}

// prepare sets up the network and volumes.
func (w *worker) prepare(ctx context.Context) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	w.podIPs = nil
	if w.pod.Spec.HostNetwork {
		w.podIPs = w.hostIPs
	} else {
		i, err := w.a.allocIP()
		if err != nil {
			return err
		}
		w.ipIdx = i
		uid := strings.ReplaceAll(string(w.pod.UID), "-", "")[:10]
		w.netns = w.a.cfg.NetnsPrefix + w.a.cfg.NodeName + "-" + uid
		ips, err := w.a.podNetwork(ctx, w.netns, "vp"+uid, i)
		if err != nil {
			w.a.releaseIP(i)
			w.ipIdx, w.netns = 0, ""
			return err
		}
		for _, ip := range ips {
			w.podIPs = append(w.podIPs, ip.String())
		}
	}
	w.fillIPs()
	vols, err := w.volumes(ctx, filepath.Join(w.dir, "volumes"))
	if err != nil {
		return err
	}
	w.vols = vols
	return nil
}

// fillIPs makes the downward API see the addresses this worker assigned,
// even before the status carrying them has round-tripped through the API.
func (w *worker) fillIPs() {
	if len(w.podIPs) == 0 {
		return
	}
	w.pod.Status.PodIP, w.pod.Status.HostIP = w.podIPs[0], w.hostIPs[0]
	w.pod.Status.PodIPs, w.pod.Status.HostIPs = nil, nil
	for _, ip := range w.podIPs {
		w.pod.Status.PodIPs = append(w.pod.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	for _, ip := range w.hostIPs {
		w.pod.Status.HostIPs = append(w.pod.Status.HostIPs, corev1.HostIP{IP: ip})
	}
}

// runInits runs init containers one after another; false means the Pod failed.
func (w *worker) runInits(ctx context.Context) bool {
	for _, c := range w.inits {
		for {
			w.start(ctx, c)
			w.push(ctx)
		wait:
			for {
				select {
				case ev := <-w.events:
					if ev.c == c && ev.gen == c.gen && ev.kind == evExited {
						w.handle(ctx, ev)
						break wait
					}
				case <-ctx.Done(): // the agent stops: so does the init container
					w.stopAll(2 * time.Second)
					return false
				}
			}
			if c.term != nil && c.term.ExitCode == 0 {
				break
			}
			if w.pod.Spec.RestartPolicy == corev1.RestartPolicyNever || ctx.Err() != nil {
				w.failWhy, w.failMsg = "InitContainerFailed", fmt.Sprintf("init container %q exited with %d", c.spec.Name, c.term.ExitCode)
				return false
			}
			time.Sleep(c.backoff)
			c.term = nil
		}
	}
	w.initDone = true
	return true
}

func (w *worker) finished() bool {
	if w.failWhy != "" {
		return true
	}
	for _, c := range w.ctrs {
		if c.term == nil {
			return false
		}
	}
	return true
}

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

func (w *worker) startProcess(ctx context.Context, c *ctr) error {
	env, err := w.containerEnv(ctx, c.spec)
	if err != nil {
		return err
	}
	var e envList
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		e.set(k, v)
	}
	argv := make([]string, len(c.prog.Argv))
	for i, a := range c.prog.Argv {
		argv[i] = expand(a, e.lookup)
	}
	ms, err := mounts(c.spec, w.vols)
	if err != nil {
		return err
	}
	if c.prog.Nginx {
		var extra []Mount
		argv, extra, err = w.nginx(c, ms)
		if err != nil {
			return err
		}
		ms = append(extra, ms...)
	}
	l := Launch{Argv: argv, Env: env, Dir: c.spec.WorkingDir, Mounts: ms}
	l.UID, l.GID = w.runAs(c.spec)
	if w.netns != "" {
		l.Netns = "/run/netns/" + w.netns
		l.Hostname = w.pod.Name
	}
	for _, m := range ms {
		created, err := ensureMountpoint(m)
		w.a.recordMountpoints(created)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", m.Target, err)
		}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	spec := filepath.Join(w.dir, c.spec.Name+".launch.json")
	if err := os.WriteFile(spec, b, 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(w.a.cfg.LogDir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(w.a.logFile(w.pod.Namespace, w.pod.Name, c.spec.Name),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "init", spec)
	cmd.Stdout, cmd.Stderr = logf, logf
	flags := uintptr(syscall.CLONE_NEWNS)
	if w.netns != "" {
		flags |= syscall.CLONE_NEWUTS
	}
	// Setpgid: signals go to the whole process group (nginx's workers too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.pid = cmd.Process.Pid
	pidFile := w.a.pidFile(w.pod.UID, c.spec.Name)
	_ = os.MkdirAll(filepath.Dir(pidFile), 0o755)
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(c.pid)), 0o644)
	gen := c.gen
	go func() {
		err := cmd.Wait()
		code := int32(0)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int32(ws.Signal())
			} else {
				code = int32(ee.ExitCode())
			}
		} else if err != nil {
			code = 128
		}
		w.emit(event{c: c, gen: gen, kind: evExited, code: code})
	}()
	return nil
}

// runAs is the user and group of securityContext, the container's over the
// Pod's. A container that adds capabilities keeps running as root: the lab
// does not implement ambient capabilities, and root has them all.
func (w *worker) runAs(c *corev1.Container) (uid, gid *int) {
	pick := func(ctr, pod *int64) *int {
		v := pod
		if ctr != nil {
			v = ctr
		}
		if v == nil {
			return nil
		}
		return ptr.To(int(*v))
	}
	var cu, cg, pu, pg *int64
	if sc := c.SecurityContext; sc != nil {
		cu, cg = sc.RunAsUser, sc.RunAsGroup
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			if u := pick(cu, nil); u == nil || *u != 0 {
				w.log.Info("container adds capabilities: running it as root", "container", c.Name)
			}
			return nil, nil
		}
	}
	if sc := w.pod.Spec.SecurityContext; sc != nil {
		pu, pg = sc.RunAsUser, sc.RunAsGroup
	}
	uid, gid = pick(cu, pu), pick(cg, pg)
	if uid != nil && gid == nil {
		gid = uid
	}
	return uid, gid
}

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
				if c2 := pid; c2 > 0 {
					_ = syscall.Kill(-c2, syscall.SIGKILL)
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

func (w *worker) signal(c *ctr, sig syscall.Signal) {
	if c.running && c.pid > 0 {
		_ = syscall.Kill(-c.pid, sig)
	}
}

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
		for _, c := range append(append([]*ctr{}, w.inits...), w.ctrs...) {
			if c.running {
				n++
			}
		}
		return n
	}
	for _, c := range append(append([]*ctr{}, w.inits...), w.ctrs...) {
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
				for _, c := range append(append([]*ctr{}, w.inits...), w.ctrs...) {
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

func (w *worker) waitForDeletion(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-w.updates:
			w.pod = u.pod
			if u.gone {
				return
			}
			if w.pod.DeletionTimestamp != nil {
				w.finishDeletion(ctx)
				return
			}
		case <-w.events:
		}
	}
}

func (w *worker) finishDeletion(ctx context.Context) {
	err := w.a.cs.CoreV1().Pods(w.pod.Namespace).Delete(ctx, w.pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &w.pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.log.Error("delete pod", "err", err)
	}
}

// teardown removes the Pod's network namespace and files; its processes
// are gone by now.
func (w *worker) teardown() {
	for _, c := range append(append([]*ctr{}, w.inits...), w.ctrs...) {
		if c.stop != nil {
			c.stop()
		}
	}
	if w.netns != "" {
		if err := ipCmd(context.Background(), "netns", "del", w.netns); err != nil {
			w.log.Warn("remove pod network", "err", err)
		}
		w.a.releaseIP(w.ipIdx)
		w.netns = ""
	}
	_ = os.RemoveAll(w.dir)
	_ = os.RemoveAll(filepath.Dir(w.a.pidFile(w.pod.UID, "x")))
}

func (w *worker) phase() corev1.PodPhase {
	if w.failWhy != "" {
		return corev1.PodFailed
	}
	if len(w.ctrs) > 0 && w.finished() {
		for _, c := range w.ctrs {
			if c.term.ExitCode != 0 {
				return corev1.PodFailed
			}
		}
		return corev1.PodSucceeded
	}
	for _, c := range w.ctrs {
		if c.running || c.pending || c.term != nil {
			return corev1.PodRunning
		}
	}
	return corev1.PodPending
}

func (w *worker) containerStatus(c *ctr) corev1.ContainerStatus {
	s := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image,
		RestartCount: c.restarts, Ready: c.ready, LastTerminationState: corev1.ContainerState{Terminated: c.last}}
	if len(c.prog.Argv) > 0 {
		s.ImageID = "lab://" + c.prog.Argv[0]
	}
	switch {
	case c.running:
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startAt}
		s.ContainerID = fmt.Sprintf("lab://%d", c.pid)
		s.Started = ptr.To(true)
	case c.term != nil:
		s.State.Terminated = c.term
		s.ContainerID = c.term.ContainerID
		s.Started = ptr.To(false)
	default:
		why := c.waitWhy
		if why == "" {
			why = "ContainerCreating"
		}
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: why, Message: c.waitMsg}
		s.Started = ptr.To(false)
	}
	return s
}

func setCondition(conds []corev1.PodCondition, t corev1.PodConditionType, ok bool, reason string) []corev1.PodCondition {
	st := corev1.ConditionFalse
	if ok {
		st = corev1.ConditionTrue
		reason = ""
	}
	for i := range conds {
		if conds[i].Type == t {
			if conds[i].Status != st {
				conds[i].Status, conds[i].LastTransitionTime = st, metav1.Now()
			}
			conds[i].Reason = reason
			return conds
		}
	}
	return append(conds, corev1.PodCondition{Type: t, Status: st, Reason: reason, LastTransitionTime: metav1.Now()})
}

func (w *worker) status() corev1.PodStatus {
	st := *w.pod.Status.DeepCopy()
	st.Phase = w.phase()
	st.Reason, st.Message = w.failWhy, w.failMsg
	st.StartTime = &w.started
	w.fillIPs()
	st.PodIP, st.PodIPs, st.HostIP, st.HostIPs = w.pod.Status.PodIP, w.pod.Status.PodIPs, w.pod.Status.HostIP, w.pod.Status.HostIPs
	allReady := len(w.ctrs) > 0
	st.ContainerStatuses = nil
	for _, c := range w.ctrs {
		st.ContainerStatuses = append(st.ContainerStatuses, w.containerStatus(c))
		allReady = allReady && c.ready
	}
	st.InitContainerStatuses = nil
	for _, c := range w.inits {
		cs := w.containerStatus(c)
		cs.Ready = c.term != nil && c.term.ExitCode == 0
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	sandbox := w.failWhy == "" && len(w.podIPs) > 0 && st.Phase != corev1.PodSucceeded && st.Phase != corev1.PodFailed
	st.Conditions = setCondition(st.Conditions, corev1.PodReadyToStartContainers, sandbox, "")
	st.Conditions = setCondition(st.Conditions, corev1.PodInitialized, w.initDone, "ContainersNotInitialized")
	st.Conditions = setCondition(st.Conditions, corev1.ContainersReady, allReady, "ContainersNotReady")
	st.Conditions = setCondition(st.Conditions, corev1.PodReady, allReady, "ContainersNotReady")
	return st
}

// push writes the Pod's status when it changed since the last write.
func (w *worker) push(ctx context.Context) {
	st := w.status()
	if w.pushed != nil && apiequality.Semantic.DeepEqual(*w.pushed, st) {
		return
	}
	pods := w.a.cs.CoreV1().Pods(w.pod.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, w.pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != w.pod.UID {
			return nil
		}
		s := st.DeepCopy()
		s.QOSClass = cur.Status.QOSClass
		s.Conditions = mergePodConditions(cur.Status.Conditions, s.Conditions)
		cur.Status = *s
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		w.log.Warn("update pod status", "err", err)
		return
	}
	w.pushed = &st
}

// mergePodConditions keeps conditions others own (PodScheduled, readiness
// gates) and replaces the ones the agent owns.
func mergePodConditions(cur, ours []corev1.PodCondition) []corev1.PodCondition {
	out := append([]corev1.PodCondition(nil), ours...)
	for _, c := range cur {
		found := false
		for _, o := range ours {
			if o.Type == c.Type {
				found = true
			}
		}
		if !found {
			out = append(out, c)
		}
	}
	return out
}
