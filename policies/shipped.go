package policies

import (
	"embed"
	"io/fs"

	"github.com/geniehive/geniehive/policy"
)

//go:embed rego/*.rego
var shippedFS embed.FS

// ShippedFiles returns the shipped Rego policy and its tests, keyed
// "rego/<file>". Copy them into a bundle directory to extend them.
func ShippedFiles() map[string]string {
	out := map[string]string{}
	_ = fs.WalkDir(shippedFS, "rego", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := shippedFS.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = string(b)
		return nil
	})
	return out
}

// ShippedPolicy returns the shipped Rego without its tests.
func ShippedPolicy() map[string]string {
	out := map[string]string{}
	for p, s := range ShippedFiles() {
		if !policy.IsTestFile(p) {
			out[p] = s
		}
	}
	return out
}
