package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The lab's default address pool: the top of the LAN, which no lab host
// uses, so LoadBalancer IPs answer on the LAN at layer 2 and can be routed
// by the router over BGP.
const (
	PoolV4 = "172.31.0.200-172.31.0.250"
	PoolV6 = "fd31::200-fd31::250"
)

const labPool = `apiVersion: portico.dev/v1alpha1
kind: AddressPool
metadata:
  name: lab
spec:
  addresses: [%s, %s]
  avoidBuggyIPs: true
---
apiVersion: portico.dev/v1alpha1
kind: L2Advertisement
metadata:
  name: lab
spec: {}
`

// Install installs Portico as a user would, `kubectl apply -k manifests/`,
// adds the lab's AddressPool and waits for Portico's workloads. Images map
// to <repo>/bin, so build Portico first: go build -o bin/ ./cmd/...
func Install(ctx context.Context, c Config) error {
	d := c.Dirs()
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(c.Bins, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+d.Kubeconfig())
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	if err := Healthy(ctx, c); err != nil {
		return fmt.Errorf("lab is not up (%v): run `lab up` first", err)
	}
	manifests := filepath.Join(c.Repo, "manifests")
	if _, err := os.Stat(filepath.Join(manifests, "kustomization.yaml")); err != nil {
		return fmt.Errorf("no %s/kustomization.yaml to install", manifests)
	}
	out, err := kubectl("", "apply", "-k", manifests)
	if err != nil {
		return err
	}
	fmt.Fprint(c.Out, out)
	if _, err := kubectl("", "wait", "--for=condition=Established", "--timeout=30s", "crd/addresspools.portico.dev", "crd/l2advertisements.portico.dev"); err != nil {
		return err
	}
	if out, err = kubectl(fmt.Sprintf(labPool, PoolV4, PoolV6), "apply", "-f", "-"); err != nil {
		return err
	}
	fmt.Fprint(c.Out, out)
	// Wait for every workload Portico installed; say which one is stuck.
	deadline := time.Now().Add(120 * time.Second)
	for {
		out, err := kubectl("", "get", "deployments,daemonsets", "-n", "portico-system", "-o",
			`jsonpath={range .items[*]}{.kind}/{.metadata.name} {.status.readyReplicas}{.status.numberReady} {.status.replicas}{.status.desiredNumberScheduled}{"\n"}{end}`)
		if err != nil {
			return err
		}
		var waiting []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 3 && f[1] == f[2] {
				continue
			}
			if line != "" {
				waiting = append(waiting, line)
			}
		}
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			pods, _ := kubectl("", "get", "pods", "-n", "portico-system", "-o", "wide")
			return fmt.Errorf("Portico is not ready after 2m: %s\n%s\nlogs: %s", strings.Join(waiting, ", "), pods, filepath.Join(d.Logs(), "pods"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	fmt.Fprintf(c.Out, `Portico is running. Try:
  export KUBECONFIG=%s
  kubectl create deployment web --image=ingressconformance/echoserver:v0.0.1 --replicas=3
  kubectl expose deployment web --type=LoadBalancer --port=80 --target-port=3000
  kubectl get service web          # EXTERNAL-IP from %s
  bin/lab exec client -- curl http://<EXTERNAL-IP>/
`, d.Kubeconfig(), PoolV4)
	return nil
}
