// Command image writes Portico's container image from binaries already
// built for each platform (make image builds them):
//
//	image --version V --out dist linux/amd64=DIR linux/arm64=DIR ...
//
// It writes dist/portico-image-<arch>.tar for each platform (Docker
// archives tagged ghcr.io/portico-lb/portico:V, for docker load and kind
// load image-archive), dist/portico-image.tar for the first platform, and
// dist/oci, an OCI layout with every platform under one index.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/portico-lb/portico/e2e/image"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run() error {
	version := flag.String("version", "dev", "the image's tag and version label")
	out := flag.String("out", "dist", "directory to write the archives and the OCI layout to")
	ca := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of trusted CAs to include (empty for none)")
	flag.Parse()
	if flag.NArg() == 0 {
		return fmt.Errorf("name at least one platform: OS/ARCH=DIR")
	}
	created := time.Unix(0, 0).UTC()
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", e, err)
		}
		created = time.Unix(sec, 0).UTC()
	}
	tag, err := name.NewTag(image.Repository + ":" + *version)
	if err != nil {
		return fmt.Errorf("version %q is not a valid tag: %w", *version, err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var imgs []v1.Image
	for i, arg := range flag.Args() {
		plat, dir, ok := strings.Cut(arg, "=")
		goos, arch, ok2 := strings.Cut(plat, "/")
		if !ok || !ok2 {
			return fmt.Errorf("%q: want OS/ARCH=DIR", arg)
		}
		img, err := image.Build(image.Spec{OS: goos, Arch: arch, Dir: dir, Version: *version, CABundle: *ca, Created: created})
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
		file := filepath.Join(*out, "portico-image-"+arch+".tar")
		if err := tarball.WriteToFile(file, tag, img); err != nil {
			return fmt.Errorf("writing %s: %w", file, err)
		}
		if i == 0 {
			if err := tarball.WriteToFile(filepath.Join(*out, "portico-image.tar"), tag, img); err != nil {
				return err
			}
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s %s/%s %s\n", file, goos, arch, d)
	}
	idx, err := image.Index(imgs)
	if err != nil {
		return err
	}
	oci := filepath.Join(*out, "oci")
	if err := os.RemoveAll(oci); err != nil {
		return err
	}
	lp, err := layout.Write(oci, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag.String()})); err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s index %s (%s)\n", oci, d, tag)
	return nil
}
