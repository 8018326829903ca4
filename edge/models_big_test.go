package edge

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// bigSnapshot is one node with nSvc services of perSvc distinct assets
// each (the node validation caps: 64 services, 4096 assets per service).
func bigSnapshot(nSvc, perSvc int) *fleet.Snapshot {
	now := time.Now()
	snap := &fleet.Snapshot{Version: 1, BuiltAt: now, ByID: map[string]*fleet.ServiceEntry{},
		AssetServices: map[string][]*fleet.ServiceEntry{}, Catalog: &fleet.Catalog{}}
	for s := 0; s < nSvc; s++ {
		name := "svc" + strconv.Itoa(s)
		e := &fleet.ServiceEntry{Service: &fleet.Service{ID: "big/" + name, HostID: "big", Name: name, Kind: fleet.KindChat,
			Healthy: true}, Deadline: now.Add(time.Minute)}
		for a := 0; a < perSvc; a++ {
			e.Assets = append(e.Assets, fleet.Asset{Name: name + "-model-" + strconv.Itoa(a), Loaded: true})
		}
		snap.Services = append(snap.Services, e)
		snap.ByID[e.ID] = e
		for _, a := range e.Assets {
			snap.AssetServices[a.Name] = append(snap.AssetServices[a.Name], e)
		}
	}
	return snap
}

// The hostile review: a node with 100k assets made /v1/models an
// 81-CPU-second request. Run with -run TestModelsBuildLinear -v for the
// figure; the assertion is on work done, not time: doubling the assets
// must not much more than double the build (quadratic would quadruple).
func TestModelsBuildLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 100k-asset documents")
	}
	snap := bigSnapshot(25, 4000) // 100k assets on one node
	start := time.Now()
	entries := buildModels(snap, time.Now())
	t.Logf("/v1/models for 100k assets on one node: %d entries in %v", len(entries), time.Since(start))
	if len(entries) != 100000 {
		t.Fatalf("%d entries", len(entries))
	}
	// Per-asset lookups: count the asset comparisons a build makes.
	small, big := bigSnapshot(2, 1000), bigSnapshot(2, 4000)
	cs, cb := assetScans(small), assetScans(big)
	t.Logf("asset comparisons: 2x1000 assets %d, 2x4000 assets %d", cs, cb)
	if cb > 5*cs {
		t.Fatalf("asset comparisons grow faster than linearly: %d for 2000 assets, %d for 8000", cs, cb)
	}
}

// assetScans counts how many asset entries buildModels visits.
func assetScans(snap *fleet.Snapshot) int {
	_, n := buildModelsCounted(snap, time.Now())
	return n
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// Issue 16: /v1/models on a 100k-asset fleet ran on after its client gave
// up. The build now runs once per snapshot version on its own goroutine;
// clients that leave while it runs stop waiting (nothing is built for
// them), and the one build is shared by whoever asks next. The build is
// held until every client has left, so the test does not depend on
// timing; the CPU figure is logged (-v), the assertion is on builds.
func TestModelsBuildOutlivesNoClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 100k-asset documents")
	}
	snap := bigSnapshot(25, 4000)
	release := make(chan struct{})
	var c modelsCache
	c.build = func(s *fleet.Snapshot) *modelsDoc { <-release; return buildModelsDoc(s) }
	cpu0 := cpuSeconds()
	var wg sync.WaitGroup
	var served atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.get(snap, func() bool { return true }) != nil {
				served.Add(1)
			}
		}()
	}
	wg.Wait() // all 20 returned while the build was held: none waited for it
	if served.Load() != 0 {
		t.Fatalf("%d clients that left were served", served.Load())
	}
	close(release)
	d := c.get(snap, func() bool { return false }) // a client that stays
	if d == nil || !bytes.Contains(d.list, []byte(`"svc24-model-3999"`)) || !bytes.Contains(d.anthropic, []byte(`"svc0-model-0"`)) {
		t.Fatal("the build the clients left did not serve the next one")
	}
	for i := 0; i < 20; i++ {
		if c.get(snap, func() bool { return true }) != d {
			t.Fatal("same version, within the refresh period: not the cached documents")
		}
	}
	if n := c.builds.Load(); n != 1 {
		t.Fatalf("%d builds for 41 requests on one snapshot version, want 1", n)
	}
	t.Logf("20 clients gone during a 100k-asset build, then 21 more: %d build, %.2f CPU-seconds in all; refresh after %v",
		c.builds.Load(), cpuSeconds()-cpu0, time.Until(d.next).Round(time.Millisecond))
}

// The Anthropic model list (GET /v1/models with anthropic-version) was
// built per request; it now shares the cached build with the OpenAI list
// and /v1/models/{id}.
func TestModelListsShareOneBuild(t *testing.T) {
	s := newStack(t)
	n0 := s.srv.models.builds.Load()
	for i := 0; i < 10; i++ {
		for _, h := range []string{"", "2023-06-01"} {
			req, _ := http.NewRequest("GET", s.url+"/v1/models", nil)
			req.Header.Set("Authorization", "Bearer "+testKey)
			if h != "" {
				req.Header.Set("anthropic-version", h)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !contains(body, `"llama3.1:8b"`) {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		}
	}
	// One build per snapshot version seen (the watcher may publish a new
	// one meanwhile, and a refresh comes after a second): far fewer than
	// the 20 requests.
	if n := s.srv.models.builds.Load() - n0; n < 1 || n > 3 {
		t.Fatalf("%d builds for 20 model-list requests", n)
	}
}
