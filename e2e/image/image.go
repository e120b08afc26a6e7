// Package image builds Portico's container image from binaries compiled in
// the tree, with no Docker daemon and no registry: one layer holding the
// static binaries, the passwd and group entries of the non-root user the
// controller and the ingress run as, and a CA bundle for TLS to backends
// and authentication services. The result is written as a Docker archive
// (what `docker load` and `kind load image-archive` read) and as an OCI
// layout holding every platform under one index.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Repository is the image's name; the manifests refer to it.
const Repository = "ghcr.io/portico-lb/portico"

// NonRoot is the user and group the controller and the ingress run as, as
// distroless's "nonroot"; the speaker's manifest asks for root with only
// NET_RAW.
const NonRoot = 65532

// Binaries are the programs the image holds, each at /<name>.
var Binaries = []string{"controller", "speaker", "ingress", "porticoctl"}

// Spec is what one platform's image is made of.
type Spec struct {
	// OS and Arch are the platform, as GOOS and GOARCH.
	OS, Arch string
	// Dir holds the binaries, built for the platform.
	Dir string
	// Version labels the image (org.opencontainers.image.version).
	Version string
	// CABundle is a PEM file copied to /etc/ssl/certs/ca-certificates.crt;
	// empty leaves it out.
	CABundle string
	// Created is the time recorded in the image and on its files; a fixed
	// one (the commit's) makes the build reproducible.
	Created time.Time
}

// Build makes one platform's image.
func Build(s Spec) (v1.Image, error) {
	layer, err := rootLayer(s)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = s.OS, s.Arch
	cf.Created = v1.Time{Time: s.Created}
	cf.Config.User = fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	cf.Config.Entrypoint = []string{"/controller"}
	cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "portico",
		"org.opencontainers.image.source":  "https://github.com/portico-lb/portico",
		"org.opencontainers.image.version": s.Version,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, v1.Time{Time: s.Created})
}

// Index puts each platform's image under one OCI index.
func Index(imgs []v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
			},
		})
	}
	return idx, nil
}

// rootLayer is the image's one layer.
func rootLayer(s Spec) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, uid, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: int(uid), Gid: int(uid), ModTime: s.Created, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: s.Created, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "home"} {
		if err := dir(d, 0, 0o755); err != nil {
			return nil, err
		}
	}
	if err := dir("home/nonroot", NonRoot, 0o700); err != nil {
		return nil, err
	}
	if err := dir("tmp", 0, 0o1777); err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot)
	if err := file("etc/passwd", 0o644, []byte(passwd)); err != nil {
		return nil, err
	}
	if err := file("etc/group", 0o644, []byte(group)); err != nil {
		return nil, err
	}
	if s.CABundle != "" {
		pem, err := os.ReadFile(s.CABundle)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		if err := file("etc/ssl/certs/ca-certificates.crt", 0o644, pem); err != nil {
			return nil, err
		}
	}
	for _, b := range slices.Sorted(slices.Values(Binaries)) {
		data, err := os.ReadFile(path.Join(s.Dir, b))
		if err != nil {
			return nil, fmt.Errorf("binary %s for %s/%s: %w (build it with GOOS=%s GOARCH=%s first)", b, s.OS, s.Arch, err, s.OS, s.Arch)
		}
		if err := file(b, 0o755, data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
