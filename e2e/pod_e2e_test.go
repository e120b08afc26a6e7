//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPodSpec checks, from inside a Pod, what the node agent promises:
// an init container that runs first (its file is in the shared emptyDir),
// the downward API, secretKeyRef and configMapKeyRef, $(VAR) expansion,
// ConfigMap, Secret and emptyDir volumes with subPath, the service-account
// files, the Pod's own hostname and address, and runAsUser (as a user
// that can still read its token and write its emptyDir).
func TestPodSpec(t *testing.T) {
	ns := namespace(t)
	plan, _ := cfg.Plan()
	sa := "/var/run/secrets/kubernetes.io/serviceaccount"
	apply(t, ns, fmt.Sprintf(`
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {greeting: hello, other: world}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: check}
spec:
  nodeName: node-2
  restartPolicy: Never
  securityContext: {runAsUser: 65532, runAsGroup: 65532}
  initContainers:
  - name: init
    image: lab.portico.dev/kubecheck:dev
    args: [env, --writable=/scratch]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  containers:
  - name: check
    image: lab.portico.dev/kubecheck:dev
    env:
    - {name: MY_POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: MY_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: SECRET_VAL, valueFrom: {secretKeyRef: {name: sec, key: password}}}
    - {name: CM_VAL, valueFrom: {configMapKeyRef: {name: cm, key: greeting}}}
    - {name: COMPOSED, value: "$(MY_POD)-in-$(MY_NS)"}
    args:
    - env
    - --expect=MY_POD=check
    - --expect=MY_NODE=node-2
    - --expect=HOST_IP=%[1]s
    - --expect=SECRET_VAL=s3cret
    - --expect=CM_VAL=hello
    - --expect=COMPOSED=check-in-%[2]s
    - --local-ip=POD_IP
    - --file=/etc/lab-check/cm/greeting=hello
    - --file=/etc/lab-check-one.txt=world
    - --file=/etc/lab-check/secret/password=s3cret
    - --file=%[3]s/namespace=%[2]s
    - --nonempty-file=%[3]s/token
    - --nonempty-file=%[3]s/ca.crt
    - --file=/scratch/kubecheck=x
    - --writable=/scratch
    - --hostname=check
    - --uid=65532
    volumeMounts:
    - {name: cm, mountPath: /etc/lab-check/cm}
    - {name: cm, mountPath: /etc/lab-check-one.txt, subPath: other}
    - {name: sec, mountPath: /etc/lab-check/secret}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - {name: cm, configMap: {name: cm}}
  - {name: sec, secret: {secretName: sec}}
  - {name: scratch, emptyDir: {}}
`, plan.Nodes[1].V4, ns, sa))
	if phase := podPhase(t, ns, "check"); phase != corev1.PodSucceeded {
		t.Fatalf("checker %s:\n%s", phase, podLog(ns, "check", "check"))
	}
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), "check", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Status.PodIPs) != 2 || p.Status.HostIP != plan.Nodes[1].V4.String() {
		t.Errorf("podIPs %v hostIP %s, want two pod IPs and host IP %s", p.Status.PodIPs, p.Status.HostIP, plan.Nodes[1].V4)
	}
}

func TestHostNetworkPod(t *testing.T) {
	ns := namespace(t)
	plan, _ := cfg.Plan()
	apply(t, ns, `
apiVersion: v1
kind: Pod
metadata: {name: hostnet, labels: {app: hostnet}}
spec:
  nodeName: node-1
  hostNetwork: true
  containers:
  - name: echo
    image: ingressconformance/echoserver:v0.0.1
    env:
    - {name: HTTP_PORT, value: "3081"}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    readinessProbe: {tcpSocket: {port: 3081}, periodSeconds: 1}
`)
	p := readyPods(t, ns, "app=hostnet", 1)[0]
	if p.Status.PodIP != plan.Nodes[0].V4.String() {
		t.Errorf("hostNetwork pod IP %s, want the node's %s", p.Status.PodIP, plan.Nodes[0].V4)
	}
	for _, ip := range []string{plan.Nodes[0].V4.String(), "[" + plan.Nodes[0].V6.String() + "]"} {
		pod, err := curlPod(t, "http://"+ip+":3081/")
		if err != nil || pod != "hostnet" {
			t.Errorf("node-1 %s:3081 answered by %q (%v), want hostnet", ip, pod, err)
		}
	}
}

func TestGracefulDeletion(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, `
apiVersion: v1
kind: Pod
metadata: {name: stubborn, labels: {app: stubborn}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {name: sleep, image: "lab.portico.dev/kubecheck:dev", args: [sleep, --ignore-term]}
---
apiVersion: v1
kind: Pod
metadata: {name: polite, labels: {app: polite}}
spec:
  containers:
  - {name: sleep, image: "lab.portico.dev/kubecheck:dev", args: [sleep]}
---
apiVersion: v1
kind: Pod
metadata: {name: hooked, labels: {app: hooked}}
spec:
  containers:
  - name: sleep
    image: "lab.portico.dev/kubecheck:dev"
    args: [sleep]
    lifecycle: {preStop: {sleep: {seconds: 3}}}
`)
	readyPods(t, ns, "app=stubborn", 1)
	readyPods(t, ns, "app=polite", 1)
	readyPods(t, ns, "app=hooked", 1)
	gone := func(name string) time.Duration {
		start := time.Now()
		kubectl(t, "", "delete", "pod", "-n", ns, name, "--wait=false")
		eventually(t, 40*time.Second, name+" is deleted", func() error {
			_, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (%v)", err)
		})
		return time.Since(start)
	}
	// SIGTERM ignored: SIGKILL comes after the 3 s grace period, not before.
	if d := gone("stubborn"); d < 2500*time.Millisecond || d > 15*time.Second {
		t.Errorf("pod ignoring SIGTERM went away after %s, want about its 3s grace period", d)
	}
	// SIGTERM obeyed: gone at once, not after the default 30 s grace period.
	if d := gone("polite"); d > 10*time.Second {
		t.Errorf("pod obeying SIGTERM went away after %s", d)
	}
	// A preStop hook runs before SIGTERM: the same process now lives on
	// for the hook's 3 s.
	if d := gone("hooked"); d < 2500*time.Millisecond || d > 15*time.Second {
		t.Errorf("pod with a 3 s preStop sleep went away after %s", d)
	}
}

// TestProbes: a failing liveness probe restarts the container with back-off;
// an exec readiness probe runs inside the container.
func TestProbes(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, `
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: echo
    image: ingressconformance/echoserver:v0.0.1
    # Ready on the server's port; "alive" only on a port nothing listens on.
    readinessProbe: {tcpSocket: {port: 3000}, periodSeconds: 1}
    livenessProbe: {tcpSocket: {port: 3999}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: exec-probed, labels: {app: exec-probed}}
spec:
  containers:
  - name: sleep
    image: "lab.portico.dev/kubecheck:dev"
    args: [sleep]
    # Ready only once the file exists in the container's own /tmp view.
    readinessProbe: {exec: {command: [test, -e, /scratch/ready]}, periodSeconds: 1}
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {}}]
`)
	// An exec readiness probe runs in the container and follows its result.
	time.Sleep(2 * time.Second)
	if p, err := cs.CoreV1().Pods(ns).Get(context.Background(), "exec-probed", metav1.GetOptions{}); err != nil || podReady(p) {
		t.Fatalf("exec-probed is ready before its probe can pass (%v)", err)
	}
	kubectl(t, "", "exec", "-n", ns, "exec-probed", "--", "touch", "/scratch/ready")
	readyPods(t, ns, "app=exec-probed", 1)
	eventually(t, 40*time.Second, "liveness failures restart the container", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), "unhealthy", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 2 {
			return fmt.Errorf("statuses %+v", p.Status.ContainerStatuses)
		}
		return nil
	})
	// Back-off shows while the container waits to restart.
	eventually(t, 40*time.Second, "CrashLoopBackOff is reported", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), "unhealthy", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := p.Status.ContainerStatuses[0]
		if s.State.Waiting == nil || !strings.Contains(s.State.Waiting.Reason, "CrashLoopBackOff") {
			return fmt.Errorf("state %+v", s.State)
		}
		return nil
	})
}

// TestKubectlExec: kubectl exec (no TTY) runs in the container's
// namespaces and environment, with stdin and the exit code.
func TestKubectlExec(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, `
apiVersion: v1
kind: Pod
metadata: {name: sleeper, labels: {app: sleeper}}
spec:
  containers:
  - name: sleep
    image: "lab.portico.dev/kubecheck:dev"
    args: [sleep]
    env: [{name: GREETING, value: hello}]
`)
	p := readyPods(t, ns, "app=sleeper", 1)[0]
	out := kubectl(t, "", "exec", "-n", ns, "sleeper", "--", "sh", "-c",
		"hostname; echo $GREETING; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; ip -4 -o addr show eth0")
	for _, want := range []string{"sleeper\n", "hello\n", ns + "\n", p.Status.PodIP + "/"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl exec output %q lacks %q", out, want)
		}
	}
	if out := kubectl(t, "from stdin\n", "exec", "-i", "-n", ns, "sleeper", "--", "cat"); out != "from stdin\n" {
		t.Errorf("kubectl exec -i cat: %q", out)
	}
	cmd := exec.Command(cfg.Bins+"/kubectl", "--kubeconfig", cfg.Dirs().Kubeconfig(), "exec", "-n", ns, "sleeper", "--", "sh", "-c", "exit 3")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("kubectl exec of exit 3: %v", err)
	}
}
