package image

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fakeBinaries writes a stand-in for each binary.
func fakeBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range Binaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\necho "+b+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// files lists an image's files: path → mode and owner, and contents.
func files(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			hdrs[strings.TrimSuffix(h.Name, "/")], data[strings.TrimSuffix(h.Name, "/")] = h, b
		}
		rc.Close()
	}
	return hdrs, data
}

// platforms lists an index's platforms, sorted.
func platforms(t *testing.T, idx v1.ImageIndex) []string {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range m.Manifests {
		out = append(out, d.Platform.String())
	}
	slices.Sort(out)
	return out
}

func TestBuild(t *testing.T) {
	dir := fakeBinaries(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	spec := Spec{OS: "linux", Arch: "arm64", Dir: dir, Version: "v1.2.3", CABundle: ca, Created: created}
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || !cf.Created.Equal(created) {
		t.Errorf("platform %s/%s created %v", cf.OS, cf.Architecture, cf.Created)
	}
	if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/controller"}) || cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("config %+v", cf.Config)
	}
	hdrs, data := files(t, img)
	for _, b := range Binaries {
		h := hdrs[b]
		if h == nil || h.Mode != 0o755 || h.Uid != 0 || string(data[b]) != "#!/bin/sh\necho "+b+"\n" {
			t.Errorf("/%s: %+v", b, h)
		}
	}
	if !strings.Contains(string(data["etc/passwd"]), "nonroot:x:65532:65532:") || !strings.Contains(string(data["etc/group"]), "nonroot:x:65532:") {
		t.Errorf("passwd %q, group %q", data["etc/passwd"], data["etc/group"])
	}
	if h := hdrs["home/nonroot"]; h == nil || h.Uid != NonRoot {
		t.Errorf("home/nonroot %+v", h)
	}
	if h := hdrs["tmp"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp %+v", h)
	}
	if string(data["etc/ssl/certs/ca-certificates.crt"]) != "-----BEGIN CERTIFICATE-----\n" {
		t.Errorf("CA bundle %q", data["etc/ssl/certs/ca-certificates.crt"])
	}

	// Reproducible: the same inputs give the same digest.
	again, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of the same inputs: %s and %s", d1, d2)
	}

	// A missing binary is a clear error.
	if err := os.Remove(filepath.Join(dir, "speaker")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(spec); err == nil || !strings.Contains(err.Error(), "binary speaker for linux/arm64") {
		t.Errorf("missing binary: %v", err)
	}
}

func TestIndex(t *testing.T) {
	dir := fakeBinaries(t)
	var imgs []v1.Image
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := Build(Spec{OS: "linux", Arch: arch, Dir: dir, Version: "v1"})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	idx, err := Index(imgs)
	if err != nil {
		t.Fatal(err)
	}
	if plats := platforms(t, idx); !slices.Equal(plats, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("index platforms %v", plats)
	}
}

// TestBuiltImage checks what make image wrote (make check builds it
// first): the Docker archive holds this machine's platform under the
// repository's tag, every binary in it runs and answers --version, and
// the OCI layout has amd64 and arm64.
func TestBuiltImage(t *testing.T) {
	dist := filepath.Join("..", "..", "dist")
	archive := filepath.Join(dist, "portico-image.tar")
	if _, err := os.Stat(archive); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v: make check runs make image before the tests", err)
		}
		t.Skipf("%v: run make image first", err)
	}
	mf, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil {
		t.Fatal(err)
	}
	if len(mf) != 1 || len(mf[0].RepoTags) != 1 || !strings.HasPrefix(mf[0].RepoTags[0], Repository+":") {
		t.Fatalf("%s holds %+v, want one image tagged %s:VERSION", archive, mf, Repository)
	}
	tag, err := name.NewTag(mf[0].RepoTags[0])
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != runtime.GOOS || cf.Architecture != runtime.GOARCH {
		t.Fatalf("%s is %s/%s, want this machine's %s/%s", archive, cf.OS, cf.Architecture, runtime.GOOS, runtime.GOARCH)
	}
	_, data := files(t, img)
	bin := t.TempDir()
	for _, b := range Binaries {
		p := filepath.Join(bin, b)
		if err := os.WriteFile(p, data[b], 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(p, "--version").CombinedOutput()
		want := "portico-" + b + " " + tag.TagStr()
		if b == "porticoctl" {
			want = "porticoctl " + tag.TagStr()
		}
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("/%s --version: %v: %q, want %q", b, err, out, want)
		}
	}

	lp, err := layout.FromPath(filepath.Join(dist, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != tag.String() {
		t.Fatalf("OCI layout index %+v, want one index named %s", tm.Manifests, tag)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if plats := platforms(t, idx); !slices.Equal(plats, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("OCI layout platforms %v, want linux/amd64 and linux/arm64", plats)
	}
}
