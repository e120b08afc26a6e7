package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/apitest"
)

// The integration tests share one real etcd and kube-apiserver (package
// apitest). Each test works in namespaces and with pools of its own, so
// they do not see each other's Services; pools, advertisements and Nodes
// are cluster-scoped, so every advertisement names its pools.
var api *apitest.Env

func TestMain(m *testing.M) {
	apitest.Main(m, func(e *apitest.Env) error {
		api = e
		return nil
	})
}

// porticoctl runs the command line and returns its exit code and output.
func porticoctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if api != nil {
		args = append([]string{"--kubeconfig", api.Kubeconfig}, args...)
	}
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs a command that must succeed.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := porticoctl(t, args...)
	if code != 0 {
		t.Fatalf("porticoctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	t.Logf("porticoctl %s\n%s", strings.Join(args, " "), out)
	return out
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inOut    string // in stdout
		inStderr string
	}{
		{[]string{"--help"}, 0, "explain service NAME", ""},
		{[]string{"-h"}, 0, "--kubeconfig", ""},
		{[]string{"status", "--help"}, 0, "--all-namespaces", ""},
		{[]string{"explain", "service", "--help"}, 0, "--namespace", ""},
		{[]string{"version"}, 0, "porticoctl ", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"status", "--no-such-flag"}, 2, "", "unknown flag: --no-such-flag"},
		{[]string{"status", "-o", "xml"}, 2, "", `unknown output format "xml"`},
		{[]string{"explain", "service"}, 2, "", "accepts 1 arg"},
		{[]string{"explain", "pod", "x"}, 2, "", `cannot explain "pod"`},
		{[]string{"pools", "extra"}, 2, "", "accepts 0 arg"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.inOut) || !strings.Contains(errOut.String(), tt.inStderr) {
				t.Fatalf("exit %d, want %d; want %q in stdout, %q in stderr; got\n%s\n--- stderr\n%s", code, tt.code, tt.inOut, tt.inStderr, out.String(), errOut.String())
			}
			if tt.code == 2 && !strings.Contains(errOut.String(), "Usage:") {
				t.Fatalf("a usage error must show the usage; stderr:\n%s", errOut.String())
			}
		})
	}
}

func TestVersionFromLdflags(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v9.8.7"
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, &out); code != 0 || strings.TrimSpace(out.String()) != "porticoctl v9.8.7" {
		t.Fatalf("exit %d, %q", code, out.String())
	}
}

// A failing API call is exit 1, not a usage error.
func TestUnreachableServerExits1(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"--server", "https://127.0.0.1:1", "--insecure-skip-tls-verify", "--request-timeout", "2s", "pools"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "error:") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// Objects for the integration tests.

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		status := statusOf(o)
		if err := api.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
		if status != nil {
			status(o)
			if err := api.Client.Status().Update(ctx, o); err != nil {
				t.Fatalf("status of %T %s: %v", o, o.GetName(), err)
			}
		}
	}
}

// statusOf keeps an object's status across Create, which drops it, so
// that create can write it with the status subresource.
func statusOf(o client.Object) func(client.Object) {
	switch v := o.(type) {
	case *corev1.Service:
		if len(v.Status.LoadBalancer.Ingress) > 0 {
			st := *v.Status.DeepCopy()
			return func(o client.Object) { o.(*corev1.Service).Status = st }
		}
	case *corev1.Node:
		st := *v.Status.DeepCopy()
		return func(o client.Object) { o.(*corev1.Node).Status = st }
	case *corev1.Pod:
		st := *v.Status.DeepCopy()
		return func(o client.Object) { o.(*corev1.Pod).Status = st }
	case *v1alpha1.ServiceAnnouncement:
		st := *v.Status.DeepCopy()
		return func(o client.Object) { o.(*v1alpha1.ServiceAnnouncement).Status = st }
	case *v1alpha1.AddressPool:
		st := *v.Status.DeepCopy()
		if st.Free == "" && len(st.Conditions) == 0 {
			return nil
		}
		return func(o client.Object) { o.(*v1alpha1.AddressPool).Status = st }
	}
	return nil
}

func namespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

func pool(name string, addrs ...string) *v1alpha1.AddressPool {
	p := &v1alpha1.AddressPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	return p
}

func l2(name string, pools []string, nodeSelector map[string]string) *v1alpha1.L2Advertisement {
	a := &v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}}
	a.Spec.AddressPools = pools
	if nodeSelector != nil {
		a.Spec.NodeSelectors = []metav1.LabelSelector{{MatchLabels: nodeSelector}}
	}
	return a
}

// lbService is a LoadBalancer Service holding ips, allocated from pool.
func lbService(ns, name, pool string, ips ...string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if pool != "" && len(ips) > 0 {
		svc.Annotations["portico.dev/allocated-from-pool"] = pool
	}
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return svc
}

// announcement is what a speaker writes for svc (created before it).
func announcement(svc *corev1.Service, node, protocol string, via []string, ips ...string) *v1alpha1.ServiceAnnouncement {
	a := &v1alpha1.ServiceAnnouncement{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace,
			Name:      svc.Name + "-" + node + "-" + protocol,
			Labels:    map[string]string{v1alpha1.ServiceNameLabel: svc.Name, v1alpha1.NodeNameLabel: node},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
			}},
		},
		Status: v1alpha1.ServiceAnnouncementStatus{
			Service: svc.Name, Node: node, Protocol: protocol, IPs: ips,
			Since: metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second)),
		},
	}
	if protocol == v1alpha1.ProtocolLayer2 {
		a.Status.Interfaces = via
	} else {
		a.Status.Peers = via
	}
	return a
}

// node is a Ready Node with labels, and, when speaker, a ready speaker Pod
// on it.
func node(t *testing.T, name string, labels map[string]string, ready, speaker bool) {
	t.Helper()
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	create(t, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}},
	})
	if !speaker {
		return
	}
	namespace(t, "portico-system", nil)
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "default"}})
	create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "speaker-" + name, Labels: map[string]string{"app.kubernetes.io/name": "portico-speaker"}},
		Spec:       corev1.PodSpec{NodeName: name, Containers: []corev1.Container{{Name: "speaker", Image: "portico"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	})
}

// decode parses -o json or -o yaml output into v, strictly.
func decode(t *testing.T, format, out string, v any) {
	t.Helper()
	var err error
	if format == "json" {
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	} else {
		err = yaml.UnmarshalStrict([]byte(out), v)
	}
	if err != nil {
		t.Fatalf("-o %s output does not parse: %v\n%s", format, err, out)
	}
}
