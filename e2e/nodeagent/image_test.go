package nodeagent

import (
	"errors"
	"reflect"
	"testing"
)

func TestResolve(t *testing.T) {
	for _, c := range []struct {
		image         string
		command, args []string
		want          []string
		nginx         bool
		err           bool
	}{
		{image: "ghcr.io/portico-lb/portico:v0.1.0", command: []string{"/speaker"}, args: []string{"--port=7946"},
			want: []string{"/r/bin/speaker", "--port=7946"}},
		{image: "ghcr.io/portico-lb/portico:dev", command: []string{"/controller", "-v"}, args: []string{"--x"},
			want: []string{"/r/bin/controller", "-v", "--x"}},
		{image: "ghcr.io/portico-lb/portico@sha256:abc", err: true},
		{image: "ingressconformance/echoserver:v0.0.1", args: []string{"-a"}, want: []string{"/r/bin/echoserver", "-a"}},
		{image: "gcr.io/k8s-staging-ingressconformance/echoserver:latest", want: []string{"/r/bin/echoserver"}},
		{image: "lab.portico.dev/kubecheck:dev", args: []string{"rbac"}, want: []string{"/r/bin/kubecheck", "rbac"}},
		{image: "nginx", want: []string{"/usr/sbin/nginx"}, nginx: true},
		{image: "docker.io/library/nginx:1.27", want: []string{"/usr/sbin/nginx"}, nginx: true},
		{image: "nginx:1.27", command: []string{"sh"}, err: true},
		{image: "busybox:1.36", err: true},
		{image: "localhost:5000/nginx", err: true},
	} {
		p, err := Resolve(c.image, c.command, c.args, "/r/bin")
		if c.err {
			var ie *ImageError
			if !errors.As(err, &ie) {
				t.Errorf("%s: err = %v, want ImageError", c.image, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.image, err)
			continue
		}
		if !reflect.DeepEqual(p.Argv, c.want) || p.Nginx != c.nginx {
			t.Errorf("%s: got %v nginx=%v, want %v nginx=%v", c.image, p.Argv, p.Nginx, c.want, c.nginx)
		}
	}
}
