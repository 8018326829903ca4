package policies

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/geniehive/geniehive/policy"
)

// DefaultPrepareTimeout is the budget of one Prepare attempt when the
// caller sets none (policy.prepare_timeout): compiling Rego to Wasm, running
// the bundle's tests and the smoke evaluation take well under a second on
// a quiet machine, and a loaded one must not turn a slow compile into a
// refusal.
const DefaultPrepareTimeout = 30 * time.Second

// TransientError marks a Prepare failure that says nothing about the
// bundle's content: the attempt ran out of time or was cancelled, the
// engine's instance pool stayed busy, or the bundle could not be read.
// Such a bundle is retried, never refused.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return "policies: transient: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *TransientError) Unwrap() error { return e.Err }

// Transient reports whether err (from Prepare, Holder.Swap or reading a
// bundle) is a transient failure — a *TransientError, a cancelled or
// expired context, a policy.ErrTimeout or policy.ErrBusy — to be retried
// with backoff. Every other error is a content failure (the bundle does
// not compile, its tests fail, its decision has the wrong schema) and
// refuses the bundle.
func Transient(err error) bool {
	var te *TransientError
	return errors.As(err, &te) || policy.Retryable(err) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Prepare tests a bundle and builds its engine: the way every reload (a
// watched directory, a bundle pushed into Redis) validates a policy before
// it replaces the running one. ctx is the attempt's whole budget (callers
// give it DefaultPrepareTimeout or policy.prepare_timeout, never the
// per-request evaluation timeout).
//
// # Errors
// Compile errors, a *policy.TestFailedError when a Rego test fails, the
// factory's errors, and an error when f is nil or the bundle carries Rego
// but test is nil (a Rego bundle is never installed untested). Any failure
// once ctx is done is returned as a *TransientError (the attempt was cut
// short: its outcome says nothing about the bundle); see Transient. The
// Rego test runner is policies/opa.TestBundle; this package does not
// import OPA.
func Prepare(ctx context.Context, b *policy.Bundle, f policy.Factory, test policy.Tester) (policy.Engine, []policy.TestResult, error) {
	e, rs, err := prepare(ctx, b, f, test)
	if err != nil && ctx.Err() != nil {
		var te *TransientError
		if !errors.As(err, &te) {
			err = &TransientError{Err: fmt.Errorf("%w (attempt cut short: %w)", err, ctx.Err())}
		}
	}
	return e, rs, err
}

func prepare(ctx context.Context, b *policy.Bundle, f policy.Factory, test policy.Tester) (policy.Engine, []policy.TestResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if f == nil {
		return nil, nil, errors.New("policies: no engine factory")
	}
	if err := b.Validate(); err != nil {
		return nil, nil, err
	}
	var rs []policy.TestResult
	if b.HasRego() {
		if test == nil {
			return nil, nil, errors.New("policies: bundle has Rego but no test runner is configured")
		}
		var err error
		if rs, err = test(ctx, b); err != nil {
			return nil, rs, err
		}
	}
	if n := policy.Failed(rs); n > 0 {
		return nil, rs, &policy.TestFailedError{Failed: n, Results: rs}
	}
	e, err := f(ctx, b)
	if err != nil {
		return nil, rs, err
	}
	if err := SmokeEval(ctx, e); err != nil {
		_ = e.Close()
		return nil, rs, err
	}
	return e, rs, nil
}

// SmokeEval evaluates one request against empty data: a policy that does
// not produce a decision document (a missing data.geniehive.decision, a
// runtime error) fails here instead of on the first real request.
//
// The evaluation runs under policy.WithPrepareBudget: bounded by ctx's
// deadline (the Prepare budget), not the engine's per-request timeout,
// which a loaded machine exceeds. One that still times out or finds the
// pool busy is tried again, with a short backoff, until ctx is done; only
// a failure that is not policy.Retryable is final.
func SmokeEval(ctx context.Context, e policy.Engine) error {
	ctx = policy.WithPrepareBudget(ctx)
	wait := 5 * time.Millisecond
	for {
		err := smokeEval(ctx, e)
		if err == nil || !policy.Retryable(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		if wait < 500*time.Millisecond {
			wait *= 2
		}
	}
}

func smokeEval(ctx context.Context, e policy.Engine) error {
	if err := e.SetData(ctx, &policy.Data{SchemaVersion: policy.SchemaVersion}); err != nil {
		return fmt.Errorf("policies: smoke test: %w", err)
	}
	in := &policy.Input{SchemaVersion: policy.SchemaVersion, Operation: "chat", Model: "smoke-test", ModelKey: "smoke-test", Key: policy.Key{ID: "smoke", Scope: "client"}}
	var d policy.Decision
	if err := e.Eval(ctx, in, &d); err != nil {
		return fmt.Errorf("policies: smoke test: %w", err)
	}
	if d.SchemaVersion != policy.SchemaVersion {
		return fmt.Errorf("policies: smoke test: decision schema_version %d, want %d", d.SchemaVersion, policy.SchemaVersion)
	}
	return nil
}

// WatchOptions configure WatchDir.
type WatchOptions struct {
	// Interval between polls of the directory (default 500ms).
	Interval time.Duration
	// Factory builds engines (required).
	Factory policy.Factory
	// Test runs a Rego bundle's tests (required for Rego bundles; see
	// Prepare).
	Test policy.Tester
	// OnSwap is called after a new engine became active.
	OnSwap func(b *policy.Bundle, e policy.Engine)
	// OnError is called when a changed bundle is refused for its content
	// (the running engine stays); it is not called again until the
	// directory changes again. A transient failure (see Transient) is not a
	// refusal: it is logged and the bundle is tried again at the next poll.
	// OnError(nil) says a reported refusal is over without a swap: the
	// directory went back to the bundle that runs.
	OnError func(err error)
	// PrepareTimeout is the budget of one attempt to test and build the
	// bundle (default DefaultPrepareTimeout).
	PrepareTimeout time.Duration
	// Logger, when set, logs swaps and refusals.
	Logger *slog.Logger
}

// WatchDir polls dir (stat only: names, sizes, modification times) and,
// whenever its content changes, loads, tests and builds the bundle in the
// background of the caller's goroutine, then swaps it into h. A bundle that
// fails to load, compile or pass its tests is reported and the running
// engine stays; a transient failure (Transient) is retried at the next
// poll (an attempt that ran out of PrepareTimeout gets twice as long, up to
// 8 times) and not reported as a refusal. The directory is loaded once at start unless h's engine
// already has the directory's version. WatchDir returns when ctx is done.
//
// Polling was chosen over fsnotify: it is portable (bind mounts, NFS,
// Kubernetes ConfigMap symlink swaps) and a 500ms poll of a handful of
// files costs nothing.
func WatchDir(ctx context.Context, dir string, h *Holder, o WatchOptions) error {
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.PrepareTimeout <= 0 {
		o.PrepareTimeout = DefaultPrepareTimeout
	}
	lastFP := ""
	lastVersion := h.Engine().Version()
	budget := o.PrepareTimeout
	refused := false // a refusal was reported and nothing loaded since
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		fp, err := dirFingerprint(dir)
		if err != nil {
			fp = "error:" + err.Error()
		}
		if fp != lastFP {
			lastFP = fp
			v, err := reloadDir(ctx, dir, h, o, lastVersion, budget)
			switch {
			case err == nil:
				if refused && v == lastVersion && o.OnError != nil {
					o.OnError(nil) // back to the running bundle: the refusal is over
				}
				lastVersion, budget, refused = v, o.PrepareTimeout, false
			case ctx.Err() != nil:
				return ctx.Err()
			case Transient(err):
				lastFP = "" // try again at the next poll
				if errors.Is(err, context.DeadlineExceeded) && budget < 8*o.PrepareTimeout {
					budget *= 2 // a machine this loaded gets longer next time
				}
				if o.Logger != nil {
					o.Logger.Warn("policy bundle not loaded yet (transient failure); retrying", "dir", dir, "err", err)
				}
			default:
				refused = true
				if o.OnError != nil {
					o.OnError(err)
				}
				if o.Logger != nil {
					o.Logger.Error("policy bundle refused; keeping the running one", "dir", dir, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func reloadDir(ctx context.Context, dir string, h *Holder, o WatchOptions, current string, budget time.Duration) (string, error) {
	b, err := LoadDir(dir)
	if err != nil {
		return current, err
	}
	if b.Version == current {
		return current, nil
	}
	pctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	e, _, err := Prepare(pctx, b, o.Factory, o.Test)
	if err != nil {
		return current, fmt.Errorf("policies: bundle %s (%.12s): %w", dir, b.Version, err)
	}
	if err := h.Swap(pctx, e); err != nil {
		_ = e.Close()
		return current, err
	}
	if o.Logger != nil {
		o.Logger.Info("policy bundle loaded", "dir", dir, "version", b.Version, "engine", e.Name())
	}
	if o.OnSwap != nil {
		o.OnSwap(b, e)
	}
	return b.Version, nil
}

// dirFingerprint summarises the bundle files' names, sizes and mtimes.
func dirFingerprint(dir string) (string, error) {
	var parts []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") && d.IsDir() {
			return filepath.SkipDir
		}
		if d.IsDir() || !policy.IsBundleFile(p) {
			return nil
		}
		fi, err := os.Stat(p) // follows symlinks (ConfigMaps)
		if err != nil {
			return err
		}
		parts = append(parts, p+"\x00"+strconv.FormatInt(fi.Size(), 10)+"\x00"+strconv.FormatInt(fi.ModTime().UnixNano(), 10))
		return nil
	})
	sort.Strings(parts)
	return strings.Join(parts, "\n"), err
}
