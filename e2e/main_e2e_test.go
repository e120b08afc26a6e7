//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/portico-lb/portico/e2e/lab"
)

var (
	cfg lab.Config
	cs  kubernetes.Interface
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ci := os.Getenv("CI") == "true"
	cannot := func(why string) int {
		if ci {
			fmt.Fprintln(os.Stderr, "FAIL: the lab cannot run under CI=true:", why)
			return 1
		}
		fmt.Fprintln(os.Stderr, "SKIP: lab tests need", why)
		return 0
	}
	if os.Geteuid() != 0 {
		return cannot("root (network namespaces)")
	}
	wd, _ := os.Getwd()
	repo, err := lab.FindRepo(wd)
	if err != nil {
		return cannot(err.Error())
	}
	cfg = lab.Config{Repo: repo, Bins: lab.DefaultBins(repo), Nodes: 3, Out: os.Stderr}
	if _, err := os.Stat(filepath.Join(cfg.Bins, "kube-apiserver")); err != nil {
		return cannot("the Kubernetes binaries in " + cfg.Bins + " (make k8s-bins, or set PORTICO_K8S_BINS)")
	}
	// Built as make lab builds them, so that a lab it brought up is used
	// as it is: a different binary would look like a new node agent and
	// make lab.Up rebuild the lab (see lab.Healthy); so would a commit
	// alone, without -buildvcs=false.
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", filepath.Join(repo, "bin")+"/", "./e2e/cmd/...")
	build.Dir, build.Stdout, build.Stderr = repo, os.Stderr, os.Stderr
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: build the lab's binaries:", err)
		return 1
	}
	ctx := context.Background()
	wasUp := lab.Healthy(ctx, cfg) == nil
	if err := lab.Up(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: lab up:", err)
		return 1
	}
	if !wasUp && os.Getenv("PORTICO_LAB_KEEP") == "" {
		defer func() {
			if err := lab.Down(context.Background(), cfg); err != nil {
				fmt.Fprintln(os.Stderr, "lab down:", err)
			}
		}()
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Dirs().Kubeconfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	if cs, err = kubernetes.NewForConfig(rc); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	return m.Run()
}

// kubectl runs the lab's kubectl against the lab and returns its stdout.
func kubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(cfg.Bins, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cfg.Dirs().Kubeconfig())
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// apply creates objects from YAML in namespace ns.
func apply(t testing.TB, ns, yaml string) {
	t.Helper()
	kubectl(t, yaml, "apply", "-n", ns, "-f", "-")
}

// namespace creates a namespace for one test and deletes it afterwards.
func namespace(t testing.TB) string {
	t.Helper()
	ns := "e2e-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	// Unique, so that a kept lab (PORTICO_LAB_KEEP) can run the tests again.
	ns = fmt.Sprintf("%s-%05x", ns, rand.IntN(1<<20))
	kubectl(t, "", "create", "namespace", ns)
	// Pods are refused until the controller manager made the default
	// ServiceAccount.
	// The controller manager may still be re-establishing its watches
	// after a test stopped the API server: allow it time.
	eventually(t, 90*time.Second, "default ServiceAccount in "+ns, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{})
		return err
	})
	t.Cleanup(func() {
		if os.Getenv("PORTICO_LAB_KEEP") == "" {
			_ = exec.Command(filepath.Join(cfg.Bins, "kubectl"), "--kubeconfig", cfg.Dirs().Kubeconfig(),
				"delete", "namespace", ns, "--wait=false").Run()
		}
	})
	return ns
}

// labExec runs a command in a lab host and returns its combined output and
// exit code.
func labExec(t testing.TB, host string, argv ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(cfg.Repo, "bin", "lab"), append([]string{"--repo", cfg.Repo, "--k8s-bins", cfg.Bins, "exec", host, "--"}, argv...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !asExit(err, &ee) {
		t.Fatalf("lab exec %s %v: %v", host, argv, err)
	}
	if ee != nil {
		return string(out), ee.ExitCode()
	}
	return string(out), 0
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// eventually polls f every half second until it returns nil or timeout.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not after %s: %v", what, timeout, err)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyPods waits until selector matches exactly n Ready pods and returns them.
func readyPods(t testing.TB, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, 60*time.Second, fmt.Sprintf("%d ready pods %s in %s", n, selector, ns), func() error {
		l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		pods = pods[:0]
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				pods = append(pods, p)
			}
		}
		if len(pods) != n || len(l.Items) != n {
			return fmt.Errorf("%d of %d pods ready", len(pods), len(l.Items))
		}
		return nil
	})
	return pods
}

// podPhase waits for a pod to finish and returns its phase.
func podPhase(t testing.TB, ns, name string) corev1.PodPhase {
	t.Helper()
	var phase corev1.PodPhase
	eventually(t, 90*time.Second, "pod "+name+" finishes", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		phase = p.Status.Phase
		if phase != corev1.PodSucceeded && phase != corev1.PodFailed {
			return fmt.Errorf("phase %s", phase)
		}
		return nil
	})
	return phase
}

// podLog is the container's log as the lab keeps it, for failure messages
// (kubectl logs works too, but not when the API is the trouble).
func podLog(ns, pod, container string) string {
	b, _ := os.ReadFile(filepath.Join(cfg.Dirs().Logs(), "pods", fmt.Sprintf("%s_%s_%s.log", ns, pod, container)))
	return string(b)
}
