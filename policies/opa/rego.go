package opa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/policy"
	"github.com/open-policy-agent/opa/topdown"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// RegoOptions configure NewRego.
type RegoOptions struct {
	// Query is the decision query (default DecisionQuery).
	Query string
	// Version is reported by Engine.Version (default: the files' BundleVersion).
	Version string
	// EvalTimeout bounds one evaluation (ctx's deadline too, when
	// earlier); past it Eval returns policy.ErrTimeout. Default
	// policy.DefaultEvalTimeout (250ms), as for the Wasm engines.
	EvalTimeout time.Duration
	// MaxEvalAlloc bounds the bytes the process may allocate while one
	// evaluation runs (see guard.go for why the process's); past it Eval
	// returns policy.ErrMemory. Default DefaultMaxEvalAlloc. The derived
	// rule, evaluated once per data version, gets 16 times as much and
	// 20 times the timeout plus a second.
	MaxEvalAlloc uint64
}

// DefaultMaxEvalAlloc is RegoOptions.MaxEvalAlloc's default: 64 MiB, some
// thousand times what the shipped policy allocates per decision.
const DefaultMaxEvalAlloc = 64 << 20

func (o RegoOptions) withDefaults() RegoOptions {
	if o.Query == "" {
		o.Query = policy.DecisionQuery
	}
	if o.EvalTimeout <= 0 {
		o.EvalTimeout = policy.DefaultEvalTimeout
	}
	if o.MaxEvalAlloc == 0 {
		o.MaxEvalAlloc = DefaultMaxEvalAlloc
	}
	return o
}

// NewRego compiles the Rego files (path -> source; *_test.rego files are
// ignored) once and returns an engine that evaluates them through the OPA
// Go SDK. SetData prepares a new query against a fresh in-memory store
// holding the data document; Eval runs the prepared query with the request
// as input, bounded in time and allocation (RegoOptions, guard.go).
// Close stops the engine's guard goroutine.
//
// # Errors
// Parse and compile errors, naming file and line.
func NewRego(files map[string]string, opts RegoOptions) (policy.Engine, error) {
	opts = opts.withDefaults()
	if opts.Version == "" {
		opts.Version = policy.BundleVersion(files)
	}
	mods := map[string]string{}
	for p, s := range files {
		if policy.IsRegoFile(p) && !policy.IsTestFile(p) {
			mods[p] = s
		}
	}
	if len(mods) == 0 {
		return nil, errors.New("policies: no Rego files")
	}
	c, err := ast.CompileModulesWithOpt(mods, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
	if err != nil {
		return nil, fmt.Errorf("policies: compile: %w", err)
	}
	e := &regoEngine{compiler: c, query: opts.Query, version: opts.Version, opts: opts, guard: newGuard()}
	if ep, ok := queryPath(opts.Query); ok && DefinesRule(mods, policy.DerivedPath(ep)) {
		e.derived = "data." + strings.ReplaceAll(policy.DerivedPath(ep), "/", ".")
	}
	e.hasSwap = opts.Query != policy.SwapQuery && DefinesRule(mods, policy.SwapEntrypoint)
	if err := e.SetData(context.Background(), &policy.Data{SchemaVersion: policy.SchemaVersion}); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

type regoEngine struct {
	compiler *ast.Compiler
	query    string
	// derived is the query of the policy's data-only rule (see
	// DerivedRule), "" when it defines none.
	derived string
	// hasSwap: the policy defines the swap rule (policy.SwapQuery).
	hasSwap bool
	swapPQ  atomic.Pointer[rego.PreparedEvalQuery]
	version string
	opts    RegoOptions
	guard   *guard
	pq      atomic.Pointer[rego.PreparedEvalQuery]
	setMu   sync.Mutex
	// dataJSON is the data the current query was prepared with.
	dataJSON []byte
}

func (e *regoEngine) Name() string    { return "rego" }
func (e *regoEngine) Version() string { return e.version }
func (e *regoEngine) Close() error    { e.guard.close(); return nil }

// SetData prepares the query against d, unless d serialises exactly like
// the current data (snapshot versions change far more often than what
// policies see of them). The policy's derived rule, if any, is evaluated
// here, once per data version; an error leaves the current data in place.
func (e *regoEngine) SetData(ctx context.Context, d *policy.Data) error {
	if d == nil {
		d = &policy.Data{SchemaVersion: policy.SchemaVersion}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("policies: data: %w", err)
	}
	e.setMu.Lock()
	defer e.setMu.Unlock()
	if e.pq.Load() != nil && bytes.Equal(b, e.dataJSON) {
		return nil
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("policies: data: %w", err)
	}
	if e.derived != "" {
		v, err := e.evalDerived(ctx, doc)
		if err != nil {
			return err
		}
		if v != nil {
			doc[policy.DerivedKey] = v
		}
	}
	store := inmem.NewFromObjectWithOpts(doc, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.Query(e.query),
		rego.Compiler(e.compiler),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("policies: prepare: %w", err)
	}
	if e.hasSwap {
		spq, err := rego.New(rego.Query(policy.SwapQuery), rego.Compiler(e.compiler), rego.Store(store)).PrepareForEval(ctx)
		if err != nil {
			return fmt.Errorf("policies: prepare %s: %w", policy.SwapQuery, err)
		}
		e.swapPQ.Store(&spq)
	}
	e.pq.Store(&pq)
	e.dataJSON = b
	return nil
}

// EvalSwap implements policy.SwapEvaluator, bounded like the derived rule
// (it runs off the request path, about once a second, on one edge).
func (e *regoEngine) EvalSwap(ctx context.Context, in *policy.SwapInput, out *policy.SwapDecision) error {
	pq := e.swapPQ.Load()
	if !e.hasSwap || pq == nil {
		return policy.ErrNoSwapRule
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	g := e.guard.start(ctx, 20*e.opts.EvalTimeout+time.Second, 16*e.opts.MaxEvalAlloc)
	rs, err := pq.Eval(ctx, rego.EvalInput(doc), rego.EvalExternalCancel(g))
	e.guard.finish(g)
	if err != nil {
		return e.stopError(g, err)
	}
	*out = policy.SwapDecision{}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil
	}
	v, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		return errors.Join(policy.ErrOutput, err)
	}
	return policy.DecodeSwapDecision(v, out)
}

// evalDerived evaluates the policy's derived rule against doc (no input);
// nil when it is undefined.
func (e *regoEngine) evalDerived(ctx context.Context, doc map[string]any) (any, error) {
	store := inmem.NewFromObjectWithOpts(doc, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.Query(e.derived),
		rego.Compiler(e.compiler),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: %s: %w", e.derived, err)
	}
	g := e.guard.start(ctx, 20*e.opts.EvalTimeout+time.Second, 16*e.opts.MaxEvalAlloc)
	rs, err := pq.Eval(ctx, rego.EvalExternalCancel(g))
	e.guard.finish(g)
	if err != nil {
		return nil, fmt.Errorf("policies: %s: %w", e.derived, e.stopError(g, err))
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	return rs[0].Expressions[0].Value, nil
}

// queryPath turns a query that is a plain data reference
// ("data.geniehive.decision") into a slash path ("geniehive/decision").
func queryPath(q string) (string, bool) {
	r, err := ast.ParseRef(q)
	if err != nil || !r.HasPrefix(ast.DefaultRootRef) || !r.IsGround() || len(r) < 2 {
		return "", false
	}
	parts := make([]string, 0, len(r)-1)
	for _, t := range r[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			return "", false
		}
		parts = append(parts, string(s))
	}
	return strings.Join(parts, "/"), true
}

func (e *regoEngine) Eval(ctx context.Context, in *policy.Input, out *policy.Decision) error {
	pq := e.pq.Load()
	g := e.guard.start(ctx, policy.EvalBudget(ctx, e.opts.EvalTimeout), e.opts.MaxEvalAlloc)
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(InputValue(in)), rego.EvalExternalCancel(g))
	e.guard.finish(g)
	if err != nil {
		return e.stopError(g, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return &policy.Error{Code: policy.CodeOutput, Err: errors.New("opa: policy produced no decision (is data.geniehive.decision defined?)")}
	}
	return policy.DecodeDecision(rs[0].Expressions[0].Value, out)
}

// stopError types the error of an evaluation the guard may have stopped.
func (e *regoEngine) stopError(g *guarded, err error) error {
	switch g.reason.Load() {
	case stopTimeout:
		return &policy.Error{Code: policy.CodeTimeout, Err: fmt.Errorf("opa: evaluation ran past %v: %w", e.opts.EvalTimeout, err)}
	case stopMemory:
		return &policy.Error{Code: policy.CodeMemory, Err: fmt.Errorf("opa: evaluation allocated over %d MiB: %w", g.budget>>20, err)}
	case stopCanceled:
		if cerr := g.ctx.Err(); cerr != nil {
			return evalError(cerr)
		}
	}
	return evalError(err)
}

// evalError types an OPA evaluation error: OPA reports a deadline or a
// cancellation as a topdown.Error with CancelErr; anything else is a policy
// runtime error.
func evalError(err error) error {
	var te *topdown.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) && te.Code == topdown.CancelErr {
		return &policy.Error{Code: policy.CodeTimeout, Err: err}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &policy.Error{Code: policy.CodeEval, Err: err}
}

// InputValue converts in to an OPA value without a JSON round trip.
func InputValue(in *policy.Input) ast.Value {
	terms := make([][2]*ast.Term, 0, 12)
	add := func(k string, v *ast.Term) { terms = append(terms, [2]*ast.Term{ast.InternedTerm(k), v}) }
	add("schema_version", ast.InternedTerm(in.SchemaVersion))
	add("operation", ast.StringTerm(string(in.Operation)))
	if in.API != "" {
		add("api", ast.StringTerm(in.API))
	}
	add("model", ast.StringTerm(in.Model))
	add("model_key", ast.StringTerm(in.ModelKey))
	if in.Service != nil {
		add("service", ast.ObjectTerm(
			[2]*ast.Term{ast.InternedTerm("id"), ast.StringTerm(in.Service.ID)},
			[2]*ast.Term{ast.InternedTerm("kind"), ast.StringTerm(string(in.Service.Kind))}))
	}
	add("stream", ast.InternedTerm(in.Stream))
	add("max_tokens", ast.InternedTerm(in.MaxTokens))
	if in.Thinking != nil {
		add("thinking", ast.InternedTerm(*in.Thinking))
	}
	add("body_bytes", ast.InternedTerm(in.BodyBytes))
	key := [][2]*ast.Term{
		{ast.InternedTerm("id"), ast.StringTerm(in.Key.ID)},
		{ast.InternedTerm("scope"), ast.StringTerm(string(in.Key.Scope))},
	}
	if len(in.Key.Roles) > 0 {
		rs := make([]*ast.Term, len(in.Key.Roles))
		for i, r := range in.Key.Roles {
			rs[i] = ast.StringTerm(r)
		}
		key = append(key, [2]*ast.Term{ast.InternedTerm("roles"), ast.ArrayTerm(rs...)})
	}
	add("key", ast.ObjectTerm(key...))
	if len(in.Headers) > 0 {
		ks := make([]string, 0, len(in.Headers))
		for k := range in.Headers {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		hs := make([][2]*ast.Term, len(ks))
		for i, k := range ks {
			hs[i] = [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(in.Headers[k])}
		}
		add("headers", ast.ObjectTerm(hs...))
	}
	if len(in.Body) > 0 {
		if v, err := ast.ValueFromReader(bytes.NewReader(in.Body)); err == nil {
			add("body", ast.NewTerm(v))
		}
	}
	return ast.NewObject(terms...)
}
