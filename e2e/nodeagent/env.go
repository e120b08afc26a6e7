package nodeagent

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// expand replaces $(VAR) with the value of VAR when it is defined, leaves
// unknown references as they are and turns $$ into $, as the kubelet does.
func expand(s string, lookup func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// envList keeps variables in definition order, later ones overriding.
type envList struct {
	order []string
	vals  map[string]string
}

func (e *envList) set(k, v string) {
	if e.vals == nil {
		e.vals = map[string]string{}
	}
	if _, ok := e.vals[k]; !ok {
		e.order = append(e.order, k)
	}
	e.vals[k] = v
}

func (e *envList) lookup(k string) (string, bool) { v, ok := e.vals[k]; return v, ok }

func (e *envList) list() []string {
	out := make([]string, 0, len(e.order))
	for _, k := range e.order {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

// serviceEnv is the Docker-links style variables of the kubernetes Service
// and of the Services in the Pod's namespace.
func serviceEnv(svcs []*corev1.Service, podNS string, e *envList) {
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	for _, s := range svcs {
		if s.Namespace != podNS && !(s.Namespace == "default" && s.Name == "kubernetes") {
			continue
		}
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		p := s.Spec.Ports[0]
		e.set(name+"_SERVICE_HOST", s.Spec.ClusterIP)
		e.set(name+"_SERVICE_PORT", strconv.Itoa(int(p.Port)))
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				e.set(name+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), strconv.Itoa(int(p.Port)))
			}
		}
	}
}

// fieldRef resolves the downward API fields the lab supports.
func fieldRef(pod *corev1.Pod, path string) (string, error) {
	join := func(ips []corev1.PodIP) string {
		var s []string
		for _, ip := range ips {
			s = append(s, ip.IP)
		}
		return strings.Join(s, ",")
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		return join(pod.Status.PodIPs), nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		var s []string
		for _, ip := range pod.Status.HostIPs {
			s = append(s, ip.IP)
		}
		return strings.Join(s, ","), nil
	}
	for _, m := range []struct {
		prefix string
		from   map[string]string
	}{{"metadata.labels['", pod.Labels}, {"metadata.annotations['", pod.Annotations}} {
		if strings.HasPrefix(path, m.prefix) && strings.HasSuffix(path, "']") {
			return m.from[strings.TrimSuffix(strings.TrimPrefix(path, m.prefix), "']")], nil
		}
	}
	if path == "metadata.labels" || path == "metadata.annotations" {
		src := pod.Labels
		if path == "metadata.annotations" {
			src = pod.Annotations
		}
		var keys []string
		for k := range src {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var lines []string
		for _, k := range keys {
			lines = append(lines, fmt.Sprintf("%s=%q", k, src[k]))
		}
		return strings.Join(lines, "\n"), nil
	}
	return "", fmt.Errorf("fieldRef %q is not supported by the lab", path)
}

// containerEnv builds a container's environment the way the kubelet does:
// service variables, then envFrom, then env, each able to refer to what
// came before with $(VAR).
func (w *worker) containerEnv(ctx context.Context, c *corev1.Container) ([]string, error) {
	pod := w.pod
	var e envList
	e.set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	e.set("HOSTNAME", pod.Name)
	serviceEnv(w.a.services(), pod.Namespace, &e)
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := w.a.cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("envFrom configMap %q: %w", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := w.a.cs.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if from.SecretRef.Optional != nil && *from.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %q: %w", from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			e.set(from.Prefix+k, data[k])
		}
	}
	for _, v := range c.Env {
		if v.ValueFrom == nil {
			e.set(v.Name, expand(v.Value, e.lookup))
			continue
		}
		val, err := w.valueFrom(ctx, v.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", v.Name, err)
		}
		e.set(v.Name, val)
	}
	return e.list(), nil
}

func (w *worker) valueFrom(ctx context.Context, src *corev1.EnvVarSource) (string, error) {
	pod := w.pod
	switch {
	case src.FieldRef != nil:
		return fieldRef(pod, src.FieldRef.FieldPath)
	case src.SecretKeyRef != nil:
		r := src.SecretKeyRef
		s, err := w.a.cs.CoreV1().Secrets(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := s.Data[r.Key]; ok {
				return string(v), nil
			}
			err = fmt.Errorf("secret %q has no key %q", r.Name, r.Key)
		}
		if r.Optional != nil && *r.Optional {
			return "", nil
		}
		return "", err
	case src.ConfigMapKeyRef != nil:
		r := src.ConfigMapKeyRef
		cm, err := w.a.cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := cm.Data[r.Key]; ok {
				return v, nil
			}
			err = fmt.Errorf("configMap %q has no key %q", r.Name, r.Key)
		}
		if r.Optional != nil && *r.Optional {
			return "", nil
		}
		return "", err
	case src.ResourceFieldRef != nil:
		// No resource accounting in the lab: report the node's capacity.
		switch src.ResourceFieldRef.Resource {
		case "limits.cpu", "requests.cpu":
			return "4", nil
		default:
			return "8589934592", nil
		}
	}
	return "", fmt.Errorf("unsupported valueFrom")
}
