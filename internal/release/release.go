// Package release reads upstream server release numbers ("0.17.4",
// "v0.17.4", "0.17.4-rc1", "0.17") and compares them: what the node agent
// and the simulators gate version-dependent behaviour on.
package release

import (
	"strconv"
	"strings"
)

// Number is major, minor, patch.
type Number [3]int

// Parse reads s; ok is false when s is not a release number.
func Parse(s string) (v Number, ok bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+ "); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) == 0 || len(parts) > 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

// AtLeast reports whether v is major.minor.patch or later.
func (v Number) AtLeast(major, minor, patch int) bool {
	o := Number{major, minor, patch}
	for i := range v {
		if v[i] != o[i] {
			return v[i] > o[i]
		}
	}
	return true
}
