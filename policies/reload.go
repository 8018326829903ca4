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
)

// Factory builds an engine for a bundle. RegoFactory is the one this
// package provides; the wasm package provides others.
type Factory func(ctx context.Context, b *Bundle) (Engine, error)

// RegoFactory builds an OPA Go SDK engine from the bundle's Rego.
func RegoFactory(_ context.Context, b *Bundle) (Engine, error) {
	if !b.HasRego() {
		return nil, errors.New("policies: bundle has no Rego policy")
	}
	return NewRego(b.Rego(), RegoOptions{Version: b.Version})
}

// TestFailedError reports a bundle whose Rego tests fail.
type TestFailedError struct {
	Failed  int
	Results []TestResult
}

func (e *TestFailedError) Error() string {
	var names []string
	for _, r := range e.Results {
		if !r.Pass && !r.Skip {
			names = append(names, r.Package+"."+r.Name)
		}
	}
	return fmt.Sprintf("policies: %d Rego test(s) failed: %s", e.Failed, strings.Join(names, ", "))
}

// Prepare tests a bundle and builds its engine: the way every reload (a
// watched directory, a bundle pushed into Redis) validates a policy before
// it replaces the running one.
//
// # Errors
// Compile errors, a *TestFailedError when a Rego test fails, and the
// factory's errors.
func Prepare(ctx context.Context, b *Bundle, f Factory) (Engine, []TestResult, error) {
	if f == nil {
		f = RegoFactory
	}
	if err := b.Validate(); err != nil {
		return nil, nil, err
	}
	rs, err := TestBundle(ctx, b)
	if err != nil {
		return nil, rs, err
	}
	if n := Failed(rs); n > 0 {
		return nil, rs, &TestFailedError{Failed: n, Results: rs}
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
func SmokeEval(ctx context.Context, e Engine) error {
	if err := e.SetData(ctx, &Data{SchemaVersion: SchemaVersion}); err != nil {
		return fmt.Errorf("policies: smoke test: %w", err)
	}
	in := &Input{SchemaVersion: SchemaVersion, Operation: "chat", Model: "smoke-test", ModelKey: "smoke-test", Key: Key{ID: "smoke", Scope: "client"}}
	var d Decision
	if err := e.Eval(ctx, in, &d); err != nil {
		return fmt.Errorf("policies: smoke test: %w", err)
	}
	if d.SchemaVersion != SchemaVersion {
		return fmt.Errorf("policies: smoke test: decision schema_version %d, want %d", d.SchemaVersion, SchemaVersion)
	}
	return nil
}

// WatchOptions configure WatchDir.
type WatchOptions struct {
	// Interval between polls of the directory (default 500ms).
	Interval time.Duration
	// Factory builds engines (default RegoFactory).
	Factory Factory
	// OnSwap is called after a new engine became active.
	OnSwap func(b *Bundle, e Engine)
	// OnError is called when a changed bundle is refused (the running engine
	// stays); it is not called again until the directory changes again.
	OnError func(err error)
	// Logger, when set, logs swaps and refusals.
	Logger *slog.Logger
}

// WatchDir polls dir (stat only: names, sizes, modification times) and,
// whenever its content changes, loads, tests and builds the bundle in the
// background of the caller's goroutine, then swaps it into h. A bundle that
// fails to load, compile or pass its tests is reported and the running
// engine stays. The directory is loaded once at start unless h's engine
// already has the directory's version. WatchDir returns when ctx is done.
//
// Polling was chosen over fsnotify: it is portable (bind mounts, NFS,
// Kubernetes ConfigMap symlink swaps) and a 500ms poll of a handful of
// files costs nothing.
func WatchDir(ctx context.Context, dir string, h *Holder, o WatchOptions) error {
	if o.Interval <= 0 {
		o.Interval = 500 * time.Millisecond
	}
	if o.Factory == nil {
		o.Factory = RegoFactory
	}
	lastFP := ""
	lastVersion := h.Engine().Version()
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		fp, err := dirFingerprint(dir)
		if err != nil {
			fp = "error:" + err.Error()
		}
		if fp != lastFP {
			lastFP = fp
			if v, err := reloadDir(ctx, dir, h, o, lastVersion); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if o.OnError != nil {
					o.OnError(err)
				}
				if o.Logger != nil {
					o.Logger.Error("policy bundle refused; keeping the running one", "dir", dir, "err", err)
				}
			} else {
				lastVersion = v
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func reloadDir(ctx context.Context, dir string, h *Holder, o WatchOptions, current string) (string, error) {
	b, err := LoadDir(dir)
	if err != nil {
		return current, err
	}
	if b.Version == current {
		return current, nil
	}
	e, _, err := Prepare(ctx, b, o.Factory)
	if err != nil {
		return current, fmt.Errorf("policies: bundle %s (%.12s): %w", dir, b.Version, err)
	}
	if err := h.Swap(ctx, e); err != nil {
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
		if d.IsDir() || !bundleFile(p) {
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
