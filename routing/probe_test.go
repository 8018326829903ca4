package routing

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// publishes counts PUBLISH commands a client sends.
type publishes struct{ n atomic.Int64 }

func (h *publishes) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *publishes) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h *publishes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}
func (h *publishes) count(c redis.Cmder) {
	if n := c.Name(); n == "publish" || n == "spublish" {
		h.n.Add(1)
	}
}

// TestProbeRoundBatched: a probing round stores every live service's
// result, healthy or not, and announces them in a few health events (one
// per write), not one per service: each event costs every edge a re-read
// of the fleet's probes and cooldowns.
func TestProbeRoundBatched(t *testing.T) {
	c, prefix := testredis.New(t)
	pubs := &publishes{}
	c.AddHook(pubs)
	s := state.New(c, prefix)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/models" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"object":"list","data":[]}`))
	}))
	defer up.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // refuses connections
	const n = 60
	now := time.Now()
	snap := &fleet.Snapshot{}
	for i := 0; i < n; i++ {
		ep := up.URL
		if i%3 == 0 {
			ep = downURL
		}
		snap.Services = append(snap.Services, &fleet.ServiceEntry{
			Service:  &fleet.Service{ID: "h" + strconv.Itoa(i) + "/s", Endpoint: ep, Protocol: fleet.ProtocolOpenAI},
			Deadline: now.Add(time.Minute)})
	}
	// Not live: never probed.
	snap.Services = append(snap.Services, &fleet.ServiceEntry{Service: &fleet.Service{ID: "gone/s", Endpoint: up.URL}, Deadline: now.Add(-time.Second)})
	p := NewProber(s, func() *fleet.Snapshot { return snap }, ProberOptions{ID: "e1", Interval: time.Second, Timeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	start := time.Now()
	p.ProbeAll(ctx)
	took := time.Since(start)
	got, err := s.Probes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d results stored, want %d", len(got), n)
	}
	for i := 0; i < n; i++ {
		r, ok := got["h"+strconv.Itoa(i)+"/s"]
		if want := i%3 != 0; !ok || r.Healthy != want || (!want && !strings.Contains(r.Error, "refused")) {
			t.Fatalf("service %d: %+v (stored %v), want healthy=%v", i, r, ok, want)
		}
	}
	// One event per write: the round's end, plus one per probeFlush it lasted.
	limit := int64(2 + took/probeFlush)
	if e := pubs.n.Load(); e < 1 || e > limit || e >= n {
		t.Fatalf("%d health events for %d results in %v (want 1..%d)", e, n, took, limit)
	}
	t.Logf("%d results, %d health events, round %v", n, pubs.n.Load(), took.Round(time.Millisecond))
}
