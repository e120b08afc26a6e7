//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/e2e/lab"
)

const echoDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: echo}}}
      containers:
      - name: echo
        image: ingressconformance/echoserver:v0.0.1
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: SERVICE_NAME, value: echo}
        ports: [{name: http, containerPort: 3000}]
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
`

func names(pods []corev1.Pod) map[string]bool {
	m := map[string]bool{}
	for _, p := range pods {
		m[p.Name] = true
	}
	return m
}

// curlPod asks url from the client namespace and returns the pod that
// answered, per the echo server's JSON.
func curlPod(t *testing.T, url string) (string, error) {
	out, code := labExec(t, "client", "curl", "-sS", "-m", "3", url)
	if code != 0 {
		return "", fmt.Errorf("curl %s: exit %d: %s", url, code, out)
	}
	var body struct {
		Pod       string `json:"pod"`
		Namespace string `json:"namespace"`
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil {
		return "", fmt.Errorf("curl %s: %v: %q", url, err, out)
	}
	return body.Pod, nil
}

func TestServices(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, echoDeployment+`
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {app: echo}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-nodeport}
spec:
  type: NodePort
  ipFamilyPolicy: PreferDualStack
  selector: {app: echo}
  ports: [{port: 80, targetPort: http}]
`)
	pods := readyPods(t, ns, "app=echo", 3)
	want := names(pods)
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.Spec.NodeName] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("echo pods on %d nodes, want 3", len(nodes))
	}

	t.Run("ClusterIPFromPodOnAnotherNode", func(t *testing.T) {
		// The checker runs on node-1; at least two of the three pods that
		// must answer live on other nodes.
		apply(t, ns, `
apiVersion: v1
kind: Pod
metadata: {name: clusterip-check}
spec:
  nodeName: node-1
  restartPolicy: Never
  containers:
  - name: check
    image: lab.portico.dev/kubecheck:dev
    args: [http, "http://$(ECHO_SERVICE_HOST):$(ECHO_SERVICE_PORT)/", --pods, "3"]
`)
		if phase := podPhase(t, ns, "clusterip-check"); phase != corev1.PodSucceeded {
			t.Fatalf("checker pod %s:\n%s", phase, podLog(ns, "clusterip-check", "check"))
		}
	})

	t.Run("NodePortFromClient", func(t *testing.T) {
		svc, err := cs.CoreV1().Services(ns).Get(context.Background(), "echo-nodeport", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
		plan, _ := cfg.Plan()
		seen := map[string]bool{}
		// Every node's NodePort, both families, answers with an echo pod;
		// keep asking (kube-proxy on some node may not have the third
		// endpoint yet) until all three pods have answered, or 30 s.
		deadline := time.Now().Add(30 * time.Second)
		for round := 0; round == 0 || (len(seen) < 3 && time.Now().Before(deadline)); round++ {
			for _, n := range plan.Nodes {
				for _, ip := range []string{n.V4.String(), n.V6.String()} {
					url := "http://" + net.JoinHostPort(ip, port) + "/"
					for range 3 {
						var pod string
						eventually(t, 20*time.Second, "GET "+url, func() (err error) {
							pod, err = curlPod(t, url)
							return err
						})
						if !want[pod] {
							t.Fatalf("%s answered by %q, not one of the echo pods %v", url, pod, want)
						}
						seen[pod] = true
					}
				}
			}
		}
		if len(seen) != 3 {
			t.Errorf("NodePorts were answered by %v, want all 3 echo pods", seen)
		}
	})

	t.Run("DeletedPodIsReplaced", func(t *testing.T) {
		victim := pods[0].Name
		kubectl(t, "", "delete", "pod", "-n", ns, victim, "--wait=true")
		now := readyPods(t, ns, "app=echo", 3)
		if names(now)[victim] {
			t.Fatalf("deleted pod %s is still listed", victim)
		}
	})
}

func TestDaemonSetRunsOnEveryNode(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, `
apiVersion: v1
kind: ConfigMap
metadata: {name: html}
data: {index.html: "served by nginx from a ConfigMap\n"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports: [{containerPort: 80}]
        readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
        volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]
      volumes: [{name: html, configMap: {name: html}}]
`)
	pods := readyPods(t, ns, "app=web", cfg.Nodes)
	perNode := map[string]int{}
	for _, p := range pods {
		perNode[p.Spec.NodeName]++
	}
	for i := 1; i <= cfg.Nodes; i++ {
		if n := perNode[fmt.Sprintf("node-%d", i)]; n != 1 {
			t.Errorf("node-%d runs %d web pods, want 1", i, n)
		}
	}
	// The pods are Debian's nginx behaving like the official image.
	out, code := labExec(t, "node-1", "curl", "-sS", "-m", "3", "http://"+pods[0].Status.PodIP+"/")
	if code != 0 || !strings.Contains(out, "served by nginx from a ConfigMap") {
		t.Errorf("nginx pod answered %d %q", code, out)
	}
}

func TestInClusterRBAC(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, `
apiVersion: v1
kind: ServiceAccount
metadata: {name: checker}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: checker-pod-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: checker}]
---
apiVersion: v1
kind: Pod
metadata: {name: rbac-check}
spec:
  serviceAccountName: checker
  restartPolicy: Never
  containers:
  - {name: check, image: "lab.portico.dev/kubecheck:dev", args: [rbac]}
`)
	if phase := podPhase(t, ns, "rbac-check"); phase != corev1.PodSucceeded {
		t.Fatalf("RBAC checker %s:\n%s", phase, podLog(ns, "rbac-check", "check"))
	}
	// kubectl logs goes through the API server to the node agent.
	if out := kubectl(t, "", "logs", "-n", ns, "rbac-check"); !strings.Contains(out, "listing secrets is forbidden") {
		t.Errorf("kubectl logs rbac-check: %q", out)
	}
}

func TestKilledContainerRestarts(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, `
apiVersion: v1
kind: Pod
metadata: {name: echo, labels: {app: restart}}
spec:
  containers:
  - name: echo
    image: ingressconformance/echoserver:v0.0.1
    readinessProbe: {httpGet: {path: /health, port: 3000}, periodSeconds: 1}
`)
	p := readyPods(t, ns, "app=restart", 1)[0]
	id := p.Status.ContainerStatuses[0].ContainerID
	pid, err := strconv.Atoi(strings.TrimPrefix(id, "lab://"))
	if err != nil {
		t.Fatalf("container ID %q: %v", id, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill container process %d: %v", pid, err)
	}
	eventually(t, 30*time.Second, "restart count rises and the pod is Ready again", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), "echo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := p.Status.ContainerStatuses[0]
		if s.RestartCount < 1 || !podReady(p) {
			return fmt.Errorf("restartCount %d, ready %v", s.RestartCount, podReady(p))
		}
		if s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 137 {
			return fmt.Errorf("last termination %+v, want exit 137", s.LastTerminationState.Terminated)
		}
		return nil
	})
}

func TestUnknownImage(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, `
apiVersion: v1
kind: Pod
metadata: {name: busybox}
spec:
  restartPolicy: Never
  containers: [{name: sh, image: "busybox:1.36", command: [sh, -c, "sleep 1000"]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: busybox}
spec:
  replicas: 2
  selector: {matchLabels: {app: busybox}}
  template:
    metadata: {labels: {app: busybox}}
    spec:
      containers: [{name: sh, image: "busybox:1.36"}]
`)
	// A Pod that never restarts fails, saying why.
	if phase := podPhase(t, ns, "busybox"); phase != corev1.PodFailed {
		t.Fatalf("phase %s, want Failed", phase)
	}
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), "busybox", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Reason != "ImageNotMapped" || !strings.Contains(p.Status.Message, "busybox:1.36") {
		t.Errorf("reason %q message %q", p.Status.Reason, p.Status.Message)
	}
	eventually(t, 10*time.Second, "a Warning event says why", func() error {
		evs, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=busybox,reason=ImageNotMapped,type=Warning"})
		if err == nil && len(evs.Items) == 0 {
			err = fmt.Errorf("no event")
		}
		return err
	})
	// Pods of a Deployment wait, like pods whose image cannot be pulled,
	// instead of failing and being replaced in a loop.
	eventually(t, 30*time.Second, "deployment pods wait with reason ImageNotMapped", func() error {
		l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=busybox"})
		if err != nil {
			return err
		}
		if len(l.Items) != 2 {
			return fmt.Errorf("%d pods, want 2", len(l.Items))
		}
		for _, p := range l.Items {
			if p.Status.Phase != corev1.PodPending || len(p.Status.ContainerStatuses) != 1 ||
				p.Status.ContainerStatuses[0].State.Waiting == nil ||
				p.Status.ContainerStatuses[0].State.Waiting.Reason != "ImageNotMapped" {
				return fmt.Errorf("pod %s: phase %s, statuses %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
			}
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=busybox"})
	if err != nil || len(l.Items) != 2 {
		t.Errorf("deployment has %d pods after waiting (%v), want 2: pods must not be replaced", len(l.Items), err)
	}
}

func TestOutsideReachesClientOnlyThroughRouter(t *testing.T) {
	plan, _ := cfg.Plan()
	// A TCP connection to a closed port is refused: the packet got there and
	// back. Unreachable is a time-out instead.
	reach := func(t *testing.T) int {
		_, code := labExec(t, "outside", "curl", "-sS", "-m", "2", "http://"+plan.Client.V4.String()+":9/")
		return code
	}
	const refused, timedOut = 7, 28
	if code := reach(t); code != refused {
		t.Fatalf("outside → client: curl exit %d, want %d (connection refused)", code, refused)
	}
	route, _ := labExec(t, "outside", "ip", "-4", "route", "get", plan.Client.V4.String())
	if !strings.Contains(route, "via "+plan.RouterOutV4.String()) {
		t.Errorf("outside's route to the client is %q, want via the router %s", route, plan.RouterOutV4)
	}
	// With forwarding off at the router the client is out of reach: there
	// is no other path.
	if _, code := labExec(t, "router", "sysctl", "-qw", "net.ipv4.ip_forward=0"); code != 0 {
		t.Fatal("cannot turn forwarding off at the router")
	}
	t.Cleanup(func() { labExec(t, "router", "sysctl", "-qw", "net.ipv4.ip_forward=1") })
	if code := reach(t); code != timedOut {
		t.Errorf("with the router not forwarding, outside → client: curl exit %d, want %d (time-out)", code, timedOut)
	}
}

func TestRouterRunsFRR(t *testing.T) {
	out, code := labExec(t, "router", "vtysh", "-c", "show bgp vrf default json")
	if code != 0 {
		t.Fatalf("vtysh: exit %d: %s", code, out)
	}
	var bgp struct {
		LocalAS  int    `json:"localAS"`
		RouterID string `json:"routerId"`
	}
	if err := json.Unmarshal([]byte(out), &bgp); err != nil {
		t.Fatalf("vtysh output %q: %v", out, err)
	}
	plan, _ := cfg.Plan()
	if bgp.LocalAS != lab.RouterASN || bgp.RouterID != plan.Router.V4.String() {
		t.Errorf("bgp %+v, want AS %d router-id %s", bgp, lab.RouterASN, plan.Router.V4)
	}
	// zebra programs the kernel with multipath routes (ECMP across nodes).
	out, _ = labExec(t, "router", "vtysh", "-c", "show zebra")
	if m := regexp.MustCompile(`ECMP Maximum\s+(\d+)`).FindStringSubmatch(out); m == nil || m[1] == "1" {
		t.Errorf("zebra without ECMP: %q", out)
	}
	out, code = labExec(t, "router", "ss", "-ltnH", "sport", "=", ":179")
	if code != 0 || !strings.Contains(out, ":179") {
		t.Errorf("bgpd is not listening on port 179: %q", out)
	}
}

// TestStoppedAgentMakesNodeNotReady runs last: it takes a node away for a while.
func TestStoppedAgentMakesNodeNotReady(t *testing.T) {
	const node = "node-3"
	readyStatus := func() (corev1.ConditionStatus, error) {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status, nil
			}
		}
		return "", fmt.Errorf("no Ready condition")
	}
	if err := lab.Stop(cfg, node+".agent"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Start(cfg, node+".agent") })
	eventually(t, 60*time.Second, node+" goes NotReady", func() error {
		s, err := readyStatus()
		if err == nil && s == corev1.ConditionTrue {
			err = fmt.Errorf("still Ready")
		}
		return err
	})
	if err := lab.Start(cfg, node+".agent"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 150*time.Second, node+" is Ready again", func() error {
		s, err := readyStatus()
		if err == nil && s != corev1.ConditionTrue {
			err = fmt.Errorf("Ready is %s", s)
		}
		return err
	})
}

// TestAPIServerOnTheLAN: every node and the client reach the API server at
// its LAN address with a certificate valid for it; pods reach it through
// the kubernetes Service (TestInClusterRBAC).
func TestAPIServerOnTheLAN(t *testing.T) {
	plan, _ := cfg.Plan()
	ca := cfg.Dirs().PKI() + "/ca.crt"
	hosts := []string{"client"}
	for _, n := range plan.Nodes {
		hosts = append(hosts, n.Name)
	}
	for _, h := range hosts {
		for _, addr := range []string{plan.CP.V4.String(), "[" + plan.CP.V6.String() + "]"} {
			url := fmt.Sprintf("https://%s:%d/version", addr, lab.APIPort)
			out, code := labExec(t, h, "curl", "-sS", "-m", "3", "--cacert", ca, url)
			if code != 0 || !strings.Contains(out, `"gitVersion"`) {
				t.Errorf("%s: GET %s: exit %d: %s", h, url, code, out)
			}
		}
	}
}

// TestUpIsIdempotent: `lab up` on a lab that is up changes nothing.
func TestUpIsIdempotent(t *testing.T) {
	st, err := cs.CoreV1().Nodes().Get(context.Background(), "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := lab.Up(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second lab up took %s", d)
	}
	again, err := cs.CoreV1().Nodes().Get(context.Background(), "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.UID != st.UID {
		t.Errorf("node-1 was recreated by a second lab up")
	}
}
