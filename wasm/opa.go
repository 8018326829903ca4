package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing/fstest"

	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/compile"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// OPAEngine evaluates Rego compiled to Wasm through OPA's Wasm ABI (1.2+:
// the one-shot opa_eval export), hosted in wazero. Safe for concurrent use.
type OPAEngine struct {
	h       host
	version string
	ep      int32
	// derivedEP is the entrypoint of the policy's data-only rule
	// (policy.DerivedRule), -1 when the module has none.
	derivedEP int32
	// swapEP is the swap rule's entrypoint (policy.SwapEntrypoint), -1
	// when the policy has none.
	swapEP int32
	// direct: results are read straight out of guest memory (value.go);
	// false when the module's value layout did not check out, and then
	// the guest serialises them to JSON (opa_eval).
	direct bool
	// builtins maps the module's builtin ids to host implementations; set
	// while the first instance is created, read-only afterwards.
	builtins map[int32]hostBuiltin
	names    map[int32]string
	eps      map[string]int32
	metaDone bool
}

// CompileRego compiles Rego sources (file name → source; *_test.rego files
// are skipped) to an OPA Wasm module with the given entrypoint
// ("geniehive/decision" when empty), in process, and returns policy.wasm.
//
// # Errors
// Parse and compile errors as OPA reports them.
func CompileRego(ctx context.Context, files map[string]string, entrypoint string) ([]byte, error) {
	return compileRego(ctx, files, entrypoint, 0)
}

func compileRego(ctx context.Context, files map[string]string, entrypoint string, optLevel int) ([]byte, error) {
	if entrypoint == "" {
		entrypoint = DefaultEntrypoint
	}
	fsys := fstest.MapFS{}
	n := 0
	for name, src := range files {
		if !strings.HasSuffix(name, ".rego") || strings.HasSuffix(name, "_test.rego") {
			continue
		}
		fsys[path.Join("policy", path.Clean("/" + name)[1:])] = &fstest.MapFile{Data: []byte(src)}
		n++
	}
	if n == 0 {
		return nil, errors.New("wasm: no .rego sources")
	}
	eps := []string{entrypoint}
	if d := policy.DerivedPath(entrypoint); opa.DefinesRule(files, d) {
		eps = append(eps, d)
	}
	if entrypoint != policy.SwapEntrypoint && opa.DefinesRule(files, policy.SwapEntrypoint) {
		eps = append(eps, policy.SwapEntrypoint)
	}
	c := compile.New().
		WithTarget(compile.TargetWasm).
		WithEntrypoints(eps...).
		// Only the entrypoints are evaluated: without pruning OPA adds
		// every rule that depends on one as an extra entrypoint, which
		// fails when one of them is a function (as the per-request rules
		// reading the derived rule are).
		WithPruneUnused(true).
		WithRegoVersion(ast.RegoV1).
		WithFS(fsys).
		WithOptimizationLevel(optLevel).
		WithPaths("policy")
	if err := c.Build(ctx); err != nil {
		return nil, fmt.Errorf("wasm: compile rego: %w", err)
	}
	b := c.Bundle()
	if b == nil || len(b.WasmModules) == 0 {
		return nil, errors.New("wasm: compile produced no wasm module")
	}
	return b.WasmModules[0].Raw, nil
}

// NewOPA compiles Rego sources to Wasm and loads them. See CompileRego and
// NewOPAFromWasm.
func NewOPA(ctx context.Context, files map[string]string, opts Options) (*OPAEngine, error) {
	return newOPA(ctx, files, config{Options: opts})
}

func newOPA(ctx context.Context, files map[string]string, c config) (*OPAEngine, error) {
	bin, err := CompileRego(ctx, files, c.Entrypoint)
	if err != nil {
		return nil, err
	}
	if c.Version == "" {
		c.Version = hashFiles(files)
	}
	return newOPAFromWasm(ctx, bin, c)
}

func hashFiles(files map[string]string) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		io.WriteString(h, n)
		h.Write([]byte{0})
		io.WriteString(h, files[n])
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// NewOPAFromWasm loads an OPA-compiled policy.wasm (for example from a
// bundle built by `opa build -t wasm`).
//
// # Errors
// A module that is not OPA Wasm ABI 1.2+, lacks the entrypoint, needs a
// builtin this host does not implement, or needs more memory than allowed.
func NewOPAFromWasm(ctx context.Context, bin []byte, opts Options) (*OPAEngine, error) {
	return newOPAFromWasm(ctx, bin, config{Options: opts})
}

func newOPAFromWasm(ctx context.Context, bin []byte, c config) (*OPAEngine, error) {
	o := c.withDefaults(256)
	if o.Version == "" {
		s := sha256.Sum256(bin)
		o.Version = hex.EncodeToString(s[:8])
	}
	own, _, imports, err := ownMemory(bin, o.MaxMemoryPages)
	if err != nil {
		return nil, err
	}
	for _, f := range imports {
		if f.module != "env" || !knownOPAImport(f.name) {
			return nil, fmt.Errorf("wasm: policy imports unknown host function %s.%s", f.module, f.name)
		}
	}
	e := &OPAEngine{version: o.Version}
	if !o.noInstrument {
		inst, err := instrument(own, o.MaxCallDepth)
		if err != nil {
			return nil, fmt.Errorf("wasm: policy refused: it cannot be bounded in time and call depth: %w", err)
		}
		own = inst
	}
	rt := newRuntime(ctx, o, o.noInstrument)
	if err := e.instantiateEnv(ctx, rt, o); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	compiled, err := rt.CompileModule(ctx, own)
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("wasm: compile module: %w", err)
	}
	e.h.rt = rt
	e.h.compiled = compiled
	e.h.instrumented = !o.noInstrument
	e.h.init(o)
	e.h.newInstance = e.newInstance
	e.h.loadData = e.loadData
	e.h.prepare = e.prepareData
	if err := e.h.warm(ctx); err != nil {
		e.h.close()
		return nil, err
	}
	if e.derivedEP >= 0 {
		// The empty document's derived value, as SetData would.
		if err := e.h.publish(ctx, []byte("{}")); err != nil {
			e.h.close()
			return nil, err
		}
	}
	return e, nil
}

func knownOPAImport(name string) bool {
	switch name {
	case "opa_abort", "opa_println", "opa_builtin0", "opa_builtin1", "opa_builtin2", "opa_builtin3", "opa_builtin4":
		return true
	}
	return false
}

// instantiateEnv registers the host functions OPA modules import from "env".
// Host functions receive the calling instance, so one host module serves
// every instance in the runtime.
func (e *OPAEngine) instantiateEnv(ctx context.Context, rt wazero.Runtime, o config) error {
	i32 := api.ValueTypeI32
	b := rt.NewHostModuleBuilder("env")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) {
		panic(abortError{msg: cString(m.Memory(), uint32(s[0]))})
	}), []api.ValueType{i32}, nil).Export("opa_abort")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) {
		if o.Debug != nil {
			o.Debug.Write(append([]byte(cString(m.Memory(), uint32(s[0]))), '\n'))
		}
	}), []api.ValueType{i32}, nil).Export("opa_println")
	for n := 0; n <= 4; n++ {
		params := make([]api.ValueType, 2+n)
		for i := range params {
			params[i] = i32
		}
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) {
			s[0] = uint64(e.dispatch(ctx, m, int32(s[0]), s[2:2+n]))
		}), params, []api.ValueType{i32}).Export("opa_builtin" + strconv.Itoa(n))
	}
	_, err := b.Instantiate(ctx)
	return err
}

func cString(mem api.Memory, addr uint32) string {
	size := mem.Size()
	if addr >= size {
		return "(unreadable)"
	}
	b, _ := mem.Read(addr, size-addr)
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return "(unterminated)"
}

// call1 calls an exported function outside the hot path.
func call1(ctx context.Context, m api.Module, name string, args ...uint64) (uint32, error) {
	f := m.ExportedFunction(name)
	if f == nil {
		return 0, fmt.Errorf("wasm: module lacks export %q (not OPA Wasm ABI 1.2+?)", name)
	}
	r, err := f.Call(ctx, args...)
	if err != nil {
		return 0, classify(err, false)
	}
	if len(r) == 0 {
		return 0, nil
	}
	return uint32(r[0]), nil
}

// dumpJSON reads the value at addr as JSON (opa_json_dump).
func dumpJSON(ctx context.Context, m api.Module, addr uint32) ([]byte, error) {
	s, err := call1(ctx, m, "opa_json_dump", uint64(addr))
	if err != nil {
		return nil, err
	}
	return []byte(cString(m.Memory(), s)), nil
}

func (e *OPAEngine) newInstance(ctx context.Context) (*instance, error) {
	m, err := e.h.rt.InstantiateModule(ctx, e.h.compiled, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, fmt.Errorf("wasm: instantiate policy: %w", err)
	}
	in := &instance{mod: m, mem: m.Memory(), ectx: newEvalCtx()}
	fail := func(err error) (*instance, error) {
		in.close()
		return nil, err
	}
	if err := e.h.bindStop(in); err != nil {
		return fail(err)
	}
	major, minor := m.ExportedGlobal("opa_wasm_abi_version"), m.ExportedGlobal("opa_wasm_abi_minor_version")
	if major == nil || minor == nil || major.Get() != 1 || minor.Get() < 2 {
		return fail(errors.New("wasm: not an OPA Wasm ABI 1.2+ module"))
	}
	if in.fn = m.ExportedFunction("opa_eval"); in.fn == nil {
		return fail(errors.New("wasm: module lacks opa_eval"))
	}
	in.opa.bind(m)
	if !e.metaDone {
		if err := e.readMeta(ctx, m); err != nil {
			return fail(err)
		}
		e.direct = in.opa.complete() && verifyValueLayout(ctx, m, e.eps) == nil && !e.h.opts.noDirect
		e.metaDone = true
	}
	if in.heapBase, err = call1(ctx, m, "opa_heap_ptr_get"); err != nil {
		return fail(err)
	}
	return in, nil
}

// readMeta reads the entrypoint and builtin tables (once per engine).
func (e *OPAEngine) readMeta(ctx context.Context, m api.Module) error {
	readMap := func(fn string) (map[string]int32, error) {
		addr, err := call1(ctx, m, fn)
		if err != nil {
			return nil, err
		}
		js, err := dumpJSON(ctx, m, addr)
		if err != nil {
			return nil, err
		}
		out := map[string]int32{}
		if err := json.Unmarshal(js, &out); err != nil {
			return nil, fmt.Errorf("wasm: %s: %w", fn, err)
		}
		return out, nil
	}
	eps, err := readMap("entrypoints")
	if err != nil {
		return err
	}
	e.eps = eps
	id, ok := eps[e.h.opts.Entrypoint]
	if !ok {
		return fmt.Errorf("wasm: module has no entrypoint %q", e.h.opts.Entrypoint)
	}
	e.ep = id
	e.derivedEP = -1
	if id, ok := eps[policy.DerivedPath(e.h.opts.Entrypoint)]; ok {
		e.derivedEP = id
	}
	e.swapEP = -1
	if id, ok := eps[policy.SwapEntrypoint]; ok && policy.SwapEntrypoint != e.h.opts.Entrypoint {
		e.swapEP = id
	}
	bs, err := readMap("builtins")
	if err != nil {
		return err
	}
	e.builtins = map[int32]hostBuiltin{}
	e.names = map[int32]string{}
	var missing []string
	for name, id := range bs {
		f, ok := supportedBuiltin(name)
		if !ok {
			missing = append(missing, name)
			continue
		}
		e.builtins[id] = f
		e.names[id] = name
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("wasm: policy needs builtins the wasm host does not implement: %s (use the rego engine)", strings.Join(missing, ", "))
	}
	return nil
}

// loadData parses the data version (with data.derived, when the policy
// has a derived rule) into the instance.
func (e *OPAEngine) loadData(ctx context.Context, in *instance, d *dataDoc) error {
	return e.parseData(ctx, in, d.doc())
}

// prepareData completes a data version before it is published: when the
// policy has a derived rule, one instance evaluates it on the raw document
// and the version's full document gets the result under
// policy.DerivedKey (that instance keeps the full document loaded).
// Once per data version, never on the request path.
func (e *OPAEngine) prepareData(ctx context.Context, d *dataDoc) error {
	if e.derivedEP < 0 {
		return nil
	}
	in, err := e.h.take(ctx)
	if err != nil {
		return err
	}
	in.dataVer = 0 // holds neither version until the end
	sctx, cancel := e.h.setupCtx(ctx)
	defer cancel()
	err = e.parseData(sctx, in, d.json)
	var v []byte
	if err == nil {
		v, err = e.evalDerived(sctx, in)
	}
	if err == nil {
		d.full = withKey(d.json, policy.DerivedKey, v)
		err = e.parseData(sctx, in, d.full)
	}
	if err != nil {
		e.h.discard(in)
		return err
	}
	in.dataVer = d.ver
	e.h.checkin(in)
	return nil
}

// parseData resets the instance's heap and parses doc as its data.
func (e *OPAEngine) parseData(ctx context.Context, in *instance, doc []byte) error {
	m := in.mod
	if _, err := call1(ctx, m, "opa_heap_ptr_set", uint64(in.heapBase)); err != nil {
		return err
	}
	p, err := call1(ctx, m, "opa_malloc", uint64(len(doc)))
	if err != nil {
		return err
	}
	if !in.mem.Write(p, doc) {
		return policy.ErrMemory
	}
	addr, err := call1(ctx, m, "opa_json_parse", uint64(p), uint64(len(doc)))
	if err != nil {
		return err
	}
	if addr == 0 {
		return errors.New("wasm: data document failed to parse in the guest")
	}
	in.dataAddr = addr
	if in.evalHeap, err = call1(ctx, m, "opa_heap_ptr_get"); err != nil {
		return err
	}
	in.values.reset(in.evalHeap)
	return nil
}

// evalDerived evaluates the derived entrypoint on the instance's data with
// an empty input and returns its value as JSON (nil when undefined). It is
// bounded like an evaluation, with the setup deadline.
func (e *OPAEngine) evalDerived(ctx context.Context, in *instance) ([]byte, error) {
	const input = "{}"
	addr := in.evalHeap
	heap := (addr + uint32(len(input)) + 7) &^ 7
	if err := ensure(in.mem, heap); err != nil {
		return nil, err
	}
	in.mem.Write(addr, []byte(input))
	s := in.stack[:7]
	s[0], s[1], s[2], s[3], s[4], s[5], s[6] = 0, uint64(uint32(e.derivedEP)), uint64(in.dataAddr), uint64(addr), uint64(len(input)), uint64(heap), 0
	if err := e.h.callFor(ctx, in, in.fn, s, e.h.setupTimeout()); err != nil {
		return nil, fmt.Errorf("wasm: %s: %w", policy.DerivedPath(e.h.opts.Entrypoint), err)
	}
	res := cString(in.mem, uint32(s[0]))
	var rs []struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(res), &rs); err != nil {
		return nil, errors.Join(policy.ErrOutput, fmt.Errorf("wasm: %s: %w", policy.DerivedPath(e.h.opts.Entrypoint), err))
	}
	if len(rs) == 0 || len(rs[0].Result) == 0 {
		return nil, nil
	}
	return rs[0].Result, nil
}

// EvalSwap implements policy.SwapEvaluator: the swap rule evaluated on an
// instance from the pool, over the same data document as decisions, with
// the input as JSON, bounded like setup work (it runs off the request
// path, about once a second, on one edge).
//
// # Errors
// policy.ErrNoSwapRule when the module has no swap entrypoint; as Eval.
func (e *OPAEngine) EvalSwap(ctx context.Context, input *policy.SwapInput, out *policy.SwapDecision) error {
	if e.swapEP < 0 {
		return policy.ErrNoSwapRule
	}
	doc, err := json.Marshal(input)
	if err != nil {
		return err
	}
	in, err := e.h.checkout(ctx)
	if err != nil {
		return err
	}
	defer e.h.checkin(in)
	addr := in.evalHeap
	heap := (addr + uint32(len(doc)) + 7) &^ 7
	if err := ensure(in.mem, heap); err != nil {
		return err
	}
	in.mem.Write(addr, doc)
	s := in.stack[:7]
	s[0], s[1], s[2], s[3], s[4], s[5], s[6] = 0, uint64(uint32(e.swapEP)), uint64(in.dataAddr), uint64(addr), uint64(len(doc)), uint64(heap), 0
	if err := e.h.callFor(ctx, in, in.fn, s, e.h.setupTimeout()); err != nil {
		return fmt.Errorf("wasm: %s: %w", policy.SwapEntrypoint, err)
	}
	res := uint32(s[0])
	if res == 0 || res >= in.mem.Size() {
		return errors.Join(policy.ErrOutput, errors.New("wasm: swap: no result"))
	}
	var rs []struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(cString(in.mem, res)), &rs); err != nil {
		return errors.Join(policy.ErrOutput, fmt.Errorf("wasm: %s: %w", policy.SwapEntrypoint, err))
	}
	*out = policy.SwapDecision{}
	if len(rs) == 0 || len(rs[0].Result) == 0 {
		return nil // undefined: no actions
	}
	return policy.DecodeSwapDecision(rs[0].Result, out)
}

// withKey returns the JSON object doc with key set to the JSON value v
// (doc unchanged when v is nil). doc must not already hold key.
func withKey(doc []byte, key string, v []byte) []byte {
	doc = bytes.TrimSpace(doc)
	if v == nil || len(doc) < 2 || doc[len(doc)-1] != '}' {
		return doc
	}
	out := make([]byte, 0, len(doc)+len(key)+len(v)+4)
	out = append(out, doc[:len(doc)-1]...)
	if len(bytes.TrimSpace(doc[1:len(doc)-1])) > 0 {
		out = append(out, ',')
	}
	out = strconv.AppendQuote(out, key)
	out = append(out, ':')
	out = append(out, v...)
	return append(out, '}')
}

// Name implements policy.Engine.
func (e *OPAEngine) Name() string { return "wasm" }

// Version implements policy.Engine.
func (e *OPAEngine) Version() string { return e.version }

// SetData implements policy.Engine. Instances pick the new document up at
// their next checkout; evaluations in flight finish on the old one.
func (e *OPAEngine) SetData(ctx context.Context, d *policy.Data) error {
	return e.h.setData(ctx, d)
}

// Close implements policy.Engine: it waits for evaluations in flight,
// closes every instance and the runtime.
func (e *OPAEngine) Close() error { return e.h.close() }

// Eval implements policy.Engine.
//
// # Errors
// policy.ErrTimeout, policy.ErrMemory, policy.ErrEval, policy.ErrOutput (errors.Is), policy.ErrClosed, and the
// caller's context errors.
func (e *OPAEngine) Eval(ctx context.Context, input *policy.Input, out *policy.Decision) error {
	if !e.direct {
		return e.eval(ctx, input, out, parseOPAResult)
	}
	in, err := e.h.checkout(ctx)
	if err != nil {
		return err
	}
	defer e.h.checkin(in)
	addr, n, heap, err := writeInput(in, input)
	if err != nil {
		return err
	}
	if err := e.h.arm(ctx, in, e.h.opts.EvalTimeout); err != nil {
		return err
	}
	res, err := e.evalCtx(in, addr, n, heap)
	e.h.disarm(in)
	if err != nil {
		return err
	}
	view, _ := in.mem.Read(0, in.mem.Size())
	r := &in.reader
	*r = valueReader{mem: view, cache: &in.values}
	err = r.resultSet(res, out)
	r.mem = nil
	if errors.Is(err, errNeedJSON) {
		return e.dumpResult(ctx, in, res, out)
	}
	return err
}

// evalCtx evaluates the entrypoint through the ABI's eval context on the
// input JSON at addr (n bytes), with the heap starting at heap, and returns
// the address of the result set. Call it between arm and disarm.
func (e *OPAEngine) evalCtx(in *instance, addr, n, heap uint32) (uint32, error) {
	f := &in.opa
	s := in.stack[:2]
	s[0] = uint64(heap)
	if err := e.h.callArmed(in, f.heapPtrSet, s[:1]); err != nil {
		return 0, err
	}
	s[0], s[1] = uint64(addr), uint64(n)
	if err := e.h.callArmed(in, f.jsonParse, s[:2]); err != nil {
		return 0, err
	}
	inAddr := uint32(s[0])
	if inAddr == 0 {
		return 0, errors.Join(policy.ErrEval, errors.New("wasm: the guest could not parse the input"))
	}
	if err := e.h.callArmed(in, f.ctxNew, s[:1]); err != nil {
		return 0, err
	}
	ctxAddr := uint64(uint32(s[0]))
	for _, step := range [...]struct {
		fn  api.Function
		arg uint64
	}{{f.ctxSetInput, uint64(inAddr)}, {f.ctxSetData, uint64(in.dataAddr)}, {f.ctxSetEntrypoint, uint64(uint32(e.ep))}} {
		s[0], s[1] = ctxAddr, step.arg
		if err := e.h.callArmed(in, step.fn, s[:2]); err != nil {
			return 0, err
		}
	}
	s[0] = ctxAddr
	if err := e.h.callArmed(in, f.eval, s[:1]); err != nil {
		return 0, err
	}
	if rc := uint32(s[0]); rc != 0 {
		in.dead = true
		return 0, errors.Join(policy.ErrEval, fmt.Errorf("wasm: eval failed (code %d)", rc))
	}
	s[0] = ctxAddr
	if err := e.h.callArmed(in, f.ctxGetResult, s[:1]); err != nil {
		return 0, err
	}
	res := uint32(s[0])
	if res == 0 {
		return 0, errors.Join(policy.ErrOutput, errors.New("wasm: eval returned no result"))
	}
	return res, nil
}

// dumpResult decodes the result set at res through the guest's JSON
// serialisation (for values the memory decoder does not map).
func (e *OPAEngine) dumpResult(ctx context.Context, in *instance, res uint32, out *policy.Decision) error {
	if err := e.h.arm(ctx, in, e.h.opts.EvalTimeout); err != nil {
		return err
	}
	s := in.stack[:1]
	s[0] = uint64(res)
	err := e.h.callArmed(in, in.opa.jsonDump, s)
	e.h.disarm(in)
	if err != nil {
		return err
	}
	p := uint32(s[0])
	size := in.mem.Size()
	if p == 0 || p >= size {
		return errors.Join(policy.ErrOutput, errors.New("wasm: opa_json_dump returned nothing"))
	}
	view, _ := in.mem.Read(p, size-p)
	end := bytes.IndexByte(view, 0)
	if end < 0 {
		return errors.Join(policy.ErrOutput, errors.New("wasm: unterminated result"))
	}
	return parseOPAResult(view[:end], out)
}

// opaExports are the ABI functions evaluation through the eval context
// uses.
type opaExports struct {
	heapPtrSet, jsonParse, jsonDump, ctxNew, ctxSetInput, ctxSetData, ctxSetEntrypoint, eval, ctxGetResult api.Function
}

func (f *opaExports) bind(m api.Module) {
	f.heapPtrSet = m.ExportedFunction("opa_heap_ptr_set")
	f.jsonParse = m.ExportedFunction("opa_json_parse")
	f.jsonDump = m.ExportedFunction("opa_json_dump")
	f.ctxNew = m.ExportedFunction("opa_eval_ctx_new")
	f.ctxSetInput = m.ExportedFunction("opa_eval_ctx_set_input")
	f.ctxSetData = m.ExportedFunction("opa_eval_ctx_set_data")
	f.ctxSetEntrypoint = m.ExportedFunction("opa_eval_ctx_set_entrypoint")
	f.eval = m.ExportedFunction("eval")
	f.ctxGetResult = m.ExportedFunction("opa_eval_ctx_get_result")
}

func (f *opaExports) complete() bool {
	for _, fn := range []api.Function{f.heapPtrSet, f.jsonParse, f.jsonDump, f.ctxNew, f.ctxSetInput, f.ctxSetData, f.ctxSetEntrypoint, f.eval, f.ctxGetResult} {
		if fn == nil {
			return false
		}
	}
	return true
}

// valueCanary exercises every value type the decoder reads; opa_value_parse
// (Rego syntax: it has set literals) builds it in the guest.
const valueCanary = `{"n": null, "t": true, "f": false, "i": 12, "neg": -3, "x": 2.5, "e9": 1e9, "s": "a\"b\u00e9", "empty": "", "a": [1, "two", [], {}], "set": {"q"}, "o": {"k": {"z": 0}}}`

var valueCanaryWant = map[string]any{
	"n": nil, "t": true, "f": false, "i": 12.0, "neg": -3.0, "x": 2.5, "e9": 1e9,
	"s": "a\"b\u00e9", "empty": "", "a": []any{1.0, "two", []any{}, map[string]any{}},
	"set": []any{"q"}, "o": map[string]any{"k": map[string]any{"z": 0.0}},
}

// verifyValueLayout checks that value.go reads this module's values right:
// the entrypoints object (compiled code: interned strings, integer
// numbers) must match what its JSON said, and the canary (the guest's
// parser: every type, ref numbers, escapes, a set) must read back as
// built. Called once per engine, on its first instance.
func verifyValueLayout(ctx context.Context, m api.Module, eps map[string]int32) error {
	bad := errors.New("wasm: OPA value layout differs from what value.go reads")
	mem := m.Memory()
	addr, err := call1(ctx, m, "entrypoints")
	if err != nil {
		return err
	}
	view, _ := mem.Read(0, mem.Size())
	r := valueReader{mem: view}
	got := map[string]int32{}
	if err := r.expect(addr, opaObject); err != nil {
		return bad
	}
	err = r.object(addr, func(k, v uint32) error {
		kb, ok, err := r.key(k)
		if err != nil || !ok {
			return bad
		}
		n, err := r.int(v)
		got[string(kb)] = int32(n)
		return err
	})
	if err != nil || !reflect.DeepEqual(got, eps) {
		return bad
	}
	p, err := call1(ctx, m, "opa_malloc", uint64(len(valueCanary)))
	if err != nil {
		return err
	}
	if !mem.Write(p, []byte(valueCanary)) {
		return policy.ErrMemory
	}
	addr, err = call1(ctx, m, "opa_value_parse", uint64(p), uint64(len(valueCanary)))
	if err != nil || addr == 0 {
		return bad
	}
	view, _ = mem.Read(0, mem.Size())
	r = valueReader{mem: view}
	v, err := r.anyValue(addr, 0)
	if err != nil || !reflect.DeepEqual(v, any(valueCanaryWant)) {
		return bad
	}
	return nil
}

// writeInput writes the input document's JSON at the instance's evaluation
// heap mark; it returns where (addr, n bytes) and the 8-aligned heap pointer
// just past it, from which the evaluation allocates.
func writeInput(in *instance, input *policy.Input) (addr, n, heap uint32, err error) {
	in.buf = appendInput(in.buf[:0], input)
	addr = in.evalHeap
	n = uint32(len(in.buf))
	heap = (addr + n + 7) &^ 7
	if err := ensure(in.mem, heap); err != nil {
		return 0, 0, 0, err
	}
	in.mem.Write(addr, in.buf)
	return addr, n, heap, nil
}

func (e *OPAEngine) eval(ctx context.Context, input *policy.Input, out *policy.Decision, parse func([]byte, *policy.Decision) error) error {
	in, err := e.h.checkout(ctx)
	if err != nil {
		return err
	}
	defer e.h.checkin(in)
	addr, n, heap, err := writeInput(in, input)
	if err != nil {
		return err
	}
	s := in.stack[:7]
	s[0], s[1], s[2], s[3], s[4], s[5], s[6] = 0, uint64(uint32(e.ep)), uint64(in.dataAddr), uint64(addr), uint64(n), uint64(heap), 0
	if err := e.h.call(ctx, in, in.fn, s); err != nil {
		return err
	}
	res := uint32(s[0])
	size := in.mem.Size()
	if res == 0 || res >= size {
		return errors.Join(policy.ErrOutput, errors.New("wasm: opa_eval returned no result"))
	}
	view, _ := in.mem.Read(res, size-res)
	end := bytes.IndexByte(view, 0)
	if end < 0 {
		return errors.Join(policy.ErrOutput, errors.New("wasm: unterminated result"))
	}
	return parse(view[:end], out)
}

// hostBuiltin implements one OPA builtin for the Wasm host.
type hostBuiltin = topdown.BuiltinFunc

// supportedBuiltins are the builtins the host implements for policies (the
// rest are compiled into the Wasm module by OPA). Only deterministic,
// side-effect free ones belong here; extend as policies need.
var supportedBuiltins = map[string]bool{
	"sprintf":                  true,
	"format_int":               true,
	"strings.replace_n":        true,
	"object.union_n":           true,
	"strings.any_prefix_match": true,
	"strings.any_suffix_match": true,
	"json.patch":               true,
	"object.keys":              true,
}

func supportedBuiltin(name string) (hostBuiltin, bool) {
	if !supportedBuiltins[name] {
		return nil, false
	}
	f := topdown.GetBuiltin(name)
	return f, f != nil
}

// dispatch runs a host builtin: arguments are dumped from guest memory,
// evaluated with OPA's Go implementation and the result parsed back in.
// This is slow (microseconds); policies on the hot path should stick to
// builtins the Wasm module implements natively.
func (e *OPAEngine) dispatch(ctx context.Context, m api.Module, id int32, args []uint64) int32 {
	f := e.builtins[id]
	if f == nil {
		panic(abortError{msg: "unknown builtin id " + strconv.Itoa(int(id))})
	}
	terms := make([]*ast.Term, len(args))
	for i, a := range args {
		s, err := call1(ctx, m, "opa_value_dump", a)
		if err != nil {
			panic(abortError{msg: err.Error()})
		}
		t, err := ast.ParseTerm(cString(m.Memory(), s))
		if err != nil {
			panic(abortError{msg: e.names[id] + ": " + err.Error()})
		}
		terms[i] = t
	}
	var out *ast.Term
	bctx := topdown.BuiltinContext{Context: ctx}
	if err := f(bctx, terms, func(t *ast.Term) error { out = t; return nil }); err != nil {
		var halt topdown.Halt
		if errors.As(err, &halt) {
			panic(abortError{msg: e.names[id] + ": " + err.Error()})
		}
		return 0 // non-halt errors are undefined, as in OPA's wasm SDK
	}
	if out == nil {
		return 0
	}
	raw := out.String()
	p, err := call1(ctx, m, "opa_malloc", uint64(len(raw)))
	if err != nil {
		panic(abortError{msg: err.Error()})
	}
	m.Memory().Write(p, []byte(raw))
	v, err := call1(ctx, m, "opa_value_parse", uint64(p), uint64(len(raw)))
	if err != nil {
		panic(abortError{msg: err.Error()})
	}
	return int32(v)
}
