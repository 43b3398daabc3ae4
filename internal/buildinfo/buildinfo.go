// Package buildinfo says which build of repoctl is running, from what the Go
// toolchain embedded in the binary (debug.ReadBuildInfo): the module version,
// the VCS revision and commit time, whether the work tree had uncommitted
// changes, and the Go version. Nothing is stamped in by a linker flag, so a
// plain `go build` in a clone and `go install …@version` both tell the truth.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info describes the running binary. Fields the toolchain did not record
// (a build with -buildvcs=false has no revision) are empty.
type Info struct {
	Module    string `json:"module"`
	Version   string `json:"version"` // "(devel)" when the toolchain knew none
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"` // commit time, RFC 3339
	Modified  bool   `json:"modified"`       // built from a tree with uncommitted changes
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.Module = bi.Main.Path
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one line `repoctl --version` prints, e.g.
// "repoctl v0.2.0 (revision 433cb41…, 2025-06-01T10:00:00Z) go1.26.8 linux/amd64".
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "repoctl %s", i.Version)
	var vcs []string
	if i.Revision != "" {
		vcs = append(vcs, "revision "+i.Revision)
	}
	if i.Time != "" {
		vcs = append(vcs, i.Time)
	}
	if i.Modified {
		vcs = append(vcs, "modified")
	}
	if len(vcs) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(vcs, ", "))
	}
	fmt.Fprintf(&b, " %s %s", i.GoVersion, i.Platform)
	return b.String()
}
