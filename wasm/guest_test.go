package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/policy"
	"github.com/tetratelabs/wazero"
)

// Hostile guests, hand-assembled: a Go guest always has a loop at the head
// of every function (its resume dispatcher), so the loop-free recursion
// bomb of issue 16 (item 5) can only be written at the Wasm level.

// wmod is a tiny Wasm module assembler: enough for the test guests.
type wmod struct {
	types   [][]byte // encoded function types
	funcs   []wfunc
	globals [][]byte // encoded globals
	exports [][]byte
	data    [][]byte
	pages   uint32
}

type wfunc struct {
	typ  uint32
	body []byte // locals vector, code, end
}

func wtype(params, results []byte) []byte {
	b := []byte{0x60, byte(len(params))}
	b = append(b, params...)
	b = append(b, byte(len(results)))
	return append(b, results...)
}

func (m *wmod) typ(params, results []byte) uint32 {
	t := wtype(params, results)
	for i, x := range m.types {
		if bytes.Equal(x, t) {
			return uint32(i)
		}
	}
	m.types = append(m.types, t)
	return uint32(len(m.types) - 1)
}

// fn adds a function with no locals; code must end with 0x0B.
func (m *wmod) fn(params, results []byte, code ...byte) uint32 {
	m.funcs = append(m.funcs, wfunc{typ: m.typ(params, results), body: append([]byte{0x00}, code...)})
	return uint32(len(m.funcs) - 1)
}

func (m *wmod) export(name string, kind byte, idx uint32) {
	b := appendU32(nil, uint32(len(name)))
	b = append(b, name...)
	b = append(b, kind)
	m.exports = append(m.exports, appendU32(b, idx))
}

func vec(items [][]byte) []byte {
	b := appendU32(nil, uint32(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func (m *wmod) bytes() []byte {
	out := []byte("\x00asm\x01\x00\x00\x00")
	out = appendSection(out, secType, vec(m.types))
	fs := appendU32(nil, uint32(len(m.funcs)))
	for _, f := range m.funcs {
		fs = appendU32(fs, f.typ)
	}
	out = appendSection(out, secFunction, fs)
	out = appendSection(out, secMemory, append([]byte{1, 0}, appendU32(nil, m.pages)...))
	if len(m.globals) > 0 {
		out = appendSection(out, secGlobal, vec(m.globals))
	}
	out = appendSection(out, secExport, vec(m.exports))
	var bodies [][]byte
	for _, f := range m.funcs {
		bodies = append(bodies, append(appendU32(nil, uint32(len(f.body))), f.body...))
	}
	out = appendSection(out, secCode, vec(bodies))
	if len(m.data) > 0 {
		out = appendSection(out, 11, vec(m.data))
	}
	return out
}

// i32 is "i32.const v".
func i32(v int64) []byte { return appendS33([]byte{0x41}, v) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var (
	tI32 = []byte{0x7F}
	tI64 = []byte{0x7E}
)

// guestDecision is what the hostile guest answers to a good request.
const guestDecision = `{"schema_version":1,"targets":[{"kind":"asset","name":"good","operation":"chat","group":0}],"strip_reasoning":false}`

// hostileGuest builds a module speaking the ABI in ABI.md whose gh_decide
// looks at the first byte of the input's model (at modelOff in the input
// JSON) and
//
//	'b': calls bomb(60): bomb(n) returns at 0 (br_if to the function's
//	     label) and otherwise calls bomb(n-1) twice: 2^60 calls, no loop,
//	     60 frames deep;
//	'd': calls ping(0): ping and pong call each other without end (pong
//	     through an explicit return), no loop;
//	'l': spins in a loop forever;
//	else: returns guestDecision, after calling pair (two results: the
//	     instrumenter's wrapping block needs a type index).
func hostileGuest(modelOff uint32) []byte {
	m := &wmod{pages: 2}
	const out = 4096 // guestDecision's address
	m.data = append(m.data, cat([]byte{0x00}, i32(out), []byte{0x0B}, appendU32(nil, uint32(len(guestDecision))), []byte(guestDecision)))
	// 0: gh_alloc(n) -> 1024
	alloc := m.fn(tI32, tI32, cat(i32(1024), []byte{0x0B})...)
	// 1: bomb(n)
	bomb := uint32(1)
	m.fn(tI32, nil, cat(
		[]byte{0x20, 0x00, 0x45, 0x0D, 0x00}, // local.get 0; i32.eqz; br_if 0
		[]byte{0x20, 0x00}, i32(1), []byte{0x6B, 0x10}, appendU32(nil, bomb),
		[]byte{0x20, 0x00}, i32(1), []byte{0x6B, 0x10}, appendU32(nil, bomb),
		[]byte{0x0B})...)
	// 2: ping(n) -> pong(n+1); 3: pong(n) -> return ping(n+1)
	ping, pong := uint32(2), uint32(3)
	m.fn(tI32, tI32, cat([]byte{0x20, 0x00}, i32(1), []byte{0x6A, 0x10}, appendU32(nil, pong), []byte{0x0B})...)
	m.fn(tI32, tI32, cat([]byte{0x20, 0x00}, i32(1), []byte{0x6A, 0x10}, appendU32(nil, ping), []byte{0x0F, 0x0B})...)
	// 4: pair() -> (i32, i32), with a return
	pair := m.fn(nil, []byte{0x7F, 0x7F}, cat(i32(1), i32(2), []byte{0x0F, 0x0B})...)
	// 5: gh_decide(p, n) -> i64
	sel := func(c byte, then []byte) []byte {
		return cat([]byte{0x20, 0x00, 0x2D, 0x00}, appendU32(nil, modelOff), // i32.load8_u offset=modelOff (local 0)
			i32(int64(c)), []byte{0x46, 0x04, 0x40}, then, []byte{0x0B}) // i32.eq; if ... end
	}
	decide := m.fn([]byte{0x7F, 0x7F}, tI64, cat(
		sel('b', cat(i32(60), []byte{0x10}, appendU32(nil, bomb))),
		sel('d', cat(i32(0), []byte{0x10}, appendU32(nil, ping), []byte{0x1A})),
		sel('l', []byte{0x03, 0x40, 0x0C, 0x00, 0x0B}), // loop br 0 end
		[]byte{0x10}, appendU32(nil, pair), []byte{0x1A, 0x1A},
		[]byte{0x42}, appendS33(nil, out<<32|int64(len(guestDecision))), // i64.const
		[]byte{0x0B})...)
	m.export("memory", 2, 0)
	m.export("gh_alloc", 0, alloc)
	m.export("gh_decide", 0, decide)
	return m.bytes()
}

// modelOffset is where the first byte of the model sits in the input JSON
// the host writes.
func modelOffset(t testing.TB) uint32 {
	b := appendInput(nil, testInput("x"))
	i := bytes.Index(b, []byte(`"model":"x"`))
	if i < 0 {
		t.Fatalf("input has no model: %s", b)
	}
	return uint32(i + len(`"model":"`))
}

// TestHostileGuestsAreCutOff evaluates a recursion bomb, an endless mutual
// recursion and an endless loop while other goroutines evaluate good
// requests on the same engine: each bad evaluation ends with its typed
// error, good ones keep succeeding, a health endpoint keeps answering (on
// the old loop-only instrumentation the bomb never returned and froze the
// whole process at the collector's stop-the-world), and Close returns.
func TestHostileGuestsAreCutOff(t *testing.T) {
	// A budget long enough that the health endpoint gets many chances to
	// answer while each bad guest runs, on a starved machine too: with
	// 300 ms, a CI run at load 26 on 2 cores (health answers p50 193 ms,
	// max 716 ms) had one window without an answer.
	e, err := NewModule(bg, hostileGuest(modelOffset(t)), Options{PoolSize: 3, EvalTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var d policiesDecision
	if err := e.Eval(bg, testInput("good"), &d); err != nil || len(d.Targets) != 1 || d.Targets[0].Name != "good" {
		t.Fatalf("good request: %v %+v", err, d)
	}

	// A health endpoint and a collector running throughout.
	health, stopHealth := startHealth(t)
	defer stopHealth()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				runtime.GC()
			}
		}
	}()
	var good, goodFailed atomic.Int64
	for p := 0; p < 2; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d policiesDecision
			for {
				select {
				case <-stop:
					return
				default:
				}
				// A generous deadline for the wait on a busy pool: this
				// test is about bad guests, not a loaded machine.
				ctx, cancel := context.WithTimeout(bg, 30*time.Second)
				err := e.Eval(ctx, testInput("good"), &d)
				cancel()
				if err != nil || len(d.Targets) != 1 || d.Targets[0].Name != "good" {
					goodFailed.Add(1)
					t.Errorf("good request during attacks: %v %+v", err, d)
					return
				}
				good.Add(1)
			}
		}()
	}

	cases := []struct {
		model string
		want  error
	}{
		{"bomb", policy.ErrTimeout}, // 2^60 calls: fuel at function entry
		// The call-depth cap, reached within microseconds; on a loaded
		// machine the guest can be descheduled at a check past its
		// deadline, and then the timeout comes first (TestWazero-
		// StackCeilingIsHuge checks the cap without a timer).
		{"deep", policy.ErrMemory},
		{"loop", policy.ErrTimeout}, // fuel at loop heads
	}
	var attacks [][2]time.Time
	for round := 0; round < 3; round++ {
		for _, c := range cases {
			goodBefore := good.Load()
			start := time.Now()
			res := make(chan error, 1)
			go func() {
				var d policiesDecision
				res <- e.Eval(bg, testInput(c.model), &d)
			}()
			select {
			case err := <-res:
				if !errors.Is(err, c.want) && !(c.model == "deep" && errors.Is(err, policy.ErrTimeout)) {
					t.Fatalf("%s: %v, want %v", c.model, err, c.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: evaluation still running after 30 s", c.model)
			}
			if c.want == policy.ErrTimeout { // ran for the whole budget
				attacks = append(attacks, [2]time.Time{start, time.Now()})
			}
			// Good evaluations go on between attacks.
			waitFor(t, func() bool { return good.Load() > goodBefore+5 }, "good evaluations after "+c.model)
		}
	}
	close(stop)
	wg.Wait()
	if goodFailed.Load() != 0 {
		t.Fatalf("%d good evaluations failed", goodFailed.Load())
	}
	answers := health()
	var lat []time.Duration
	for i, a := range attacks {
		n := 0
		for _, h := range answers {
			if h.at.After(a[0]) && h.at.Before(a[1]) {
				n++
				lat = append(lat, h.took)
			}
		}
		if n == 0 {
			t.Errorf("health never answered during attack %d (%v)", i, a[1].Sub(a[0]))
		}
	}
	// For comparison, the answers outside the attacks (the same load of
	// good evaluations and collections, no bad guest).
	var calm []time.Duration
	for _, h := range answers {
		in := false
		for _, a := range attacks {
			in = in || h.at.After(a[0]) && h.at.Before(a[1])
		}
		if !in {
			calm = append(calm, h.took)
		}
	}
	t.Logf("good evaluations: %d; health answers during attacks %s, outside %s", good.Load(), quantiles(lat), quantiles(calm))

	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close still waiting after 30 s")
	}
	if err := e.Eval(bg, testInput("good"), &d); !errors.Is(err, policy.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return fmt.Sprintf("%d: p50 %v, max %v", len(d), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// healthAnswer is one answer of the polled health endpoint.
type healthAnswer struct {
	at   time.Time // when it arrived
	took time.Duration
}

// startHealth serves /healthz on loopback and polls it every 10 ms; results
// stops polling and returns the answers.
func startHealth(t *testing.T) (results func() []healthAnswer, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(ln)
	var mu sync.Mutex
	var answers []healthAnswer
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		cl := &http.Client{Timeout: time.Minute}
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			t0 := time.Now()
			resp, err := cl.Get("http://" + ln.Addr().String() + "/healthz")
			if err == nil {
				resp.Body.Close()
				now := time.Now()
				mu.Lock()
				answers = append(answers, healthAnswer{at: now, took: now.Sub(t0)})
				mu.Unlock()
			}
		}
	}()
	var once sync.Once
	halt := func() {
		once.Do(func() {
			close(done)
			<-finished
			srv.Close()
		})
	}
	return func() []healthAnswer {
		halt()
		mu.Lock()
		defer mu.Unlock()
		return answers
	}, halt
}

// recursionModule: rec() bumps the exported global "depth" and calls
// itself, forever.
func recursionModule() []byte {
	m := &wmod{pages: 1}
	m.globals = append(m.globals, []byte{0x7F, 0x01, 0x41, 0x00, 0x0B})
	rec := m.fn(nil, nil, cat([]byte{0x23, 0x00}, i32(1), []byte{0x6A, 0x24, 0x00, 0x10, 0x00, 0x0B})...)
	m.export("rec", 0, rec)
	m.export("depth", 3, 0)
	return m.bytes()
}

// TestWazeroStackCeilingIsHuge shows why the depth cap is ours: wazero
// alone lets a guest recurse until its Go-allocated stack reaches ~100 MB,
// millions of frames; instrumented, the same guest stops at the cap.
func TestWazeroStackCeilingIsHuge(t *testing.T) {
	depthOf := func(bin []byte) (uint32, error) {
		ctx := context.Background()
		rt := wazero.NewRuntime(ctx)
		defer rt.Close(ctx)
		m, err := rt.Instantiate(ctx, bin)
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.ExportedFunction("rec").Call(ctx)
		return uint32(m.ExportedGlobal("depth").Get()), err
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	raw, err := depthOf(recursionModule())
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("endless recursion returned")
	}
	t.Logf("wazero alone: %v at depth %d, %d MiB allocated", err, raw, (after.TotalAlloc-before.TotalAlloc)>>20)
	if raw < 100*DefaultMaxCallDepth {
		t.Fatalf("wazero stopped the recursion at depth %d: its own ceiling would do", raw)
	}
	inst, err := instrument(recursionModule(), DefaultMaxCallDepth)
	if err != nil {
		t.Fatal(err)
	}
	capped, err := depthOf(inst)
	if err == nil {
		t.Fatal("instrumented endless recursion returned")
	}
	t.Logf("instrumented: %v at depth %d", err, capped)
	if capped < DefaultMaxCallDepth || capped > DefaultMaxCallDepth+fuelPeriod+1 {
		t.Fatalf("instrumented recursion stopped at depth %d, want (%d, %d]", capped, DefaultMaxCallDepth, DefaultMaxCallDepth+fuelPeriod+1)
	}
}

// TestUninstrumentableModuleRefused: a module the limiter cannot walk (here
// a SIMD instruction) is refused at load rather than run unbounded.
func TestUninstrumentableModuleRefused(t *testing.T) {
	m := &wmod{pages: 1}
	// v128.const 0 (0xFD 0x0C + 16 bytes); drop
	simd := append([]byte{0xFD, 0x0C}, make([]byte, 16)...)
	m.fn(tI32, tI32, cat(simd, []byte{0x1A}, i32(0), []byte{0x0B})...)
	m.fn([]byte{0x7F, 0x7F}, tI64, 0x42, 0x00, 0x0B)
	m.export("memory", 2, 0)
	m.export("gh_alloc", 0, 0)
	m.export("gh_decide", 0, 1)
	_, err := NewModule(bg, m.bytes(), Options{})
	if err == nil || !errors.Is(err, errUninstrumentable) {
		t.Fatalf("SIMD module: %v, want a refusal", err)
	}
}

// TestOPADeepInputWithinDepthCap: the deepest body the edge accepts (256
// levels) is parsed by OPA's runtime well inside the call-depth cap.
func TestOPADeepInputWithinDepthCap(t *testing.T) {
	e := newTestOPA(t, Options{PoolSize: 1})
	in := testInput("dev")
	in.Body = append(append(bytes.Repeat([]byte("["), 256), '1'), bytes.Repeat([]byte("]"), 256)...)
	var d policiesDecision
	if err := e.Eval(bg, in, &d); err != nil || len(d.Targets) == 0 {
		t.Fatalf("256-deep body: %v %+v", err, d)
	}
}
