package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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
			for _, c := range w.all() {
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

// teardown removes the Pod's network namespace and files; its processes
// are gone by now.
func (w *worker) teardown() {
	for _, c := range w.all() {
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
