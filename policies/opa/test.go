package opa

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/geniehive/geniehive/policy"
	"github.com/open-policy-agent/opa/ast"
	"github.com/open-policy-agent/opa/storage/inmem"
	"github.com/open-policy-agent/opa/tester"
	"github.com/open-policy-agent/opa/topdown"
)

// TestBundle compiles the bundle's Rego with its tests and runs every
// test_ rule, like `opa test`. The bundle's data.json is the data document
// the tests see. Results are sorted by file then row.
//
// # Errors
// Parse or compile errors (the bundle is unusable); failing tests are
// reported in the results, not as an error. A bundle without Rego has no
// tests and returns no results.
func TestBundle(ctx context.Context, b *policy.Bundle) ([]policy.TestResult, error) {
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
	var out []policy.TestResult
	for res := range ch {
		tr := policy.TestResult{
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
			if topdown.IsCancel(res.Error) || errors.Is(res.Error, context.DeadlineExceeded) || errors.Is(res.Error, context.Canceled) || ctx.Err() != nil {
				// Cut short (the runner's per-test timeout, a loaded
				// machine): says nothing about the bundle, so the reload
				// retries it instead of refusing it.
				return nil, fmt.Errorf("rego test %s cut short: %w: %w", res.Name, res.Error, policy.ErrTimeout)
			}
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
