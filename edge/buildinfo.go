package edge

import (
	"runtime/debug"
	"sync"
)

// BuildVersion is this binary's build: the main module's version and, when
// the build recorded it, the VCS revision (12 digits, "+dirty" when the
// tree had changes), e.g. "(devel) 1a2b3c4d5e6f". Shown in the presence
// record (/v1/cluster/edges) and the console's Edges page.
var BuildVersion = sync.OnceValue(func() string {
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
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v
})
