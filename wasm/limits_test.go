package wasm

import (
	"encoding/json"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

// slowPolicy burns CPU for a model named "slow" (millions of iterations of
// a nested comprehension) and allocates without bound for "hog".
var slowPolicy = map[string]string{"slow.rego": `package geniehive

import rego.v1

default decision := {"schema_version": 1, "targets": [], "strip_reasoning": false}

decision := {"schema_version": 1, "targets": [], "strip_reasoning": false, "tried": [sprintf("%d", [n])]} if {
	input.model == "slow"
	n := count([1 | some i in numbers.range(1, 4000); some j in numbers.range(1, 4000); i == j + 10000])
}

decision := {"schema_version": 1, "targets": [], "strip_reasoning": false, "tried": [sprintf("%d", [n])]} if {
	input.model == "hog"
	n := count({x | some x in numbers.range(1, 50000000)})
}
`}

func TestOPATimeoutDiscardsInstance(t *testing.T) {
	e, err := NewOPA(bg, slowPolicy, Options{PoolSize: 2, EvalTimeout: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !e.h.instrumented {
		t.Fatal("OPA module not instrumented")
	}
	var d policiesDecision
	for i := 0; i < 3; i++ {
		start := time.Now()
		err := e.Eval(bg, testInput("slow"), &d)
		if !errors.Is(err, policy.ErrTimeout) {
			t.Fatalf("eval %d: %v, want policy.ErrTimeout", i, err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("cut off after %v", el)
		}
		// The engine stays healthy: the next request is served.
		if err := e.Eval(bg, testInput("fast"), &d); err != nil {
			t.Fatalf("after timeout: %v", err)
		}
	}
	if n := len(e.h.pool); n != 2 {
		t.Fatalf("pool has %d slots, want 2", n)
	}
}

func TestOPAMemoryCap(t *testing.T) {
	e, err := NewOPA(bg, slowPolicy, Options{PoolSize: 1, MaxMemoryPages: 64, EvalTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var d policiesDecision
	// A guest allocating without bound traps at the cap.
	err = e.Eval(bg, testInput("hog"), &d)
	if err == nil || !(errors.Is(err, policy.ErrEval) || errors.Is(err, policy.ErrMemory)) {
		t.Fatalf("hog: %v", err)
	}
	t.Logf("hog: %v", err)
	if got := e.h.rt; got == nil {
		t.Fatal("runtime gone")
	}
	// An input larger than the cap is refused.
	in := testInput("fast")
	in.Body = json.RawMessage(`"` + strings.Repeat("x", 5<<20) + `"`)
	if err := e.Eval(bg, in, &d); !errors.Is(err, policy.ErrMemory) {
		t.Fatalf("huge input: %v, want policy.ErrMemory", err)
	}
	// And the engine still serves.
	if err := e.Eval(bg, testInput("fast"), &d); err != nil {
		t.Fatal(err)
	}
	// A memory cap below the module's minimum is refused at load.
	if _, err := NewOPA(bg, slowPolicy, Options{MaxMemoryPages: 1}); err == nil {
		t.Fatal("loaded below the module's minimum memory")
	}
}

func TestModuleMemoryCap(t *testing.T) {
	if _, err := NewModule(bg, exampleWasm(t, "simple"), Options{MaxMemoryPages: 4}); err == nil {
		t.Fatal("Go guest initialised in 256 KiB")
	}
}

// TestPoolHammer runs P goroutines × N evaluations against a small pool
// and checks an instance is never used by two goroutines at once.
func TestPoolHammer(t *testing.T) {
	engines := map[string]interface {
		Eval(ctx contextT, in *policiesInput, out *policiesDecision) error
	}{}
	// A generous budget: 8 goroutines share 3 instances on a loaded
	// machine, and this test is about pool ownership, not time limits.
	o := newTestOPA(t, Options{PoolSize: 3, EvalTimeout: 30 * time.Second})
	m := newTestModule(t, "simple", Options{PoolSize: 3, EvalTimeout: 30 * time.Second})
	m.SetData(bg, testData())
	// The shipped policy derives part of its data once per version
	// (prepareData), concurrently with evaluations here.
	sh, err := NewOPA(bg, policies.ShippedPolicy(), Options{PoolSize: 3, EvalTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	shippedData := func(i int) *policy.Data {
		d := testData()
		d.Aliases["v"+strconv.Itoa(i)] = "coder" // a new version each time
		return d
	}
	sh.SetData(bg, shippedData(0))
	engines["wasm"], engines["module"], engines["shipped"] = o, m, sh
	hosts := map[string]*host{"wasm": &o.h, "module": &m.h, "shipped": &sh.h}
	for name, e := range engines {
		t.Run(name, func(t *testing.T) {
			h := hosts[name]
			var mu sync.Mutex
			busy := map[*instance]bool{}
			P, N := 8, 200
			if testing.Short() {
				N = 50
			}
			var evals atomic.Int64
			var wg sync.WaitGroup
			for p := 0; p < P; p++ {
				wg.Add(1)
				go func(p int) {
					defer wg.Done()
					var d policiesDecision
					for i := 0; i < N; i++ {
						// Check exclusive ownership through the pool directly.
						in, err := h.checkout(bg)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						if busy[in] {
							t.Error("instance shared")
						}
						busy[in] = true
						mu.Unlock()
						runtime.Gosched()
						mu.Lock()
						delete(busy, in)
						mu.Unlock()
						h.checkin(in)
						if err := e.Eval(bg, testInput("dev"), &d); err != nil {
							t.Error(err)
							return
						}
						if len(d.Targets) == 0 {
							t.Errorf("no targets: %+v", d)
							return
						}
						if i%50 == 0 {
							// data reloads while serving
							if err := h.setData(bg, shippedData(p*N+i)); err != nil {
								t.Error(err)
								return
							}
						}
						evals.Add(1)
					}
				}(p)
			}
			wg.Wait()
			h.refreshing.Wait()
			if evals.Load() != int64(P*N) {
				t.Fatalf("evals %d", evals.Load())
			}
			if len(h.pool) != 3 {
				t.Fatalf("pool slots %d", len(h.pool))
			}
		})
	}
}

func TestReloadWhileServing(t *testing.T) {
	// A generous budget: compiling the replacement loads the machine, and
	// this test is about reloads, not the default limit.
	old := newTestOPA(t, Options{PoolSize: 2, EvalTimeout: 30 * time.Second})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	for p := 0; p < 4; p++ {
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
				if err := old.Eval(bg, testInput("dev"), &d); err != nil {
					t.Error(err)
					return
				}
				served.Add(1)
			}
		}()
	}
	// Build the replacement while the old engine serves.
	next, err := NewOPA(bg, testPolicy(t), Options{PoolSize: 2, EvalTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	next.SetData(bg, testData())
	var d policiesDecision
	if err := next.Eval(bg, testInput("dev"), &d); err != nil || len(d.Targets) != 2 {
		t.Fatalf("new engine: %v %+v", err, d)
	}
	close(stop)
	wg.Wait()
	if served.Load() == 0 {
		t.Fatal("old engine served nothing during the reload")
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := old.Eval(bg, testInput("dev"), &d); !errors.Is(err, policy.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	next.Close()
}

func TestSetDataInFlight(t *testing.T) {
	e := newTestOPA(t, Options{PoolSize: 1})
	var d policiesDecision
	if err := e.Eval(bg, testInput("nomic"), &d); err != nil || len(d.Targets) != 1 {
		t.Fatalf("%v %+v", err, d)
	}
	// Hold the only instance (an evaluation in flight), swap data, release.
	in, err := e.h.checkout(bg)
	if err != nil {
		t.Fatal(err)
	}
	nd := testData()
	delete(nd.Models, "nomic")
	e.SetData(bg, nd)
	if in.dataVer == e.h.data.Load().ver {
		t.Fatal("in-flight instance saw new data")
	}
	e.h.checkin(in)
	if err := e.Eval(bg, testInput("nomic"), &d); err != nil {
		t.Fatal(err)
	}
	if d.Deny == nil || d.Deny.Status != 404 {
		t.Fatalf("new data not applied: %+v", d)
	}
}
