package wasm

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/policy"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	builtWasm = map[string][]byte{}
)

// exampleWasm builds wasm/examples/<name> (GOOS=wasip1, c-shared) once per
// test binary and returns the module. tags selects a variant ("stdjson").
func exampleWasm(t testing.TB, name string, tags ...string) []byte {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "gh-wasm-examples")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	key := name
	for _, tg := range tags {
		key += "+" + tg
	}
	if b, ok := builtWasm[key]; ok {
		return b
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(buildDir, key+".wasm")
	args := []string{"build", "-buildmode=c-shared", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", tags[0])
	}
	args = append(args, "./examples/"+name)
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	builtWasm[key] = b
	return b
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func newTestModule(t testing.TB, name string, o Options) *ModuleEngine {
	t.Helper()
	e, err := NewModule(bg, exampleWasm(t, name), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestModuleSimple(t *testing.T) {
	e := newTestModule(t, "simple", Options{})
	if e.Name() != "module" || e.Version() == "" {
		t.Fatal(e.Name(), e.Version())
	}
	var d policiesDecision
	// Before data: the requested model as-is.
	if err := e.Eval(bg, testInput("Qwen3:8B"), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Targets) != 1 || d.Targets[0].Name != "Qwen3:8B" || d.Targets[0].Kind != "asset" || d.Targets[0].Operation != "chat" {
		t.Fatalf("%+v", d)
	}
	if err := e.SetData(bg, testData()); err != nil {
		t.Fatal(err)
	}
	if err := e.Eval(bg, testInput("nomic"), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Targets) != 1 || d.Targets[0].Name != "nomic-embed" {
		t.Fatalf("after data: %+v", d)
	}
	if err := e.Eval(bg, testInput("forbidden-model"), &d); err != nil {
		t.Fatal(err)
	}
	if d.Deny == nil || d.Deny.Status != 403 || d.Deny.Code != "policy_denied" || len(d.Targets) != 0 {
		t.Fatalf("deny: %+v", d)
	}
}

func TestModuleTimeout(t *testing.T) {
	for _, closeOnDone := range []bool{false, true} {
		t.Run(map[bool]string{false: "instrumented", true: "close-on-context-done"}[closeOnDone], func(t *testing.T) {
			testModuleTimeout(t, closeOnDone)
		})
	}
}

func testModuleTimeout(t *testing.T, closeOnDone bool) {
	e, err := newModule(bg, exampleWasm(t, "loop"), config{Options: Options{PoolSize: 2, EvalTimeout: 20 * time.Millisecond}, noInstrument: closeOnDone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if e.h.instrumented == closeOnDone {
		t.Fatalf("instrumented = %v", e.h.instrumented)
	}
	// A collector running while the guest spins must not deadlock
	// (stop-the-world needs the guest's goroutine to reach a preemption
	// point).
	stopGC := make(chan struct{})
	defer close(stopGC)
	go func() {
		for {
			select {
			case <-stopGC:
				return
			case <-time.After(2 * time.Millisecond):
				runtime.GC()
			}
		}
	}()
	for i := 0; i < 3; i++ {
		start := time.Now()
		var d policiesDecision
		err := e.Eval(bg, testInput("x"), &d)
		if !errors.Is(err, policy.ErrTimeout) {
			t.Fatalf("eval %d: err = %v, want policy.ErrTimeout", i, err)
		}
		if el := time.Since(start); el > time.Minute { // only a guest never cut off gets here
			t.Fatalf("cut off after %v", el)
		}
	}
	// The pool replaced the discarded instances: still exactly 2 slots.
	if n := len(e.h.pool); n != 2 {
		t.Fatalf("pool has %d slots, want 2", n)
	}
}

func TestModuleMissingExports(t *testing.T) {
	// An OPA module is a valid wasm binary without the custom ABI.
	bin, err := CompileRego(bg, testPolicy(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewModule(bg, bin, Options{}); err == nil {
		t.Fatal("loaded a module without gh_decide")
	}
}
