package nodeagent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/apimachinery/pkg/util/remotecommand"
)

// execInContainer serves the kubelet's exec endpoint for `kubectl exec`
// without a TTY: the API server upgrades to SPDY (translating a kubectl
// WebSocket if need be) and opens stdin/stdout/stderr/error streams; the
// command runs with nsenter in the container process's namespaces and
// environment, and its exit status goes back on the error stream.
func (a *Agent) execInContainer(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	q := r.URL.Query()
	argv := q["command"]
	if len(argv) == 0 {
		http.Error(w, "no command", http.StatusBadRequest)
		return
	}
	if q.Get("tty") == "1" || q.Get("tty") == "true" {
		http.Error(w, "the lab has no TTYs: use kubectl exec without -t", http.StatusBadRequest)
		return
	}
	pid, err := a.containerPID(r, ns, pod, container)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if _, err := httpstream.Handshake(r, w, remotecommand.SupportedStreamingProtocols); err != nil {
		return // Handshake wrote the error
	}
	want := 1 // the error stream
	for _, k := range []string{"input", "output", "error"} {
		if v := q.Get(k); v == "1" || v == "true" {
			want++
		}
	}
	streams := make(chan httpstream.Stream, want)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(s httpstream.Stream, _ <-chan struct{}) error {
		streams <- s
		return nil
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	conn.SetIdleTimeout(4 * time.Hour)

	byType := map[string]httpstream.Stream{}
	timeout := time.After(remotecommand.DefaultStreamCreationTimeout)
	for len(byType) < want {
		select {
		case s := <-streams:
			byType[s.Headers().Get(corev1.StreamType)] = s
		case <-timeout:
			a.log.Warn("exec: streams not created in time", "pod", ns+"/"+pod)
			return
		case <-r.Context().Done():
			return
		}
	}
	cmd := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(pid),
		"--mount", "--net", "--uts", "--wd=/", "--"}, argv...)...)
	cmd.Env = processEnv(pid)
	if s := byType[corev1.StreamTypeStdin]; s != nil {
		cmd.Stdin = s
	}
	if s := byType[corev1.StreamTypeStdout]; s != nil {
		cmd.Stdout = s
	}
	if s := byType[corev1.StreamTypeStderr]; s != nil {
		cmd.Stderr = s
	}
	runErr := cmd.Run()
	for _, t := range []string{corev1.StreamTypeStdout, corev1.StreamTypeStderr} {
		if s := byType[t]; s != nil {
			s.Close()
		}
	}
	status := metav1.Status{Status: metav1.StatusSuccess}
	var ee *exec.ExitError
	switch {
	case errors.As(runErr, &ee):
		status = metav1.Status{Status: metav1.StatusFailure, Reason: remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", runErr),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{
				Type: remotecommand.ExitCodeCauseType, Message: strconv.Itoa(ee.ExitCode())}}}}
	case runErr != nil:
		status = metav1.Status{Status: metav1.StatusFailure, Message: runErr.Error()}
	}
	if s := byType[corev1.StreamTypeError]; s != nil {
		b, _ := json.Marshal(status)
		_, _ = s.Write(b)
		s.Close()
	}
}

// containerPID finds the process of a running container from the pid file
// its worker keeps.
func (a *Agent) containerPID(r *http.Request, ns, pod, container string) (int, error) {
	p, err := a.cs.CoreV1().Pods(ns).Get(r.Context(), pod, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(a.pidFile(p.UID, container))
	if err != nil {
		return 0, fmt.Errorf("container %q of pod %s/%s is not running", container, ns, pod)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// processEnv is the environment of a running process, so exec'd commands
// see what the container sees.
func processEnv(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil
	}
	var env []string
	for _, kv := range bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}) {
		env = append(env, string(kv))
	}
	return env
}
