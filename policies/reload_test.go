package policies_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policies/policytest"
	"github.com/geniehive/geniehive/policy"
)

// fakeEngine fails any Eval after Close.
type fakeEngine struct {
	name   string
	closed atomic.Bool
	evals  atomic.Int64
}

func (f *fakeEngine) Name() string                                { return f.name }
func (f *fakeEngine) Version() string                             { return f.name }
func (f *fakeEngine) SetData(context.Context, *policy.Data) error { return nil }
func (f *fakeEngine) Close() error                                { f.closed.Store(true); return nil }
func (f *fakeEngine) Eval(ctx context.Context, in *policy.Input, out *policy.Decision) error {
	if f.closed.Load() {
		return errors.New("eval on closed engine " + f.name)
	}
	f.evals.Add(1)
	time.Sleep(time.Microsecond)
	if f.closed.Load() {
		return errors.New("engine closed during eval " + f.name)
	}
	return nil
}

// TestHolderHammer swaps engines while goroutines evaluate: no Eval may
// see a closed engine, and every replaced engine ends up closed.
func TestHolderHammer(t *testing.T) {
	first := &fakeEngine{name: "e0"}
	h := policies.NewHolder(first)
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var in policy.Input
			var out policy.Decision
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := h.Eval(ctx, &in, &out); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	engines := []*fakeEngine{first}
	for i := 1; i <= 200; i++ {
		e := &fakeEngine{name: "e" + string(rune('0'+i%10))}
		engines = append(engines, e)
		if err := h.Swap(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	for _, e := range engines[:len(engines)-1] {
		if !e.closed.Load() {
			t.Fatalf("replaced engine %p not closed", e)
		}
	}
	last := engines[len(engines)-1]
	if last.closed.Load() {
		t.Fatal("active engine closed")
	}
	_ = h.Close()
	if !last.closed.Load() {
		t.Fatal("Close did not close the active engine")
	}
}

type refuseData struct{ fakeEngine }

func (r *refuseData) SetData(context.Context, *policy.Data) error { return errors.New("no") }

func TestHolderSwapKeepsOldOnDataError(t *testing.T) {
	old := &fakeEngine{name: "old"}
	h := policies.NewHolder(old)
	if err := h.SetData(context.Background(), policytest.FleetData()); err != nil {
		t.Fatal(err)
	}
	if err := h.Swap(context.Background(), &refuseData{fakeEngine{name: "bad"}}); err == nil {
		t.Fatal("swap accepted an engine that refused data")
	}
	if h.Engine() != old || old.closed.Load() {
		t.Fatal("old engine not kept")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// Generous: compiling and testing a bundle under -race on a loaded
	// machine takes many seconds; the deadline only stops a broken run.
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchDir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, policies.ShippedFiles())
	h := policies.NewHolder(policies.NewGo())
	if err := h.SetData(context.Background(), policytest.FleetData()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var errs []error
	var swaps []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- policies.WatchDir(ctx, dir, h, policies.WatchOptions{
			// A loaded machine runs past the default evaluation
			// deadline; this test is about reloading, not deadlines.
			Factory:  opa.NewRegoFactory(opa.RegoOptions{EvalTimeout: 30 * time.Second}),
			Test:     opa.TestBundle,
			Interval: 20 * time.Millisecond,
			OnError:  func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() },
			OnSwap:   func(b *policy.Bundle, e policy.Engine) { mu.Lock(); swaps = append(swaps, b.Version); mu.Unlock() },
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	b, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "initial load", func() bool { return h.Engine().Version() == b.Version })
	if h.Engine().Name() != "rego" {
		t.Fatalf("engine %s", h.Engine().Name())
	}
	// The swapped engine got the data set earlier.
	var d policy.Decision
	if err := h.Eval(ctx, &policy.Input{Operation: "chat", Model: "coder", ModelKey: "coder"}, &d); err != nil || len(d.Targets) == 0 {
		t.Fatalf("eval after swap: %v %+v", err, d)
	}

	// A failing Rego test: refused, old engine stays.
	bad := "package geniehive_test\n\ntest_broken if 1 == 2\n"
	writeFiles(t, dir, map[string]string{"broken_test.rego": bad})
	waitFor(t, "refusal", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 1 })
	var tf *policy.TestFailedError
	mu.Lock()
	if !errors.As(errs[0], &tf) || tf.Failed != 1 {
		t.Fatalf("want a TestFailedError, got %v", errs[0])
	}
	mu.Unlock()
	if h.Engine().Version() != b.Version {
		t.Fatal("engine changed after a failing bundle")
	}

	// A syntax error: refused too.
	writeFiles(t, dir, map[string]string{"broken_test.rego": "package geniehive_test\n\ntest_broken if {\n"})
	waitFor(t, "second refusal", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 2 })

	// Fixed: swapped in.
	if err := os.Remove(filepath.Join(dir, "broken_test.rego")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"extra.rego": "package extra\n\nx := 1\n"})
	b2, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// OnSwap runs after the holder switched: wait for its record too. The
	// watcher may also have seen the directory between the remove and the
	// write (one more swap, to that in-between bundle).
	waitFor(t, "reload", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return h.Engine().Version() == b2.Version && len(swaps) >= 2 && swaps[len(swaps)-1] == b2.Version
	})
	mu.Lock()
	defer mu.Unlock()
	if swaps[0] != b.Version || len(swaps) > 3 {
		t.Fatalf("swaps %v", swaps)
	}
}

// TestHolderClose: Close releases the active engine once, later Evals and
// Swaps fail with policy.ErrClosed (before, an Eval after Close spun
// forever waiting for a replacement engine), and Close is idempotent.
func TestHolderClose(t *testing.T) {
	e := &fakeEngine{name: "a"}
	h := policies.NewHolder(e)
	var d policy.Decision
	if err := h.Eval(context.Background(), &policy.Input{}, &d); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !e.closed.Load() {
		t.Fatal("Close did not close the active engine")
	}
	if err := h.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Eval(context.Background(), &policy.Input{}, &d) }()
	select {
	case err := <-done:
		if !errors.Is(err, policy.ErrClosed) {
			t.Fatalf("Eval after Close = %v, want policy.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Eval after Close did not return")
	}
	nb := &fakeEngine{name: "b"}
	if err := h.Swap(context.Background(), nb); !errors.Is(err, policy.ErrClosed) {
		t.Fatalf("Swap after Close = %v, want policy.ErrClosed", err)
	}
}

// flakyEval times out (policy.ErrTimeout) on its first evaluations, as a
// 50ms evaluation deadline does on a saturated machine, then decides.
type flakyEval struct {
	fakeEngine
	failures atomic.Int64
}

func (f *flakyEval) Eval(ctx context.Context, in *policy.Input, out *policy.Decision) error {
	if f.failures.Add(-1) >= 0 {
		return policy.ErrTimeout
	}
	out.SchemaVersion = policy.SchemaVersion
	return nil
}

// Issue 17: Prepare separates transient failures from content failures.
// An attempt whose budget ran out is a *TransientError whatever failed
// inside it; a smoke evaluation that times out is retried within the
// budget; a syntax error with budget left is a content failure.
func TestPrepareTransientVersusContent(t *testing.T) {
	b := policy.NewBundle(policies.ShippedFiles())
	f := func(ctx context.Context, b *policy.Bundle) (policy.Engine, error) {
		return &flakyEval{fakeEngine: fakeEngine{name: "flaky"}}, nil
	}

	// The smoke evaluation timing out three times is not a failure.
	fl := &flakyEval{fakeEngine: fakeEngine{name: "flaky"}}
	fl.failures.Store(3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := policies.SmokeEval(ctx, fl); err != nil {
		t.Errorf("SmokeEval after 3 timeouts: %v", err)
	}
	if n := fl.failures.Load(); n != -1 {
		t.Errorf("SmokeEval evaluated %d times, want 4", 3-n)
	}

	// A cancelled attempt: transient, not a refusal.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	_, _, err := policies.Prepare(cctx, b, f, opa.TestBundle)
	var te *policies.TransientError
	if err == nil || !errors.As(err, &te) || !policies.Transient(err) {
		t.Errorf("Prepare with a cancelled context: %v, want a *TransientError", err)
	}

	// Retryable engine errors are transient without the wrapper.
	for _, e := range []error{policy.ErrBusy, policy.ErrTimeout, context.DeadlineExceeded, &policy.Error{Code: policy.CodeBusy, Err: context.DeadlineExceeded}} {
		if !policies.Transient(e) {
			t.Errorf("Transient(%v) = false", e)
		}
	}

	// Content failures are final.
	broken := policies.ShippedFiles()
	broken["broken.rego"] = "package geniehive\n\ndecision := {\n"
	_, _, err = policies.Prepare(ctx, policy.NewBundle(broken), f, opa.TestBundle)
	if err == nil || policies.Transient(err) {
		t.Errorf("Prepare of a syntax error: %v, want a content failure", err)
	}
	failing := policies.ShippedFiles()
	failing["broken_test.rego"] = "package geniehive_test\n\ntest_broken if 1 == 2\n"
	_, _, err = policies.Prepare(ctx, policy.NewBundle(failing), f, opa.TestBundle)
	var tf *policy.TestFailedError
	if !errors.As(err, &tf) || policies.Transient(err) {
		t.Errorf("Prepare of a failing test: %v, want a content failure", err)
	}
	for _, e := range []error{policy.ErrOutput, policy.ErrEval, policy.ErrMemory, errors.New("rego_parse_error")} {
		if policies.Transient(e) {
			t.Errorf("Transient(%v) = true", e)
		}
	}
}

// TestWatchDirRefusalClears (issue 10 item 6): a refusal is reported, and
// once the broken file is removed (the directory is the running bundle
// again, so nothing swaps) OnError(nil) says the refusal is over. Before,
// the refusal stayed reported until some other bundle loaded.
func TestWatchDirRefusalClears(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, policies.ShippedFiles())
	h := policies.NewHolder(policies.NewGo())
	var mu sync.Mutex
	var errs []error
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- policies.WatchDir(ctx, dir, h, policies.WatchOptions{
			Factory:  opa.NewRegoFactory(opa.RegoOptions{EvalTimeout: 30 * time.Second}),
			Test:     opa.TestBundle,
			Interval: 20 * time.Millisecond,
			OnError:  func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() },
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	b, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "initial load", func() bool { return h.Engine().Version() == b.Version })
	writeFiles(t, dir, map[string]string{"broken_test.rego": "package geniehive_test\n\ntest_broken if 1 == 2\n"})
	waitFor(t, "refusal", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 1 })
	if err := os.Remove(filepath.Join(dir, "broken_test.rego")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refusal cleared", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if errs[0] == nil || errs[1] != nil {
		t.Fatalf("want a refusal then its end (nil), got %v", errs)
	}
	if h.Engine().Version() != b.Version {
		t.Fatal("engine changed")
	}
}
