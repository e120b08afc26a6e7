package nodeagent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

type podUpdate struct {
	pod  *corev1.Pod
	gone bool // deleted from the API
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

// newWorker makes the worker of Pod p; Agent.dispatch starts run and
// sends it every later version of p.
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

// emit hands an event to the worker's goroutine, or drops it once the
// worker is done.
func (w *worker) emit(ev event) {
	select {
	case w.events <- ev:
	case <-w.done:
	}
}

// run is the Pod's whole life on this node: set up, init containers,
// containers, then a loop over API updates and container events that
// writes the status after each, until the Pod is deleted or finished.
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

// finished says no container will run again: the Pod failed or every
// container has terminated for good.
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

// waitForDeletion idles a finished Pod until the API deletes it.
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

// finishDeletion removes the Pod object once nothing of it runs here, as
// the kubelet does at the end of graceful deletion.
func (w *worker) finishDeletion(ctx context.Context) {
	err := w.a.cs.CoreV1().Pods(w.pod.Namespace).Delete(ctx, w.pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &w.pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.log.Error("delete pod", "err", err)
	}
}
