// Package nodeagent is the lab's kubelet: it registers a Node, keeps its
// Lease and Ready condition fresh, and runs the Pods bound to it as local
// processes. Images are not pulled: each image name maps to a binary on the
// host (see Resolve). Pods that are not hostNetwork get a network namespace
// with a veth on the node's pod bridge; every container gets a mount
// namespace of its own where its volumes and service-account token appear
// at the paths the Pod asks for.
package nodeagent

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// PorticoImage is the repository of Portico's own image; its containers name
// the binary to run in command[0] (/controller, /speaker, /ingress).
const PorticoImage = "ghcr.io/portico-lb/portico"

// LabImages is the registry of the lab's own helper programs:
// lab.portico.dev/<name>:<tag> runs <repo>/bin/<name>.
const LabImages = "lab.portico.dev"

// Program is what a container runs once its image is resolved.
type Program struct {
	Argv []string
	// Nginx is set for nginx images: the agent generates a configuration
	// that behaves as the official image's default.
	Nginx bool
}

// ImageError says an image has no local stand-in; the Pod fails with it.
type ImageError struct{ Image, Why string }

func (e *ImageError) Error() string {
	return fmt.Sprintf("image %q cannot run in the lab: %s; the lab runs %s:*, %s/<name>:*, ingressconformance/echoserver:* and nginx:*", e.Image, e.Why, PorticoImage, LabImages)
}

// repository strips the tag or digest and Docker Hub's implicit prefixes,
// so "docker.io/library/nginx:1.27" becomes "nginx".
func repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	for _, p := range []string{"docker.io/", "index.docker.io/", "registry-1.docker.io/"} {
		image = strings.TrimPrefix(image, p)
	}
	return strings.TrimPrefix(image, "library/")
}

// Resolve maps a container's image, command and args to a local program.
// binDir is the repository's bin/ directory.
func Resolve(image string, command, args []string, binDir string) (Program, error) {
	repo := repository(image)
	withBinary := func(bin string) Program {
		argv := []string{bin}
		if len(command) > 1 {
			argv = append(argv, command[1:]...)
		}
		return Program{Argv: append(argv, args...)}
	}
	switch {
	case repo == PorticoImage:
		if len(command) == 0 {
			return Program{}, &ImageError{image, "a Portico container needs command: [\"/controller\"], [\"/speaker\"] or [\"/ingress\"]"}
		}
		name := path.Base(command[0])
		if name == "/" || name == "." {
			return Program{}, &ImageError{image, fmt.Sprintf("command %q names no binary", command[0])}
		}
		return withBinary(filepath.Join(binDir, name)), nil
	case strings.HasPrefix(repo, LabImages+"/"):
		name := strings.TrimPrefix(repo, LabImages+"/")
		if name == "" || strings.Contains(name, "/") {
			return Program{}, &ImageError{image, "want " + LabImages + "/<binary>"}
		}
		return withBinary(filepath.Join(binDir, name)), nil
	case strings.HasSuffix(repo, "ingressconformance/echoserver") ||
		strings.HasSuffix(repo, "/ingress-conformance-echo"):
		return Program{Argv: append([]string{filepath.Join(binDir, "echoserver")}, args...)}, nil
	case repo == "nginx" || strings.HasSuffix(repo, "/library/nginx"):
		if len(command) > 0 && path.Base(command[0]) != "nginx" {
			return Program{}, &ImageError{image, fmt.Sprintf("only nginx itself runs from the nginx image, not %q", command[0])}
		}
		return Program{Argv: []string{"/usr/sbin/nginx"}, Nginx: true}, nil
	}
	return Program{}, &ImageError{image, "no local binary for it"}
}
