package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// volumes materialises every volume of the Pod under dir/<name> and returns
// the host directory of each.
func (w *worker) volumes(ctx context.Context, dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range w.pod.Spec.Volumes {
		p := filepath.Join(dir, v.Name)
		if v.HostPath != nil {
			out[v.Name] = v.HostPath.Path
			continue
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
		out[v.Name] = p
		var err error
		switch {
		case v.EmptyDir != nil:
			err = os.Chmod(p, 0o777)
		case v.ConfigMap != nil:
			err = w.writeConfigMap(ctx, p, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, mode(v.ConfigMap.DefaultMode))
		case v.Secret != nil:
			err = w.writeSecret(ctx, p, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, mode(v.Secret.DefaultMode))
		case v.DownwardAPI != nil:
			err = w.writeDownward(p, v.DownwardAPI.Items, mode(v.DownwardAPI.DefaultMode))
		case v.Projected != nil:
			err = w.writeProjected(ctx, p, v.Projected)
		default:
			err = fmt.Errorf("volume type is not supported by the lab (emptyDir, configMap, secret, downwardAPI, projected, hostPath are)")
		}
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	return out, nil
}

func mode(m *int32) os.FileMode {
	if m == nil {
		return 0o644
	}
	return os.FileMode(*m)
}

func writeFile(dir, rel string, data []byte, m os.FileMode) error {
	p := filepath.Join(dir, filepath.Clean("/"+rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, m); err != nil {
		return err
	}
	return os.Chmod(p, m)
}

func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath, m os.FileMode) error {
	if len(items) == 0 {
		for k, v := range data {
			if err := writeFile(dir, k, v, m); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("no key %q", it.Key)
		}
		fm := m
		if it.Mode != nil {
			fm = os.FileMode(*it.Mode)
		}
		if err := writeFile(dir, it.Path, v, fm); err != nil {
			return err
		}
	}
	return nil
}

func (w *worker) writeConfigMap(ctx context.Context, dir, name string, items []corev1.KeyToPath, optional *bool, m os.FileMode) error {
	cm, err := w.a.cs.CoreV1().ConfigMaps(w.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return nil
		}
		return fmt.Errorf("configMap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return writeKeys(dir, data, items, m)
}

func (w *worker) writeSecret(ctx context.Context, dir, name string, items []corev1.KeyToPath, optional *bool, m os.FileMode) error {
	s, err := w.a.cs.CoreV1().Secrets(w.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return nil
		}
		return fmt.Errorf("secret %q: %w", name, err)
	}
	return writeKeys(dir, s.Data, items, m)
}

func (w *worker) writeDownward(dir string, items []corev1.DownwardAPIVolumeFile, m os.FileMode) error {
	for _, it := range items {
		if it.FieldRef == nil {
			return fmt.Errorf("downwardAPI %q: only fieldRef is supported", it.Path)
		}
		v, err := fieldRef(w.pod, it.FieldRef.FieldPath)
		if err != nil {
			return err
		}
		fm := m
		if it.Mode != nil {
			fm = os.FileMode(*it.Mode)
		}
		if err := writeFile(dir, it.Path, []byte(v), fm); err != nil {
			return err
		}
	}
	return nil
}

// writeProjected handles the volume the ServiceAccount admission plugin adds
// to every Pod (token, ca.crt, namespace) and any other projection.
func (w *worker) writeProjected(ctx context.Context, dir string, p *corev1.ProjectedVolumeSource) error {
	m := mode(p.DefaultMode)
	for _, s := range p.Sources {
		var err error
		switch {
		case s.ServiceAccountToken != nil:
			err = w.writeToken(ctx, dir, s.ServiceAccountToken, m)
		case s.ConfigMap != nil:
			err = w.writeConfigMap(ctx, dir, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, m)
		case s.Secret != nil:
			err = w.writeSecret(ctx, dir, s.Secret.Name, s.Secret.Items, s.Secret.Optional, m)
		case s.DownwardAPI != nil:
			err = w.writeDownward(dir, s.DownwardAPI.Items, m)
		default:
			err = fmt.Errorf("projection type is not supported by the lab")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeToken asks the API server for a token bound to this Pod, as the
// kubelet does. Tokens last at least an hour, longer than a lab run.
func (w *worker) writeToken(ctx context.Context, dir string, src *corev1.ServiceAccountTokenProjection, m os.FileMode) error {
	sa := w.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: w.pod.Name, UID: w.pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tr, err := w.a.cs.CoreV1().ServiceAccounts(w.pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for service account %q: %w", sa, err)
	}
	path := src.Path
	if strings.TrimSpace(path) == "" {
		path = "token"
	}
	return writeFile(dir, path, []byte(tr.Status.Token), m)
}

// mounts turns a container's volumeMounts into bind mounts.
func mounts(c *corev1.Container, vols map[string]string) ([]Mount, error) {
	var ms []Mount
	for _, vm := range c.VolumeMounts {
		src, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q names no volume", vm.Name)
		}
		if vm.SubPath != "" {
			src = filepath.Join(src, filepath.Clean("/"+vm.SubPath))
			if _, err := os.Stat(src); os.IsNotExist(err) {
				// The kubelet creates a missing subPath as a directory.
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
		}
		ms = append(ms, Mount{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	return ms, nil
}
