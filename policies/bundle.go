package policies

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/geniehive/geniehive/policy"
)

// LoadDir reads a bundle from dir: every *.rego file below it, and
// data.json and module.wasm at its root. Hidden files and directories
// (names starting with '.') are skipped.
//
// # Errors
// Unreadable files, an invalid data.json, or a directory without any
// .rego file or module.wasm.
func LoadDir(dir string) (*policy.Bundle, error) {
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !policy.IsRegoFile(rel) && rel != policy.BundleDataFile && rel != policy.BundleModuleFile {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policies: load %s: %w", dir, err)
	}
	b := &policy.Bundle{Version: policy.BundleVersion(files), Files: files, Dir: dir}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("policies: load %s: %w", dir, err)
	}
	return b, nil
}
