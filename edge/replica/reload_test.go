package replica_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
	"github.com/geniehive/geniehive/wasm"
)

// flakyEngine is the wasm engine with failures injected into its compile
// step: the next failNext calls of the factory fail the way a loaded
// machine makes them fail (a busy pool at the deadline, an expired
// context), then it compiles for real.
const flakyEngine = "wasm-flaky-compile"

var (
	failNext     atomic.Int64
	factoryCalls atomic.Int64
)

func init() {
	replica.RegisterEngine(flakyEngine, func(c replica.PolicyConfig) (policy.Factory, func() policy.Engine, error) {
		return func(ctx context.Context, b *policy.Bundle) (policy.Engine, error) {
			n := factoryCalls.Add(1)
			if failNext.Add(-1) >= 0 {
				if n%2 == 0 {
					return nil, context.DeadlineExceeded
				}
				return nil, &policy.Error{Code: policy.CodeBusy, Err: context.DeadlineExceeded}
			}
			return wasm.NewOPA(ctx, b.Rego(), wasm.Options{EvalTimeout: c.EvalTimeout, Version: b.Version})
		}, nil, nil
	})
}

// logRecorder keeps the message and level of every log record.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "LEVEL message"
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	msg := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	l.mu.Lock()
	l.recs = append(l.recs, msg)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count counts the records at level whose message contains sub.
func (l *logRecorder) count(level slog.Level, sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if strings.HasPrefix(r, level.String()+" ") && strings.Contains(r, sub) {
			n++
		}
	}
	return n
}

func localPolicy(t *testing.T, url string) (version, errMsg string) {
	t.Helper()
	resp, err := http.Get(url + "/v1/cluster/policy")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Local struct {
			Version string `json:"version"`
			Error   string `json:"error"`
		} `json:"local"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Local.Version, out.Local.Error
}

// Issue 17: a transient failure while compiling a pushed bundle (a busy
// pool, a deadline) is retried with backoff and never reported as a
// refusal; the replica ends up on the bundle. A bundle with a syntax error
// is refused at once, without a single retry, and the running one stays.
// (Before, the first transient failure was recorded as a refusal and
// nothing retried: the replica stayed on the old policy.)
func TestPushedBundleTransientFailuresRetriedContentRefused(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	var cfg replica.Config
	cfg.Edge = edge.Config{Listen: "127.0.0.1:0", ID: "edge-r", Redis: edge.RedisConfig{Prefix: prefix}}
	cfg.Policy.Engine = flakyEngine
	cfg.Policy.RetryInterval = 20 * time.Millisecond
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{}
	t.Cleanup(func() {
		if t.Failed() {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, r := range rec.recs {
				t.Log(r)
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	r, err := replica.New(ctx, cfg, replica.Options{Logger: slog.New(rec), Store: st, Ready: func(a string) { ready <- a }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { err := r.Run(ctx); _ = r.Close(); done <- err }()
	var url string
	select {
	case a := <-ready:
		url = "http://" + a
	case err := <-done:
		t.Fatalf("replica stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("replica did not start")
	}
	defer func() { cancel(); awaitRun(t, done) }()

	files := policies.ShippedFiles()
	files["v2.rego"] = "package geniehive.v2\n\nmarker := true\n"
	v2 := policy.NewBundle(files).Version
	calls0 := factoryCalls.Load()
	failNext.Store(3)
	if err := st.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: "v2", Files: files, PushedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to switch to v2 after transient compile failures", func() bool {
		v, _ := localPolicy(t, url)
		return v == v2
	})
	if n := factoryCalls.Load() - calls0; n != 4 {
		t.Errorf("factory called %d times for v2, want 4 (3 injected failures, then success)", n)
	}
	if n := rec.count(slog.LevelWarn, "transient failure"); n != 3 {
		t.Errorf("%d transient-failure warnings, want 3", n)
	}
	if n := rec.count(slog.LevelError, "refused"); n != 0 {
		t.Errorf("%d refusals logged for a valid bundle that failed transiently", n)
	}
	if _, perr := localPolicy(t, url); perr != "" {
		t.Errorf("policy status reports an error after transient failures: %s", perr)
	}

	calls1 := factoryCalls.Load()
	warns := rec.count(slog.LevelWarn, "transient failure")
	broken := policies.ShippedFiles()
	broken["broken.rego"] = "package geniehive\n\ndecision := {\n"
	if err := st.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: "broken-1", Files: broken, PushedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the broken bundle's refusal", func() bool {
		_, perr := localPolicy(t, url)
		return perr != ""
	})
	if v, _ := localPolicy(t, url); v != v2 {
		t.Errorf("after a refused bundle the replica runs %s, want %s", v, v2)
	}
	if n := rec.count(slog.LevelError, "pushed policy bundle refused"); n != 1 {
		t.Errorf("%d refusals logged for the broken bundle, want 1", n)
	}
	if n := rec.count(slog.LevelWarn, "transient failure") - warns; n != 0 {
		t.Errorf("the broken bundle was retried %d times; a syntax error is final", n)
	}
	if n := factoryCalls.Load() - calls1; n != 0 {
		t.Errorf("the broken bundle reached the compiler %d times; its tests' parse fails first", n)
	}
	// Still refused, not retried, a while later (several retry intervals).
	time.Sleep(200 * time.Millisecond)
	if n := rec.count(slog.LevelError, "pushed policy bundle refused"); n != 1 {
		t.Errorf("%d refusals logged for the broken bundle after waiting, want 1", n)
	}
}
