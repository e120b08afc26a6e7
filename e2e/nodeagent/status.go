package nodeagent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

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

// status is the Pod status as this worker sees it, over the last one read
// from the API so fields others own survive.
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

// phase follows the kubelet: Failed or Succeeded once no container will
// run again, Running once any container has started, else Pending.
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

// containerStatus reports one container: running, terminated for good, or
// waiting (creating, or backing off with the reason that says why).
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

// setCondition sets condition t of conds to ok, moving its transition time
// only when the status changes; reason only explains a False.
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
