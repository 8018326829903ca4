package policies

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
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

func isRegoFile(p string) bool { return strings.HasSuffix(p, ".rego") }

func bundleFile(p string) bool {
	b := path.Base(p)
	return isRegoFile(p) || b == BundleDataFile || b == BundleModuleFile
}

// LoadDir reads a bundle from dir: every *.rego file below it, and
// data.json and module.wasm at its root. Hidden files and directories
// (names starting with '.') are skipped.
//
// # Errors
// Unreadable files, an invalid data.json, or a directory without any
// .rego file or module.wasm.
func LoadDir(dir string) (*Bundle, error) {
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
		if !isRegoFile(rel) && rel != BundleDataFile && rel != BundleModuleFile {
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
	b := &Bundle{Version: BundleVersion(files), Files: files, Dir: dir}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("policies: load %s: %w", dir, err)
	}
	return b, nil
}

// Validate checks that the bundle has something to evaluate and that its
// data.json is a JSON object.
func (b *Bundle) Validate() error {
	hasPolicy := false
	for p := range b.Files {
		if (isRegoFile(p) && !IsTestFile(p)) || p == BundleModuleFile {
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
		if isRegoFile(p) {
			out[p] = s
		}
	}
	return out
}

// HasRego reports whether the bundle carries a Rego policy.
func (b *Bundle) HasRego() bool {
	for p := range b.Files {
		if isRegoFile(p) && !IsTestFile(p) {
			return true
		}
	}
	return false
}

// TestResult is the outcome of one Rego test rule.
type TestResult struct {
	Package  string        `json:"package"`
	Name     string        `json:"name"`
	File     string        `json:"file"`
	Row      int           `json:"row"`
	Pass     bool          `json:"pass"`
	Skip     bool          `json:"skip,omitempty"`
	Error    string        `json:"error,omitempty"`
	Output   string        `json:"output,omitempty"` // print() output
	Duration time.Duration `json:"duration"`
}

// String renders the result like `opa test -v`.
func (r TestResult) String() string {
	s := r.Package + "." + r.Name
	switch {
	case r.Skip:
		return s + ": SKIPPED"
	case r.Pass:
		return s + ": PASS (" + r.Duration.Round(time.Microsecond).String() + ")"
	case r.Error != "":
		return s + ": ERROR\n  " + r.Error
	default:
		return s + ": FAIL (" + r.Duration.Round(time.Microsecond).String() + ")"
	}
}

// TestBundle compiles the bundle's Rego with its tests and runs every
// test_ rule, like `opa test`. The bundle's data.json is the data document
// the tests see. Results are sorted by file then row.
//
// # Errors
// Parse or compile errors (the bundle is unusable); failing tests are
// reported in the results, not as an error. A bundle without Rego has no
// tests and returns no results.
func TestBundle(ctx context.Context, b *Bundle) ([]TestResult, error) {
	mods := map[string]*ast.Module{}
	for p, s := range b.Rego() {
		m, err := ast.ParseModuleWithOpts(p, s, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			return nil, err
		}
		mods[p] = m
	}
	if len(mods) == 0 {
		return nil, nil
	}
	doc, err := b.Data()
	if err != nil {
		return nil, err
	}
	if doc == nil {
		doc = map[string]any{}
	}
	store := inmem.NewFromObject(doc)
	compiler := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1).WithEnablePrintStatements(true)
	r := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(mods).
		CapturePrintOutput(true).
		SetTimeout(30 * time.Second).
		RaiseBuiltinErrors(true)
	ch, err := r.RunTests(ctx, nil)
	if err != nil {
		return nil, err
	}
	var out []TestResult
	for res := range ch {
		tr := TestResult{
			Package:  strings.TrimPrefix(res.Package, "data."),
			Name:     res.Name,
			Pass:     res.Pass(),
			Skip:     res.Skip,
			Output:   string(res.Output),
			Duration: res.Duration,
		}
		if res.Location != nil {
			tr.File, tr.Row = res.Location.File, res.Location.Row
		}
		if res.Error != nil {
			tr.Error = res.Error.Error()
			tr.Pass = false
		}
		out = append(out, tr)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Row < out[j].Row
	})
	return out, nil
}

// Failed counts the results that did not pass (skips excluded).
func Failed(rs []TestResult) int {
	n := 0
	for _, r := range rs {
		if !r.Pass && !r.Skip {
			n++
		}
	}
	return n
}
