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
	deadline := time.Now().Add(20 * time.Second)
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
			Factory:  opa.RegoFactory,
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
	waitFor(t, "reload", func() bool { return h.Engine().Version() == b2.Version })
	mu.Lock()
	defer mu.Unlock()
	if len(swaps) != 2 {
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
