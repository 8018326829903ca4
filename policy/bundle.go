package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Bundle is a set of policy files: Rego modules and their tests, an
// optional data.json merged under the data document's "bundle" key, and an
// optional module.wasm (a custom Wasm policy module).
type Bundle struct {
	// Version is the hex SHA-256 of the files (see BundleVersion).
	Version string
	// Files maps a slash-separated path relative to the bundle root to its
	// content.
	Files map[string]string
	// Dir is the directory it was loaded from ("" when not from disk).
	Dir string
}

// Bundle file names with a meaning.
const (
	BundleDataFile   = "data.json"
	BundleModuleFile = "module.wasm"
)

// BundleVersion is the hex SHA-256 over the sorted paths and contents.
func BundleVersion(files map[string]string) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%d:%s\x00%d:", len(n), n, len(files[n]))
		h.Write([]byte(files[n]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// NewBundle builds a bundle from files (e.g. a fleet.PolicyBundle's).
func NewBundle(files map[string]string) *Bundle {
	return &Bundle{Version: BundleVersion(files), Files: files}
}

// IsRegoFile reports whether p names a Rego source (tests included).
func IsRegoFile(p string) bool { return strings.HasSuffix(p, ".rego") }

// IsBundleFile reports whether p names a file a bundle carries: Rego,
// data.json or module.wasm.
func IsBundleFile(p string) bool {
	b := path.Base(p)
	return IsRegoFile(p) || b == BundleDataFile || b == BundleModuleFile
}

// Validate checks that the bundle has something to evaluate and that its
// data.json is a JSON object.
func (b *Bundle) Validate() error {
	hasPolicy := false
	for p := range b.Files {
		if (IsRegoFile(p) && !IsTestFile(p)) || p == BundleModuleFile {
			hasPolicy = true
		}
	}
	if !hasPolicy {
		return errors.New("bundle has no .rego policy and no module.wasm")
	}
	if _, err := b.Data(); err != nil {
		return err
	}
	return nil
}

// Data returns the bundle's data.json document (nil when absent).
func (b *Bundle) Data() (map[string]any, error) {
	s, ok := b.Files[BundleDataFile]
	if !ok {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("%s: %w", BundleDataFile, err)
	}
	return m, nil
}

// Rego returns the bundle's Rego files (tests included).
func (b *Bundle) Rego() map[string]string {
	out := map[string]string{}
	for p, s := range b.Files {
		if IsRegoFile(p) {
			out[p] = s
		}
	}
	return out
}

// HasRego reports whether the bundle carries a Rego policy.
func (b *Bundle) HasRego() bool {
	for p := range b.Files {
		if IsRegoFile(p) && !IsTestFile(p) {
			return true
		}
	}
	return false
}

// IsTestFile reports whether a Rego file name is a test file (*_test.rego).
func IsTestFile(name string) bool {
	return strings.HasSuffix(path.Base(name), "_test.rego")
}
