package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// TestPolicyDataNotRebuiltOnMetricHeartbeat: the edge's data loop, fed the
// real watcher's snapshots, rebuilds the policy data document for the
// first snapshot and for a heartbeat that adds an asset, never for a
// heartbeat that only moves metrics; and the engine then resolves the new
// asset.
func TestPolicyDataNotRebuiltOnMetricHeartbeat(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	w := state.NewWatcher(st, state.WatcherOptions{Resync: time.Hour})
	cfg := Config{Listen: "127.0.0.1:0", ID: "edge-data"}
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Store: st, Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan *fleet.Snapshot) // unbuffered: a send returns once the loop took the previous one
	done := make(chan struct{})
	go func() { defer close(done); srv.dataLoop(ctx, ch, 0) }()
	feed := func(snap *fleet.Snapshot) {
		ch <- snap
		ch <- snap // returns after the first was handled; the same version again builds nothing
	}
	refresh := func() *fleet.Snapshot {
		t.Helper()
		if err := w.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		return w.Current()
	}
	builds := func() int {
		var m dto.Metric
		if err := srv.met.dataBuilds.Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetCounter().GetValue())
	}
	beat := func(queue int, assets ...fleet.Asset) {
		t.Helper()
		s := svc("gpu1", "chat", fleet.KindChat, "http://127.0.0.1:1", assets...)
		s.Metrics.QueueDepth = queue
		heartbeat(t, st, "gpu1", s)
	}
	llama := fleet.Asset{Name: "llama3.1:8b", Family: "llama", Loaded: true}

	beat(0, llama)
	first := refresh()
	feed(first)
	if builds() != 1 {
		t.Fatalf("first snapshot: %d data builds, want 1", builds())
	}
	for q := 1; q <= 3; q++ {
		beat(q, llama)
		snap := refresh()
		if snap.ByID["gpu1/chat"].Metrics().QueueDepth != q {
			t.Fatal("heartbeat not in the snapshot")
		}
		feed(snap)
	}
	if builds() != 1 {
		t.Fatalf("metric-only heartbeats rebuilt the policy data: %d builds", builds())
	}
	beat(0, llama, fleet.Asset{Name: "brand-new:1b", Family: "llama", Loaded: true})
	feed(refresh())
	if builds() != 2 {
		t.Fatalf("a new asset: %d data builds, want 2", builds())
	}
	var dec policy.Decision
	if err := srv.Engine().Eval(ctx, &policy.Input{SchemaVersion: policy.SchemaVersion, Operation: fleet.KindChat, Model: "brand-new:1b", ModelKey: "brand-new:1b"}, &dec); err != nil {
		t.Fatal(err)
	}
	if len(dec.Targets) == 0 || dec.Targets[0].Name != "brand-new:1b" {
		t.Fatalf("engine did not get the new asset: %+v", dec)
	}
	cancel()
	<-done
}

// TestSnapshotMetrics: /metrics carries the watcher's figures: snapshot
// age, resyncs and their duration, events applied and their apply latency,
// and the snapshot build counters, moving as the watcher works.
func TestSnapshotMetrics(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	w := state.NewWatcher(st, state.WatcherOptions{Resync: time.Hour})
	cfg := Config{Listen: "127.0.0.1:0", ID: "edge-metrics"}
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Store: st, Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	waitUntil(t, 2*time.Second, "first resyncs", func() bool { return w.Stats().Resyncs.Load() >= 2 })
	heartbeat(t, st, "gpu1", svc("gpu1", "chat", fleet.KindChat, "http://127.0.0.1:1", fleet.Asset{Name: "m", Loaded: true}))
	waitUntil(t, 2*time.Second, "the heartbeat's event", func() bool { return w.Current().ByID["gpu1/chat"] != nil })
	waitUntil(t, 2*time.Second, "the event counted", func() bool { return w.Stats().EventsApplied.Load() >= 1 })

	mfs, err := srv.met.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf
	}
	first := func(name string) *dto.Metric {
		t.Helper()
		mf := got[name]
		if mf == nil || len(mf.Metric) == 0 {
			t.Fatalf("%s missing from /metrics", name)
		}
		return mf.Metric[0]
	}
	if v := first("geniehive_snapshot_age_seconds").GetGauge().GetValue(); v < 0 || v > 60 {
		t.Fatalf("snapshot age %v", v)
	}
	if n := first("geniehive_state_resyncs_total").GetCounter().GetValue(); n < 2 {
		t.Fatalf("resyncs %v, want >= 2", n)
	}
	if n := first("geniehive_state_resync_seconds").GetHistogram().GetSampleCount(); n < 2 {
		t.Fatalf("resync histogram holds %d samples, want >= 2", n)
	}
	if n := first("geniehive_state_events_applied_total").GetCounter().GetValue(); n < 1 {
		t.Fatalf("events applied %v", n)
	}
	if h := first("geniehive_state_event_apply_seconds").GetHistogram(); h.GetSampleCount() < 1 || h.GetSampleSum() <= 0 {
		t.Fatalf("apply latency histogram: %d samples, sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	first("geniehive_state_events_dropped_total")
	kinds := map[string]float64{}
	for _, m := range got["geniehive_snapshot_builds_total"].GetMetric() {
		kinds[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if _, ok := kinds["figures"]; !ok {
		t.Fatalf("snapshot builds %v: no figures kind", kinds)
	}
	if kinds["incremental"] < 1 || kinds["full"] < 2 {
		t.Fatalf("snapshot builds %v", kinds)
	}
}

// flakyEngine is the Go engine whose SetData fails while refuse is set,
// as the wasm engine's does when the data does not fit the guest.
type flakyEngine struct {
	policy.Engine
	refuse atomic.Bool
}

func (e *flakyEngine) SetData(ctx context.Context, d *policy.Data) error {
	if e.refuse.Load() {
		return errors.New("opa_malloc: failed (test)")
	}
	return e.Engine.SetData(ctx, d)
}

// TestRefusedPolicyDataRetriedOnSchedule: after the engine refused a data
// document, metric-only snapshots do not rebuild it (they used to, every
// one: 59% of the 10,000-node edge's CPU); unchanged inputs are retried
// after 1 s, 2 s, 4 s ... on the loop's clock, new inputs at once but not
// sooner than 1 s after the last attempt; the refusal stays a reported
// problem until a push succeeds.
func TestRefusedPolicyDataRetriedOnSchedule(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	w := state.NewWatcher(st, state.WatcherOptions{Resync: time.Hour})
	eng := &flakyEngine{Engine: policies.NewGo()}
	eng.refuse.Store(true)
	cfg := Config{Listen: "127.0.0.1:0", ID: "edge-data-retry"}
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Store: st, Watcher: w, Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64 // nanoseconds past t0
	t0 := time.Now()
	srv.dataNow = func() time.Time { return t0.Add(time.Duration(clock.Load())) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan *fleet.Snapshot)
	done := make(chan struct{})
	go func() { defer close(done); srv.dataLoop(ctx, ch, 0) }()
	var ver uint64
	feed := func(dataVer uint64, n int) {
		for i := 0; i < n; i++ {
			ver++
			ch <- &fleet.Snapshot{Version: ver, DataVersion: dataVer, BuiltAt: time.Now()}
		}
		ch <- &fleet.Snapshot{Version: ver, DataVersion: dataVer, BuiltAt: time.Now()} // returns once the last was handled
	}
	builds := func() int {
		var m dto.Metric
		if err := srv.met.dataBuilds.Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetCounter().GetValue())
	}
	want := func(step string, n int) {
		t.Helper()
		if got := builds(); got != n {
			t.Fatalf("%s: %d data builds, want %d", step, got, n)
		}
		if !hasProblem(srv.Problems(), DegradedPolicyData) {
			t.Fatalf("%s: the refused data is not a reported problem", step)
		}
	}

	feed(1, 1)
	want("first snapshot, refused", 1)
	feed(1, 100)
	want("100 metric-only snapshots right after the refusal", 1)
	advance(time.Second)
	feed(1, 1)
	want("1 s later", 2)
	feed(1, 100)
	advance(time.Second)
	feed(1, 100)
	want("1 s after the second refusal (the retry is due after 2 s)", 2)
	advance(time.Second)
	feed(1, 1)
	want("2 s after the second refusal", 3)
	feed(2, 10)
	want("new inputs at once after an attempt", 3)
	advance(time.Second)
	feed(2, 1)
	want("new inputs 1 s after the last attempt", 4)
	for i := 0; i < 10; i++ { // the delay doubles up to 30 s
		advance(30 * time.Second)
		feed(2, 1)
	}
	want("ten retries 30 s apart", 14)
	advance(29 * time.Second)
	feed(2, 50)
	want("29 s after a refusal at the 30 s cap", 14)

	eng.refuse.Store(false)
	advance(time.Second)
	feed(2, 1)
	if builds() != 15 || hasProblem(srv.Problems(), DegradedPolicyData) || srv.PolicyDataVersion() != 2 {
		t.Fatalf("accepted push: %d builds, problems %+v, data version %d", builds(), srv.Problems(), srv.PolicyDataVersion())
	}
	feed(2, 100)
	if builds() != 15 {
		t.Fatalf("metric-only snapshots after a successful push: %d builds, want 15", builds())
	}
	cancel()
	<-done
}

// TestRequestNamingAService: a client may address a service by its id (any
// case); the policy learns of it through input.service, which the edge
// looks up in its service index, now that the data document no longer
// lists every service.
func TestRequestNamingAService(t *testing.T) {
	s := newStack(t)
	post := func(model string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.url+"/v1/chat/completions",
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-GenieHive-Service") + " " + string(b)
	}
	if code, got := post("GPU1/Chat"); code != 200 || !strings.HasPrefix(got, "gpu1/chat ") {
		t.Fatalf("model GPU1/Chat: %d %s", code, got)
	}
	for _, m := range []string{"gpu1/embed", "gpu9/chat"} { // of another kind; unknown
		if code, got := post(m); code != 404 || !strings.HasPrefix(got, " ") {
			t.Fatalf("model %s: %d %s", m, code, got)
		}
	}
}
