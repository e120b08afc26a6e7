package nodeagent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestEnsureMountpoint(t *testing.T) {
	root := t.TempDir()
	dirSrc := t.TempDir()
	fileSrc := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(fileSrc, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory mount creates every missing level and reports each.
	target := filepath.Join(root, "a", "b")
	created, err := ensureMountpoint(Mount{Source: dirSrc, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(root, "a"), target}; !reflect.DeepEqual(created, want) {
		t.Errorf("created %v, want %v", created, want)
	}
	// A file mount creates an empty file to mount on.
	ftarget := filepath.Join(root, "a", "c.txt")
	created, err = ensureMountpoint(Mount{Source: fileSrc, Target: ftarget})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{ftarget}; !reflect.DeepEqual(created, want) {
		t.Errorf("created %v, want %v", created, want)
	}
	if st, err := os.Stat(ftarget); err != nil || st.IsDir() || st.Size() != 0 {
		t.Errorf("file mount point: %v, %v", st, err)
	}
	// What exists is left alone and not reported.
	if created, err := ensureMountpoint(Mount{Source: dirSrc, Target: target}); err != nil || created != nil {
		t.Errorf("existing target: created %v, %v", created, err)
	}
}
