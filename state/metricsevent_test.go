package state_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
	"github.com/redis/go-redis/v9"
)

// gpuNode is a node of n services (two assets each) and two GPUs.
func gpuNode(id string, n int) *fleet.NodeState {
	st := fleetNode(id, n)
	st.Host.StartedAt = time.Now().Add(-time.Hour)
	st.Host.GPUs = []fleet.GPU{{Index: 0, Name: "L4", VRAMTotalBytes: 24 << 30}, {Index: 1, Name: "L4", VRAMTotalBytes: 24 << 30}}
	return st
}

// move sets every volatile figure of st from seed (the shape stays).
func move(st *fleet.NodeState, seed int) {
	st.Host.UpdatedAt = time.Now()
	for i := range st.Host.GPUs {
		st.Host.GPUs[i].VRAMUsedBytes = int64(seed+i) << 28
		st.Host.GPUs[i].UtilPercent = (seed * 7) % 101
	}
	for i := range st.Services {
		st.Services[i].Metrics = fleet.Metrics{LoadedModelCount: seed % 3, VRAMUsedBytes: int64(seed) << 20, VRAMTotalBytes: 24 << 30,
			QueueDepth: seed % 5, InFlight: (seed + i) % 4, LatencyMS: float64(seed) / 3, TokensPerSecond: 1e-3 * float64(seed*seed+i)}
	}
}

// cmdCounter counts the commands a client sends, by name.
type cmdCounter struct{ get, pttl atomic.Int64 }

func (h *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *cmdCounter) count(c redis.Cmder) {
	switch c.Name() {
	case "get":
		h.get.Add(1)
	case "pttl":
		h.pttl.Add(1)
	}
}
func (h *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, c redis.Cmder) error { h.count(c); return next(ctx, c) }
}
func (h *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not met within 30s")
}

// runWatcher runs a watcher (no periodic resync) on its own client, whose
// commands it counts, and waits for its first snapshot.
func runWatcher(t *testing.T, prefix string) (*state.Watcher, *cmdCounter) {
	t.Helper()
	c := testredis.Client(t)
	h := &cmdCounter{}
	c.AddHook(h)
	w := state.NewWatcher(state.New(c, prefix), state.WatcherOptions{Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go w.Run(ctx)
	waitUntil(t, func() bool { return w.Current().RedisOK && w.Stats().Build().FullBuilds >= 3 })
	return w, h
}

// listen subscribes to host's node channel and returns its payloads.
func listen(t *testing.T, s *state.Store, host string) <-chan string {
	t.Helper()
	ps := s.Client().Subscribe(context.Background(), s.Channel(state.EventNode+host))
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 64)
	go func() {
		for m := range ps.Channel() {
			out <- m.Payload
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no event published")
		return ""
	}
}

// TestWriteBeatPublishesMetricsOnlyWhenShapeHolds: a writer that
// remembers its beats announces "up" first, then metrics events while
// only volatile figures move, "up" again on any change of shape (an
// asset, health, the TTL) and at least every state.FullEvery beats; a writer
// without memory always announces "up". The stored state is whole.
func TestWriteBeatPublishesMetricsOnlyWhenShapeHolds(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	ev := listen(t, s, "wb")
	var b state.Beats
	st := gpuNode("wb", 3)
	beat := func(ttl time.Duration) string {
		t.Helper()
		if err := s.WriteBeat(ctx, st, ttl, &b); err != nil {
			t.Fatal(err)
		}
		return next(t, ev)
	}
	if p := beat(time.Minute); p != "up" {
		t.Fatalf("first beat announced %q, want up", p)
	}
	move(st, 7)
	p := beat(time.Minute)
	if !state.IsMetricsEvent(p) || len(p) > 400 {
		t.Fatalf("metrics-only beat announced %q (%d bytes), want a metrics event of a few hundred bytes", p, len(p))
	}
	// The stored state is the whole state, shape included.
	raw, err := c.Get(ctx, s.NodeKey("wb")).Result()
	if err != nil {
		t.Fatal(err)
	}
	var stored fleet.NodeState
	if err := json.Unmarshal([]byte(raw), &stored); err != nil || stored.Shape == "" || stored.Shape != state.StateShape(&stored) || len(stored.Services) != 3 {
		t.Fatalf("stored state: shape %q (recomputed %q), %d services, err %v", stored.Shape, state.StateShape(&stored), len(stored.Services), err)
	}
	if !strings.Contains(p, " "+stored.Shape+" ") || !strings.Contains(p, fmt.Sprintf(" %x ", state.FNVSum(raw))) {
		t.Fatalf("metrics event %q does not name the stored shape %s and sum %x", p, stored.Shape, state.FNVSum(raw))
	}
	for _, change := range []struct {
		what string
		do   func()
		ttl  time.Duration
	}{
		{"an asset added", func() { st.Services[1].Assets = append(st.Services[1].Assets, fleet.Asset{Name: "new", Loaded: true}) }, time.Minute},
		{"a model unloaded", func() { st.Services[0].Assets[1].Loaded = false }, time.Minute},
		{"health", func() { st.Services[2].Healthy, st.Services[2].HealthError = false, "down" }, time.Minute},
		{"the ttl", func() {}, 2 * time.Minute},
	} {
		change.do()
		move(st, 9)
		if p := beat(change.ttl); p != "up" {
			t.Fatalf("%s: announced %.40q, want up", change.what, p)
		}
		move(st, 10)
		if p := beat(change.ttl); !state.IsMetricsEvent(p) {
			t.Fatalf("after %s: metrics-only beat announced %q", change.what, p)
		}
	}
	// At least every state.FullEvery beats a whole "up".
	ups := 0
	for i := 0; i < 2*state.FullEvery; i++ {
		move(st, i)
		if beat(2*time.Minute) == "up" {
			ups++
		}
	}
	if ups != 2 {
		t.Fatalf("%d whole announcements in %d metrics-only beats, want 2", ups, 2*state.FullEvery)
	}
	// Without memory: always "up".
	move(st, 3)
	if err := s.WriteHeartbeat(ctx, st, time.Minute); err != nil {
		t.Fatal(err)
	}
	if p := next(t, ev); p != "up" {
		t.Fatalf("WriteHeartbeat announced %q", p)
	}
}

// TestMetricsEventAppliedWithoutGet: an edge holding a node's shape
// applies its metrics events without a single GET, and shows the figures;
// an event for a shape it does not hold (it missed the "up") makes it
// read the node, as does an event of a node whose state carries no shape
// (an older agent's).
func TestMetricsEventAppliedWithoutGet(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	w, cmds := runWatcher(t, prefix)
	var b state.Beats
	st := gpuNode("ma", 2)
	if err := s.WriteBeat(ctx, st, time.Minute, &b); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return w.Current().Hosts["ma"] != nil })
	gets := cmds.get.Load()
	dv := w.Current().DataVersion
	for i := 1; i <= 5; i++ {
		move(st, 100+i)
		if err := s.WriteBeat(ctx, st, time.Minute, &b); err != nil {
			t.Fatal(err)
		}
		want := st.Services[1].Metrics
		waitUntil(t, func() bool { e := w.Current().ByID["ma/s1"]; return e != nil && *e.Metrics() == want })
	}
	snap := w.Current()
	if n := cmds.get.Load() - gets; n != 0 {
		t.Fatalf("5 metrics events cost %d GETs, want 0", n)
	}
	if n := w.Stats().MetricsApplied.Load(); n != 5 {
		t.Fatalf("MetricsApplied = %d, want 5", n)
	}
	if h := snap.Hosts["ma"]; h.GPUs()[1].VRAMUsedBytes != st.Host.GPUs[1].VRAMUsedBytes || !h.UpdatedAt().Equal(st.Host.UpdatedAt) {
		t.Fatalf("host figures not applied: %+v", h.Host)
	}
	if snap.DataVersion != dv {
		t.Fatalf("metrics events changed DataVersion %d -> %d", dv, snap.DataVersion)
	}
	if d := time.Until(snap.Hosts["ma"].Expiry()); d < 50*time.Second || d > time.Minute {
		t.Fatalf("deadline %s away, want the TTL's minute", d)
	}

	// Stale shape: the node's "up" was missed (stored, not announced),
	// then a metrics event of the new shape arrives.
	st.Services[0].Assets = append(st.Services[0].Assets, fleet.Asset{Name: "missed", Loaded: true})
	move(st, 200)
	st.TTLSeconds, st.Shape = 60, ""
	st.Shape = state.StateShape(st)
	raw, _ := json.Marshal(st)
	if err := c.Set(ctx, s.NodeKey("ma"), raw, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	ev := state.AppendMetricsEvent(st, state.FNVSum(raw))
	gets = cmds.get.Load()
	if err := c.Publish(ctx, s.Channel(state.EventNode+"ma"), ev).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return len(w.Current().AssetServices["missed"]) == 1 })
	if cmds.get.Load() == gets || w.Stats().MetricsStale.Load() != 1 {
		t.Fatalf("stale shape: %d GETs, %d stale (want a read, 1 stale)", cmds.get.Load()-gets, w.Stats().MetricsStale.Load())
	}

	// An older agent: no shape in its state, "up" events; a metrics event
	// for it is read as "up" would be.
	old := gpuNode("old", 1)
	old.TTLSeconds = 60
	raw, _ = json.Marshal(old)
	if strings.Contains(string(raw), `"shape"`) {
		t.Fatal("an empty shape is written")
	}
	c.Set(ctx, s.NodeKey("old"), raw, time.Minute)
	c.Publish(ctx, s.Channel(state.EventNode+"old"), "up")
	waitUntil(t, func() bool { return w.Current().Hosts["old"] != nil })
	move(old, 5)
	raw, _ = json.Marshal(old)
	c.Set(ctx, s.NodeKey("old"), raw, time.Minute)
	old.Shape = state.StateShape(old)
	ev = state.AppendMetricsEvent(old, state.FNVSum(raw))
	c.Publish(ctx, s.Channel(state.EventNode+"old"), ev)
	want := old.Services[0].Metrics
	waitUntil(t, func() bool { e := w.Current().ByID["old/s0"]; return e != nil && *e.Metrics() == want })
	if w.Stats().MetricsStale.Load() != 2 {
		t.Fatalf("an event for a shapeless state was not read: %d stale", w.Stats().MetricsStale.Load())
	}
	// Mixed: "down" after metrics events removes the node.
	if err := s.RemoveNode(ctx, "ma"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return w.Current().Hosts["ma"] == nil && w.Current().ByID["ma/s0"] == nil })
}

// TestHostileMetricsEvents: a node's metrics events are attributed to the
// host of their channel and checked as its whole state is; a malformed,
// oversized or out-of-bounds event is refused, counted and changes
// nothing, and an event can neither name another host's services nor add
// or remove any.
func TestHostileMetricsEvents(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	w, cmds := runWatcher(t, prefix)
	var ba, bb state.Beats
	a, bn := gpuNode("ha", 2), gpuNode("hb", 2)
	writeBeats(t, s, nodeBeat{a, &ba}, nodeBeat{bn, &bb})
	waitUntil(t, func() bool { return w.Current().Hosts["ha"] != nil && w.Current().Hosts["hb"] != nil })
	before := w.Current()
	// The figures live in cells the snapshots share: keep what they were.
	was := map[string]fleet.Service{}
	for id, e := range before.ByID {
		was[id] = e.Current()
	}
	move(a, 42)
	raw, _ := json.Marshal(a)
	g := state.AppendMetricsEvent(a, state.FNVSum(raw))
	head := state.MetricsTag + a.Shape + " " + fmt.Sprintf("%x", state.FNVSum(raw)) + " 1 2 "
	svc := func(name, figs string) string { return name + " " + figs }
	const ok7 = "1 2 3 4 5 6.5 7.25"
	gpus := " 2 1 1 2 2"
	hostile := map[string]string{
		"oversized":          g + strings.Repeat(" 1", state.MaxMetricsEventBytes),
		"bad number":         head + svc("s0", "1 2 3 4 x 6 7") + " " + svc("s1", ok7) + gpus,
		"NaN":                head + svc("s0", "1 2 3 4 5 NaN 7") + " " + svc("s1", ok7) + gpus,
		"Inf":                head + svc("s0", "1 2 3 4 5 6 +Inf") + " " + svc("s1", ok7) + gpus,
		"overflowing float":  head + svc("s0", "1 2 3 4 5 6 1e999") + " " + svc("s1", ok7) + gpus,
		"hex float":          head + svc("s0", "1 2 3 4 5 0x1p3 7") + " " + svc("s1", ok7) + gpus,
		"negative queue":     head + svc("s0", "1 2 3 -4 5 6 7") + " " + svc("s1", ok7) + gpus,
		"negative latency":   head + svc("s0", "1 2 3 4 5 -6 7") + " " + svc("s1", ok7) + gpus,
		"negative vram":      head + svc("s0", "1 -2 3 4 5 6 7") + " " + svc("s1", ok7) + gpus,
		"negative gpu":       head + svc("s0", ok7) + " " + svc("s1", ok7) + " 2 1 1 -2 2",
		"plus sign":          head + svc("s0", "+1 2 3 4 5 6 7") + " " + svc("s1", ok7) + gpus,
		"int overflow":       head + svc("s0", "1 99999999999999999999 3 4 5 6 7") + " " + svc("s1", ok7) + gpus,
		"unknown service":    head + svc("s0", ok7) + " " + svc("s9", ok7) + gpus,
		"another host's svc": head + svc("s0", ok7) + " " + svc("hb/s1", ok7) + gpus,
		"service added":      state.MetricsTag + a.Shape + " 1 1 3 " + svc("s0", ok7) + " " + svc("s1", ok7) + " " + svc("s2", ok7) + gpus,
		"service removed":    state.MetricsTag + a.Shape + " 1 1 1 " + svc("s0", ok7) + gpus,
		"services swapped":   head + svc("s1", ok7) + " " + svc("s0", ok7) + gpus,
		"gpu added":          head + svc("s0", ok7) + " " + svc("s1", ok7) + " 3 1 1 2 2 3 3",
		"missing figure":     head + svc("s0", "1 2 3 4 5 6") + " " + svc("s1", ok7) + gpus,
		"trailing token":     head + svc("s0", ok7) + " " + svc("s1", ok7) + gpus + " 9",
		"trailing space":     head + svc("s0", ok7) + " " + svc("s1", ok7) + gpus + " ",
		"double space":       head + svc("s0", ok7) + "  " + svc("s1", ok7) + gpus,
		"bad sum":            state.MetricsTag + a.Shape + " zz 1 2 " + svc("s0", ok7) + " " + svc("s1", ok7) + gpus,
		"header only":        state.MetricsTag,
	}
	// The well-formed figures, for a check that they apply at all.
	if why := w.ApplyMetricsEventForTest("ha", head+svc("s0", ok7)+" "+svc("s1", ok7)+gpus); why != "" {
		t.Fatalf("the well-formed template is refused (%s): the hostile cases prove nothing", why)
	}
	ch := s.Channel(state.EventNode + "ha")
	// One at a time: events of one node arriving together are superseded
	// by the latest, unread.
	for what, p := range hostile {
		n := w.Stats().MetricsRefused.Load()
		if err := c.Publish(ctx, ch, p).Err(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for w.Stats().MetricsRefused.Load() == n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not refused", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Wrong channel: ha's figures published on hb's channel are hb's
	// event; hb holds another shape (shapes name the host), so hb is
	// read, and stays as stored.
	gets := cmds.get.Load()
	c.Publish(ctx, s.Channel(state.EventNode+"hb"), g)
	// A host id no node can have.
	c.Publish(ctx, s.Channel(state.EventNode+"h{x}"), g)
	// Sync: a later node's arrival means every event above was handled.
	if err := s.WriteHeartbeat(ctx, gpuNode("hz", 1), time.Minute); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return w.Current().Hosts["hz"] != nil })
	after := w.Current()
	if got, want := w.Stats().MetricsRefused.Load(), uint64(len(hostile)+1); got != want {
		t.Fatalf("%d events refused, want %d", got, want)
	}
	if w.Stats().MetricsApplied.Load() != 0 {
		t.Fatalf("%d hostile events applied", w.Stats().MetricsApplied.Load())
	}
	for _, id := range []string{"ha/s0", "ha/s1", "hb/s0", "hb/s1"} {
		if !reflect.DeepEqual(after.ByID[id].Current(), was[id]) {
			t.Fatalf("%s changed: %+v -> %+v", id, was[id].Metrics, *after.ByID[id].Metrics())
		}
	}
	if after.Hosts["ha"] != before.Hosts["ha"] || len(after.Services) != 5 {
		t.Fatalf("ha's host entry was rebuilt, or services were added (%d)", len(after.Services))
	}
	if cmds.get.Load() == gets || w.Stats().MetricsStale.Load() != 1 {
		t.Fatal("an event on hb's channel was not taken as hb's (stale: read)")
	}
	// The well-formed event still applies after all that.
	c.Publish(ctx, ch, g)
	want := a.Services[0].Metrics
	waitUntil(t, func() bool { return *w.Current().ByID["ha/s0"].Metrics() == want })
}

// utc normalises a host's times (a state decoded from JSON carries the
// writer's zone, one patched by an event UTC): equal instants compare equal.
func utc(h fleet.Host) fleet.Host {
	h.StartedAt, h.UpdatedAt = h.StartedAt.UTC(), h.UpdatedAt.UTC()
	return h
}

// TestMetricsPatchMatchesFullBuild: a snapshot kept by metrics events
// (interleaved with changes of shape, joins and a departure) equals what a
// fresh watcher's full build reads from Redis: every host, service, asset
// index and figure. A resync after it recognises every patched node's
// stored bytes by the sum its event named: no node view is rebuilt.
func TestMetricsPatchMatchesFullBuild(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	w, _ := runWatcher(t, prefix)
	const nodes = 8
	sts := make([]*fleet.NodeState, nodes)
	beats := make([]state.Beats, nodes)
	for i := range sts {
		sts[i] = gpuNode(fmt.Sprintf("d%d", i), 1+i%3)
		if i%2 == 1 {
			sts[i].Host.GPUs = nil
		}
	}
	for round := 0; round < 6; round++ {
		for i, st := range sts {
			move(st, round*nodes+i)
			switch {
			case round == 2 && i == 3:
				st.Services[0].Assets = append(st.Services[0].Assets, fleet.Asset{Name: "late", Loaded: true})
			case round == 4 && i == 5:
				st.Services[0].Healthy = false
			}
			if err := s.WriteBeat(ctx, st, time.Minute, &beats[i]); err != nil {
				t.Fatal(err)
			}
		}
		// One round at a time reaches the watcher, as beats seconds apart
		// do: a node's events written back to back may share one batch,
		// where a whole read covers them and no metrics event is applied.
		for _, st := range sts {
			want, id := st.Services[len(st.Services)-1].Metrics, st.Services[len(st.Services)-1].ID
			waitUntil(t, func() bool { e := w.Current().ByID[id]; return e != nil && *e.Metrics() == want })
		}
	}
	if err := s.RemoveNode(ctx, "d7"); err != nil {
		t.Fatal(err)
	}
	last := sts[6].Services[0].Metrics
	waitUntil(t, func() bool {
		snap := w.Current()
		e, d5 := snap.ByID["d6/s0"], snap.ByID["d5/s0"]
		return snap.Hosts["d7"] == nil && e != nil && *e.Metrics() == last && len(snap.AssetServices["late"]) == 1 && d5 != nil && !d5.Healthy
	})
	// Every node's last event applied (the events of one node are in order).
	for _, st := range sts[:7] {
		want := st.Services[len(st.Services)-1].Metrics
		id := st.Services[len(st.Services)-1].ID
		waitUntil(t, func() bool { return *w.Current().ByID[id].Metrics() == want })
	}
	if w.Stats().MetricsApplied.Load() == 0 {
		t.Fatal("no metrics event was applied: the test compares full builds only")
	}
	if w.Stats().Build().Figures == 0 {
		t.Fatal("no metrics event was stored in a cell: the test compares rebuilt views only")
	}
	fresh := state.NewWatcher(state.New(c, prefix), state.WatcherOptions{Resync: time.Hour})
	if err := fresh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, want := w.Current(), fresh.Current()
	if len(got.Hosts) != len(want.Hosts) || len(got.Services) != len(want.Services) || len(got.ByID) != len(want.ByID) || len(got.AssetServices) != len(want.AssetServices) {
		t.Fatalf("sizes: hosts %d/%d services %d/%d byID %d/%d assets %d/%d", len(got.Hosts), len(want.Hosts), len(got.Services), len(want.Services),
			len(got.ByID), len(want.ByID), len(got.AssetServices), len(want.AssetServices))
	}
	for id, h := range want.Hosts {
		g := got.Hosts[id]
		if g == nil || !reflect.DeepEqual(utc(g.Current()), utc(h.Current())) {
			t.Fatalf("host %s:\n got %+v\nwant %+v", id, g.Current(), h.Current())
		}
		if d := g.Expiry().Sub(h.Expiry()); d < -2*time.Second || d > 2*time.Second {
			t.Fatalf("host %s: deadline %s off a full build's", id, d)
		}
	}
	for i, e := range want.Services {
		g := got.Services[i]
		if g.ID != e.ID || !reflect.DeepEqual(g.Current(), e.Current()) || got.ByID[e.ID] != g {
			t.Fatalf("service %d:\n got %+v\nwant %+v", i, g.Current(), e.Current())
		}
		if d := g.Expiry().Sub(e.Expiry()); d < -2*time.Second || d > 2*time.Second {
			t.Fatalf("service %s: deadline %s off a full build's", e.ID, d)
		}
	}
	for name, l := range want.AssetServices {
		gl := got.AssetServices[name]
		if len(gl) != len(l) {
			t.Fatalf("asset %s: %d services, want %d", name, len(gl), len(l))
		}
		for i := range l {
			if gl[i].ID != l[i].ID || gl[i] != got.ByID[l[i].ID] {
				t.Fatalf("asset %s: entry %d is %s, want %s (or not the ByID entry)", name, i, gl[i].ID, l[i].ID)
			}
		}
	}
	if got.DataVersion == 0 {
		t.Fatal("no DataVersion")
	}
	// A resync recognises the stored bytes the events named.
	b0 := w.Stats().Build()
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if b1 := w.Stats().Build(); b1.ViewsBuilt != b0.ViewsBuilt || b1.ViewsReused-b0.ViewsReused != 7 {
		t.Fatalf("resync after metrics events: %d views built, %d reused (want 0, 7)", b1.ViewsBuilt-b0.ViewsBuilt, b1.ViewsReused-b0.ViewsReused)
	}
}

// nodeBeat is a node's state and the Beats its heartbeats go through.
type nodeBeat struct {
	st *fleet.NodeState
	b  *state.Beats
}

// writeBeats writes one heartbeat (TTL one minute) of each node.
func writeBeats(t *testing.T, s *state.Store, nodes ...nodeBeat) {
	t.Helper()
	for _, n := range nodes {
		if err := s.WriteBeat(context.Background(), n.st, time.Minute, n.b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUpEventOfSameShapeMovesFiguresOnly: a whole state read for an "up"
// event that differs from the node's view in volatile fields only is
// stored in the node's cell (no view built, the same entries, no
// container copied, DataVersion kept), and shows what a full build of
// the same Redis shows; one that changes anything else builds the view.
func TestUpEventOfSameShapeMovesFiguresOnly(t *testing.T) {
	c, prefix := testredis.New(t)
	s := state.New(c, prefix)
	ctx := context.Background()
	w, _ := runWatcher(t, prefix)
	st := gpuNode("u1", 3)
	move(st, 1)
	if err := s.WriteHeartbeat(ctx, st, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return w.Current().ByID["u1/s2"] != nil })
	snap0, b0 := w.Current(), w.Stats().Build()
	for round := 2; round < 5; round++ {
		move(st, round)
		if err := s.WriteHeartbeat(ctx, st, time.Minute); err != nil {
			t.Fatal(err)
		}
		want := st.Services[2].Metrics
		waitUntil(t, func() bool { return *w.Current().ByID["u1/s2"].Metrics() == want })
	}
	snap1, b1 := w.Current(), w.Stats().Build()
	if b1.ViewsBuilt != b0.ViewsBuilt || b1.Figures == b0.Figures || b1.DataVersion != b0.DataVersion {
		t.Fatalf("same-shape up events: %d views built, %d figures snapshots, data version %d -> %d (want 0, >0, same)",
			b1.ViewsBuilt-b0.ViewsBuilt, b1.Figures-b0.Figures, b0.DataVersion, b1.DataVersion)
	}
	if snap1.ByID["u1/s2"] != snap0.ByID["u1/s2"] || snap1.Hosts["u1"] != snap0.Hosts["u1"] {
		t.Fatal("same-shape up events replaced the node's entries")
	}
	fresh := state.NewWatcher(state.New(c, prefix), state.WatcherOptions{Resync: time.Hour})
	if err := fresh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want := fresh.Current()
	if g, h := snap1.Hosts["u1"], want.Hosts["u1"]; !reflect.DeepEqual(utc(g.Current()), utc(h.Current())) {
		t.Fatalf("host:\n got %+v\nwant %+v", g.Current(), h.Current())
	}
	for _, e := range want.Services {
		if g := snap1.ByID[e.ID]; g == nil || !reflect.DeepEqual(g.Current(), e.Current()) {
			t.Fatalf("service %s:\n got %+v\nwant %+v", e.ID, g.Current(), e.Current())
		}
	}
	// A resync recognises the stored bytes the last read named.
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if b2 := w.Stats().Build(); b2.ViewsBuilt != b1.ViewsBuilt {
		t.Fatalf("resync after same-shape up events built %d views", b2.ViewsBuilt-b1.ViewsBuilt)
	}
	// Anything else is a new view.
	st.Services[1].Assets[0].Loaded = !st.Services[1].Assets[0].Loaded
	move(st, 9)
	if err := s.WriteHeartbeat(ctx, st, time.Minute); err != nil {
		t.Fatal(err)
	}
	loaded := st.Services[1].Assets[0].Loaded
	waitUntil(t, func() bool { return w.Current().ByID["u1/s1"].Assets[0].Loaded == loaded })
	if b3 := w.Stats().Build(); b3.ViewsBuilt == b1.ViewsBuilt {
		t.Fatal("a change of shape built no view")
	}
	if e := w.Current().ByID["u1/s2"]; *e.Metrics() != st.Services[2].Metrics {
		t.Fatalf("metrics after a change of shape: %+v, want %+v", *e.Metrics(), st.Services[2].Metrics)
	}
}
