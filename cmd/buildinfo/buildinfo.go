// Package buildinfo says which build a Portico binary is, for --version.
package buildinfo

import "runtime/debug"

// Version is release, the version a binary's main package was linked with
// (make sets it with -ldflags "-X main.version=..."), or else the module
// version and VCS revision the Go toolchain recorded, and the Go version.
func Version(release string) string {
	if release != "" {
		return release
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v + " " + bi.GoVersion
}
