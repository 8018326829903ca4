package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/geniehive/geniehive/policy"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// ModuleEngine evaluates a custom Wasm policy module that speaks the
// JSON-in/JSON-out ABI in ABI.md (gh_alloc, gh_decide, optional
// gh_set_data). Safe for concurrent use.
type ModuleEngine struct {
	h       host
	version string
}

// NewModule loads a wasip1 module implementing the ABI in ABI.md.
//
// # Errors
// A module that the guest limiter cannot instrument (instrument.go), that
// does not compile, imports anything but
// wasi_snapshot_preview1, lacks gh_alloc / gh_decide / memory, or fails to
// initialise within the memory cap.
func NewModule(ctx context.Context, bin []byte, opts Options) (*ModuleEngine, error) {
	return newModule(ctx, bin, config{Options: opts})
}

func newModule(ctx context.Context, bin []byte, c config) (*ModuleEngine, error) {
	o := c.withDefaults(1024)
	if o.Version == "" {
		s := sha256.Sum256(bin)
		o.Version = hex.EncodeToString(s[:8])
	}
	e := &ModuleEngine{version: o.Version}
	if !o.noInstrument {
		inst, err := instrument(bin, o.MaxCallDepth)
		if err != nil {
			return nil, fmt.Errorf("wasm: module refused: every guest must be bounded in time and call depth, "+
				"and this one cannot be instrumented (only MVP Wasm with bulk memory, sign extension, "+
				"multi-value and tail calls is; build without SIMD, threads and exceptions): %w", err)
		}
		bin = inst
		e.h.instrumented = true
	}
	rt := newRuntime(ctx, o, !e.h.instrumented)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	compiled, err := rt.CompileModule(ctx, bin)
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("wasm: compile module: %w", err)
	}
	for _, f := range compiled.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasi_snapshot_preview1.ModuleName {
			rt.Close(ctx)
			return nil, fmt.Errorf("wasm: module imports %s.%s; only %s is provided", mod, name, wasi_snapshot_preview1.ModuleName)
		}
	}
	ex := compiled.ExportedFunctions()
	for _, name := range []string{"gh_alloc", "gh_decide"} {
		if ex[name] == nil {
			rt.Close(ctx)
			return nil, fmt.Errorf("wasm: module does not export %s (see wasm/ABI.md)", name)
		}
	}
	e.h.rt = rt
	e.h.compiled = compiled
	e.h.init(o)
	e.h.newInstance = e.newInstance
	e.h.loadData = e.loadData
	if err := e.h.warm(ctx); err != nil {
		e.h.close()
		return nil, err
	}
	return e, nil
}

func (e *ModuleEngine) newInstance(ctx context.Context) (*instance, error) {
	var out io.Writer = io.Discard
	if e.h.opts.Debug != nil {
		out = e.h.opts.Debug
	}
	cfg := wazero.NewModuleConfig().WithName("").
		WithStartFunctions().
		WithStdout(out).WithStderr(out).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	m, err := e.h.rt.InstantiateModule(ctx, e.h.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("wasm: instantiate module: %w", classify(err, false))
	}
	in := &instance{mod: m, mem: m.Memory(), ectx: newEvalCtx(),
		fn: m.ExportedFunction("gh_decide"), alloc: m.ExportedFunction("gh_alloc"), setData: m.ExportedFunction("gh_set_data")}
	if in.mem == nil {
		in.close()
		return nil, errors.New("wasm: module exports no memory")
	}
	if err := e.h.bindStop(in); err != nil {
		in.close()
		return nil, err
	}
	// Reactor initialisation (Go's c-shared runtime start), bounded like
	// any other guest call.
	if f := m.ExportedFunction("_initialize"); f != nil {
		if err := e.h.callFor(ctx, in, f, in.stack[:0], e.h.setupTimeout()); err != nil {
			in.close()
			return nil, fmt.Errorf("wasm: _initialize: %w", err)
		}
	}
	return in, nil
}

// guestAlloc asks the guest for n bytes.
func (e *ModuleEngine) guestAlloc(ctx context.Context, in *instance, n uint32) (uint32, error) {
	s := in.stack[:1]
	s[0] = uint64(n)
	if err := e.h.call(ctx, in, in.alloc, s); err != nil {
		return 0, err
	}
	p := uint32(s[0])
	if p == 0 && n > 0 {
		return 0, policy.ErrMemory
	}
	if uint64(p)+uint64(n) > uint64(in.mem.Size()) {
		return 0, errors.Join(policy.ErrOutput, errors.New("wasm: gh_alloc returned a buffer outside memory"))
	}
	return p, nil
}

func (e *ModuleEngine) loadData(ctx context.Context, in *instance, d *dataDoc) error {
	if in.setData == nil {
		return nil
	}
	in.inCap = 0 // gh_alloc invalidates earlier buffers
	p, err := e.guestAlloc(ctx, in, uint32(len(d.json)))
	if err != nil {
		return err
	}
	in.mem.Write(p, d.json)
	s := in.stack[:2]
	s[0], s[1] = uint64(p), uint64(len(d.json))
	if err := e.h.call(ctx, in, in.setData, s); err != nil {
		return err
	}
	if uint32(s[0]) != 0 {
		return fmt.Errorf("wasm: gh_set_data refused the data document (code %d)", uint32(s[0]))
	}
	return nil
}

// Name implements policy.Engine.
func (e *ModuleEngine) Name() string { return "module" }

// Version implements policy.Engine.
func (e *ModuleEngine) Version() string { return e.version }

// SetData implements policy.Engine (lazily, per instance, at checkout).
func (e *ModuleEngine) SetData(ctx context.Context, d *policy.Data) error {
	return e.h.setData(ctx, d)
}

// Close implements policy.Engine.
func (e *ModuleEngine) Close() error { return e.h.close() }

// Eval implements policy.Engine.
//
// # Errors
// policy.ErrTimeout, policy.ErrMemory, policy.ErrEval, policy.ErrOutput (errors.Is), policy.ErrClosed, and the
// caller's context errors.
func (e *ModuleEngine) Eval(ctx context.Context, input *policy.Input, out *policy.Decision) error {
	in, err := e.h.checkout(ctx)
	if err != nil {
		return err
	}
	defer e.h.checkin(in)
	in.buf = appendInput(in.buf[:0], input)
	n := uint32(len(in.buf))
	if n > in.inCap {
		c := max(n, 1024)
		c = (c + c/2 + 1023) &^ 1023
		p, err := e.guestAlloc(ctx, in, c)
		if err != nil {
			return err
		}
		in.inPtr, in.inCap = p, c
	}
	in.mem.Write(in.inPtr, in.buf)
	s := in.stack[:2]
	s[0], s[1] = uint64(in.inPtr), uint64(n)
	if err := e.h.call(ctx, in, in.fn, s); err != nil {
		return err
	}
	ptr, ln := uint32(s[0]>>32), uint32(s[0])
	if ptr == 0 && ln == 0 {
		return errors.Join(policy.ErrEval, errors.New("wasm: gh_decide reported failure"))
	}
	view, ok := in.mem.Read(ptr, ln)
	if !ok {
		return errors.Join(policy.ErrOutput, errors.New("wasm: gh_decide output outside memory"))
	}
	return parseDecision(view, out)
}

var (
	_ policy.Engine = (*ModuleEngine)(nil)
	_ policy.Engine = (*OPAEngine)(nil)
)
