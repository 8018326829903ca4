package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/policy"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// Options configure both engines. The zero value is usable; each field
// documents its default.
type Options struct {
	// PoolSize bounds the number of live instances (and so concurrent
	// evaluations). Default GOMAXPROCS*2.
	PoolSize int
	// EvalTimeout bounds one evaluation. A guest still running at the
	// deadline is cut off, Eval returns policy.ErrTimeout and the instance is
	// discarded. Default policy.DefaultEvalTimeout (250ms).
	EvalTimeout time.Duration
	// MaxMemoryPages caps each instance's linear memory, in 64 KiB pages.
	// Default 256 (16 MiB) for OPA policies and 1024 (64 MiB) for custom
	// modules (Go guests reserve a larger heap).
	MaxMemoryPages uint32
	// MaxCallDepth caps the guest's call depth (in Wasm frames; checked
	// every fuelPeriod calls, so a guest may overshoot it by up to 4096
	// frames, see instrument.go). A guest past it traps and Eval returns
	// policy.ErrMemory. Default DefaultMaxCallDepth.
	MaxCallDepth uint32
	// Cache, when set, is a wazero compilation cache shared across engines
	// (reloads of the same policy then skip native compilation).
	Cache wazero.CompilationCache
	// Version overrides Version(); default a hash of the module.
	Version string
	// Entrypoint is the OPA entrypoint (OPA engine only). Default
	// "geniehive/decision".
	Entrypoint string
	// Debug receives opa_println / guest stdout and stderr. Default discard.
	Debug interface{ Write([]byte) (int, error) }
}

// config is Options plus the knobs only this package's tests and
// benchmarks turn (they are not part of the public Options).
type config struct {
	Options
	// noInstrument forces wazero's WithCloseOnContextDone path: loops only
	// are checked and the call depth is bounded by wazero's stack ceiling
	// alone, so production never runs it.
	noInstrument bool
	// noDirect makes the OPA engine read results through the guest's JSON
	// serialisation (opa_eval) instead of straight from memory.
	noDirect bool
}

// DefaultMaxCallDepth is Options.MaxCallDepth's default: far above what
// OPA's runtime needs for the deepest input the edge accepts (256 levels
// of JSON nesting, a few frames each) or a Go guest's ordinary calls, and
// a stack of a few MiB at most, where wazero alone lets a guest recurse
// millions of frames deep (~100 MiB of stack per instance).
const DefaultMaxCallDepth = 10000

// DefaultEntrypoint is the shipped policies' entrypoint (data.geniehive.decision).
const DefaultEntrypoint = "geniehive/decision"

func (o config) withDefaults(defPages uint32) config {
	if o.PoolSize <= 0 {
		o.PoolSize = runtime.GOMAXPROCS(0) * 2
	}
	if o.EvalTimeout <= 0 {
		o.EvalTimeout = policy.DefaultEvalTimeout
	}
	if o.MaxMemoryPages == 0 {
		o.MaxMemoryPages = defPages
	}
	if o.MaxMemoryPages > 65536 {
		o.MaxMemoryPages = 65536
	}
	if o.Entrypoint == "" {
		o.Entrypoint = DefaultEntrypoint
	}
	if o.MaxCallDepth == 0 {
		o.MaxCallDepth = DefaultMaxCallDepth
	}
	if o.MaxCallDepth > 1<<30 {
		o.MaxCallDepth = 1 << 30
	}
	return o
}

// dataDoc is one version of the data document, serialised once.
type dataDoc struct {
	ver  uint64
	json []byte
	// full, when set, is what instances load: json with what the engine
	// derived from it (an OPA policy's derived rule), computed once per
	// version before the version is published.
	full []byte
}

// doc is what instances load.
func (d *dataDoc) doc() []byte {
	if d.full != nil {
		return d.full
	}
	return d.json
}

// evalCtx is a reusable per-instance context carrying the evaluation
// deadline. wazero's WithCloseOnContextDone watches Done(); the channel is
// closed at most once per instance life because an instance whose timer
// fired is discarded. This avoids a context.WithTimeout (and its timer)
// allocation per evaluation.
type evalCtx struct {
	parent   context.Context
	deadline time.Time
	done     chan struct{}
	fired    atomic.Bool
	timer    *time.Timer
	// stop is the instrumented module's gh_stop global (nil when the
	// runtime relies on WithCloseOnContextDone). The host writes it from
	// the timer and reads it after a trap, under stopMu.
	stop   api.MutableGlobal
	stopMu sync.Mutex
}

// stopReason reads gh_stop after a trap: stopDepth when the guest passed
// its call-depth cap.
func (c *evalCtx) stopReason() uint64 {
	if c.stop == nil {
		return 0
	}
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	return c.stop.Get()
}

func newEvalCtx() *evalCtx {
	c := &evalCtx{done: make(chan struct{}), parent: context.Background()}
	c.timer = time.AfterFunc(time.Hour, func() {
		c.fired.Store(true)
		if c.stop != nil {
			c.stopMu.Lock()
			if c.stop.Get() == 0 {
				c.stop.Set(1)
			}
			c.stopMu.Unlock()
		}
		close(c.done)
	})
	c.timer.Stop()
	return c
}

func (c *evalCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *evalCtx) Done() <-chan struct{}       { return c.done }
func (c *evalCtx) Err() error {
	if c.fired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}
func (c *evalCtx) Value(k any) any { return c.parent.Value(k) }

// instance is one live module instance with its per-instance state. It is
// owned by exactly one goroutine between checkout and checkin.
type instance struct {
	mod     api.Module
	mem     api.Memory
	fn      api.Function // the per-evaluation export (opa_eval, gh_decide)
	ectx    *evalCtx
	dataVer uint64
	dead    bool
	owned   atomic.Bool // invariant check: one owner between checkout and checkin
	stack   [8]uint64
	buf     []byte // input JSON, reused

	// OPA ABI
	heapBase, dataAddr, evalHeap uint32
	// custom ABI
	alloc, setData api.Function
	inPtr, inCap   uint32 // the guest buffer input is written to (gh_alloc)

	// OPA ABI, evaluation through the eval context (value.go)
	opa    opaExports
	values valueCache
	reader valueReader
}

func (in *instance) close() {
	in.ectx.timer.Stop()
	_ = in.mod.Close(context.Background())
}

// host is the machinery both engines share: one runtime, one compiled
// module, a bounded pool of instances, the data document and the timeout.
//
// The pool is a channel of PoolSize slots; a slot holds a live instance or
// nil (create on checkout). Instances are created lazily, discarded (closed,
// slot returned as nil) after a timeout or trap, and closed by Close.
type host struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	opts     config
	// instrumented: function entries and loops check gh_stop and the call
	// depth (instrument.go) instead of wazero's WithCloseOnContextDone
	// (tests only).
	instrumented bool
	pool         chan *instance
	done         chan struct{}
	closed       atomic.Bool
	once         sync.Once
	data         atomic.Pointer[dataDoc]
	dataSeq      atomic.Uint64
	setMu        sync.Mutex // serialises data versions

	newInstance func(ctx context.Context) (*instance, error)
	loadData    func(ctx context.Context, in *instance, d *dataDoc) error
	// prepare (optional) completes a data version before it is published
	// (dataDoc.full); an error refuses the version.
	prepare func(ctx context.Context, d *dataDoc) error
	// refreshing tracks background refreshes; refreshes counts their data
	// loads (tests).
	refreshing sync.WaitGroup
	refreshes  atomic.Int64
}

// newRuntime configures the runtime. closeOnDone selects wazero's own
// termination (a Go call per loop iteration) for modules that could not be
// instrumented (see instrument.go).
func newRuntime(ctx context.Context, o config, closeOnDone bool) wazero.Runtime {
	cfg := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(closeOnDone).
		WithMemoryLimitPages(o.MaxMemoryPages)
	if o.Cache != nil {
		cfg = cfg.WithCompilationCache(o.Cache)
	}
	return wazero.NewRuntimeWithConfig(ctx, cfg)
}

func (h *host) init(o config) {
	h.opts = o
	h.pool = make(chan *instance, o.PoolSize)
	h.done = make(chan struct{})
	for i := 0; i < o.PoolSize; i++ {
		h.pool <- nil
	}
	h.data.Store(&dataDoc{ver: h.dataSeq.Add(1), json: []byte("{}")})
}

// warm creates one instance eagerly so that load errors surface at
// construction, and returns it to the pool.
func (h *host) warm(ctx context.Context) error {
	in, err := h.checkout(ctx)
	if err != nil {
		return err
	}
	h.checkin(in)
	return nil
}

// setData installs a new data version unless d serialises exactly like
// the current one (snapshots change far more often than what policies see
// of them). The version is completed (prepare) before it is published,
// and idle instances load it in the background (refresh); an instance
// that is busy loads it at its next checkout.
func (h *host) setData(ctx context.Context, d *policy.Data) error {
	b := []byte("{}")
	if d != nil {
		var err error
		if b, err = json.Marshal(d); err != nil {
			return err
		}
	}
	h.setMu.Lock()
	defer h.setMu.Unlock()
	if cur := h.data.Load(); cur != nil && bytes.Equal(cur.json, b) {
		return nil
	}
	return h.publishLocked(ctx, b)
}

// publish installs b as a new data version, even when it is unchanged.
func (h *host) publish(ctx context.Context, b []byte) error {
	h.setMu.Lock()
	defer h.setMu.Unlock()
	return h.publishLocked(ctx, b)
}

func (h *host) publishLocked(ctx context.Context, b []byte) error {
	if h.closed.Load() {
		return policy.ErrClosed
	}
	doc := &dataDoc{ver: h.dataSeq.Add(1), json: b}
	if h.prepare != nil {
		if err := h.prepare(ctx, doc); err != nil {
			return err
		}
	}
	h.data.Store(doc)
	h.refreshing.Add(1)
	go func() {
		defer h.refreshing.Done()
		h.refresh()
	}()
	return nil
}

// refresh brings idle instances to the current data version, off the
// request path. Best effort: it stops at the first empty pool receive.
func (h *host) refresh() {
	for i := 0; i < h.opts.PoolSize; i++ {
		var in *instance
		select {
		case in = <-h.pool:
		default:
			return
		}
		if in == nil || h.closed.Load() || in.dataVer == h.data.Load().ver {
			h.pool <- in
			continue
		}
		if in.owned.Swap(true) {
			panic("wasm: instance checked out twice")
		}
		if err := h.sync(context.Background(), in); err != nil {
			h.discard(in)
			continue
		}
		h.refreshes.Add(1)
		h.checkin(in)
	}
}

// setupCtx bounds non-hot-path guest calls (instantiation, data loading).
func (h *host) setupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), h.setupTimeout())
}

// bindStop wires the instance's gh_stop global (instrumented modules).
func (h *host) bindStop(in *instance) error {
	if !h.instrumented {
		return nil
	}
	g, ok := in.mod.ExportedGlobal(stopExport).(api.MutableGlobal)
	if !ok {
		return errors.New("wasm: instrumented module lacks " + stopExport)
	}
	in.ectx.stop = g
	return nil
}

// checkout takes an instance from the pool, creating it and (re)loading
// the current data version as needed.
func (h *host) checkout(ctx context.Context) (*instance, error) {
	in, err := h.take(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.sync(ctx, in); err != nil {
		h.discard(in)
		return nil, err
	}
	return in, nil
}

// take takes an instance from the pool (creating it when the slot is
// empty) without touching its data.
func (h *host) take(ctx context.Context) (*instance, error) {
	var in *instance
	select {
	case in = <-h.pool:
	case <-h.done:
		return nil, policy.ErrClosed
	case <-ctx.Done():
		// Every instance stayed busy until the caller's deadline: the
		// evaluation never started.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &policy.Error{Code: policy.CodeBusy, Err: ctx.Err()}
		}
		return nil, ctx.Err()
	}
	if h.closed.Load() {
		h.pool <- in
		return nil, policy.ErrClosed
	}
	if in == nil {
		sctx, cancel := h.setupCtx(ctx)
		var err error
		in, err = h.newInstance(sctx)
		cancel()
		if err != nil {
			h.pool <- nil
			return nil, err
		}
	}
	if in.owned.Swap(true) {
		panic("wasm: instance checked out twice")
	}
	return in, nil
}

// sync loads the current data version into in when it has another.
func (h *host) sync(ctx context.Context, in *instance) error {
	d := h.data.Load()
	if d.ver == in.dataVer {
		return nil
	}
	sctx, cancel := h.setupCtx(ctx)
	err := h.loadData(sctx, in, d)
	cancel()
	if err != nil {
		return err
	}
	in.dataVer = d.ver
	return nil
}

func (h *host) checkin(in *instance) {
	if !in.owned.Swap(false) {
		panic("wasm: instance checked in without checkout")
	}
	if in.dead {
		h.discard(in)
		return
	}
	h.pool <- in
}

func (h *host) discard(in *instance) {
	in.close()
	h.pool <- nil
}

// call runs fn on the instance under the evaluation deadline. On a timeout
// or trap the instance is marked dead (checkin discards it).
func (h *host) call(ctx context.Context, in *instance, fn api.Function, stack []uint64) error {
	return h.callFor(ctx, in, fn, stack, h.opts.EvalTimeout)
}

// setupTimeout bounds guest calls outside evaluation (initialisation, data).
func (h *host) setupTimeout() time.Duration { return 20*h.opts.EvalTimeout + time.Second }

func (h *host) callFor(ctx context.Context, in *instance, fn api.Function, stack []uint64, d time.Duration) error {
	if err := h.arm(ctx, in, d); err != nil {
		return err
	}
	err := h.callArmed(in, fn, stack)
	h.disarm(in)
	return err
}

// arm starts in's deadline, d or ctx's if earlier, for one or more guest
// calls (callArmed); disarm ends it.
func (h *host) arm(ctx context.Context, in *instance, d time.Duration) error {
	d = policy.EvalBudget(ctx, d) // ctx's deadline when earlier, or a preparation's budget
	if d <= 0 || ctx.Err() != nil {
		if err := ctx.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return policy.ErrTimeout
	}
	ec := in.ectx
	ec.parent = ctx
	ec.deadline = time.Now().Add(d)
	ec.timer.Reset(d)
	return nil
}

func (h *host) disarm(in *instance) {
	ec := in.ectx
	if !ec.timer.Stop() {
		in.dead = true // the timer fired (or is firing): never reuse
	}
	ec.parent = context.Background()
}

// callArmed runs fn between arm and disarm. On a timeout or trap the
// instance is marked dead (checkin discards it).
func (h *host) callArmed(in *instance, fn api.Function, stack []uint64) error {
	err := fn.CallWithStack(in.ectx, stack)
	if err == nil {
		return nil
	}
	in.dead = true
	if in.ectx.stopReason() == stopDepth {
		return &policy.Error{Code: policy.CodeMemory, Err: fmt.Errorf("wasm: call depth over %d", h.opts.MaxCallDepth)}
	}
	return classify(err, in.ectx.fired.Load())
}

func classify(err error, fired bool) error {
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return policy.ErrTimeout
		case sys.ExitCodeContextCanceled:
			return context.Canceled
		}
		if fired {
			return policy.ErrTimeout
		}
		return errors.Join(policy.ErrEval, err)
	}
	if fired {
		return policy.ErrTimeout
	}
	var ab abortError
	if errors.As(err, &ab) {
		return errors.Join(policy.ErrEval, err)
	}
	if errors.Is(err, policy.ErrMemory) {
		return err
	}
	return errors.Join(policy.ErrEval, err)
}

type abortError struct{ msg string }

func (e abortError) Error() string { return "wasm: abort: " + e.msg }

// ensure grows memory so that [0, end) is addressable.
func ensure(mem api.Memory, end uint32) error {
	size := mem.Size()
	if end <= size {
		return nil
	}
	pages := (end - size + 65535) / 65536
	if _, ok := mem.Grow(pages); !ok {
		return policy.ErrMemory
	}
	return nil
}

func (h *host) close() error {
	var err error
	h.once.Do(func() {
		h.closed.Store(true)
		close(h.done)
		h.setMu.Lock() // no new refresh after this
		h.refreshing.Wait()
		h.setMu.Unlock()
		for i := 0; i < h.opts.PoolSize; i++ {
			if in := <-h.pool; in != nil {
				in.close()
			}
		}
		err = h.rt.Close(context.Background())
	})
	return err
}
