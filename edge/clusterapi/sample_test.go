package clusterapi

import (
	"bytes"
	"flag"
	"net"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
)

var update = flag.Bool("update", false, "rewrite golden files")

// sampleFleet is the fleet the README's routes/match example runs on.
func sampleFleet(t *testing.T) *fleet.Snapshot {
	cat, err := state.LoadCatalogFile("../../routing/testdata/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dl := time.Now().Add(time.Hour)
	mk := func(host, name string, kind fleet.Kind, m fleet.Metrics, st fleet.ServiceStats, assets ...fleet.Asset) *fleet.ServiceEntry {
		return &fleet.ServiceEntry{Service: &fleet.Service{ID: host + "/" + name, HostID: host, Name: name, Kind: kind, Healthy: true,
			Endpoint: "http://" + host + ":11434", Assets: assets, Metrics: m}, Stats: st, Deadline: dl}
	}
	svcs := []*fleet.ServiceEntry{
		mk("gpu-1", "ollama", fleet.KindChat,
			fleet.Metrics{LatencyMS: 30, TokensPerSecond: 45, VRAMTotalBytes: 24 << 30, VRAMUsedBytes: 20 << 30, QueueDepth: 1},
			fleet.ServiceStats{Requests: 500, LatencyMS: 1400, TokensPerSec: 44},
			fleet.Asset{Name: "qwen3-coder:30b", Family: "qwen3", Loaded: true, Tags: []string{"code"}},
			fleet.Asset{Name: "qwen3:8b", Family: "qwen3"}),
		mk("gpu-2", "vllm", fleet.KindChat,
			fleet.Metrics{LatencyMS: 12, TokensPerSecond: 90, VRAMTotalBytes: 48 << 30, VRAMUsedBytes: 30 << 30},
			fleet.ServiceStats{Requests: 900, LatencyMS: 650, TokensPerSec: 88},
			fleet.Asset{Name: "qwen3:8b", Family: "qwen3", Loaded: true},
			fleet.Asset{Name: "llama3.1:8b", Family: "llama", Loaded: true}),
		mk("cpu-1", "llamacpp", fleet.KindChat,
			fleet.Metrics{LatencyMS: 80, TokensPerSecond: 9, InFlight: 2},
			fleet.ServiceStats{Requests: 120, LatencyMS: 5200, TokensPerSec: 9},
			fleet.Asset{Name: "llama3.1:8b", Family: "llama", Loaded: true}),
		mk("cpu-1", "embed", fleet.KindEmbeddings, fleet.Metrics{LatencyMS: 5}, fleet.ServiceStats{},
			fleet.Asset{Name: "nomic-embed-text", Family: "nomic-bert", Loaded: true}),
	}
	snap := &fleet.Snapshot{Version: 1, BuiltAt: time.Now(), RedisOK: true, Hosts: map[string]*fleet.HostEntry{},
		ByID: map[string]*fleet.ServiceEntry{}, AssetServices: map[string][]*fleet.ServiceEntry{}, Catalog: cat,
		CatalogVersion: cat.Version, Bench: map[string][]fleet.BenchSummary{
			"qwen3-coder:30b": {{Model: "qwen3-coder:30b", Workload: "chat.short_reasoning", Samples: 40, Quality: 0.85, LatencyMS: 1500}},
			"qwen3:8b":        {{Model: "qwen3:8b", Workload: "chat.short_reasoning", Samples: 40, Quality: 0.62, LatencyMS: 700}},
		}}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].ID < svcs[j].ID })
	for _, s := range svcs {
		snap.Services = append(snap.Services, s)
		snap.ByID[s.ID] = s
		snap.Hosts[s.HostID] = &fleet.HostEntry{Host: fleet.Host{ID: s.HostID}, Deadline: dl}
		for _, a := range s.Assets {
			snap.AssetServices[a.Name] = append(snap.AssetServices[a.Name], s)
		}
	}
	return snap
}

// TestSampleCatalogMatch produces the routes/match output shown in
// routing/README.md (golden file; go test -run SampleCatalog -update).
func TestSampleCatalogMatch(t *testing.T) {
	snap := sampleFleet(t)
	r, err := routing.New(routing.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := New(Deps{Snapshot: func() *fleet.Snapshot { return snap }, Router: r,
		Authorize: func(*fasthttp.RequestCtx, fleet.Scope) bool { return true }})
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { api.Handle(ctx) }}
	go srv.Serve(ln)
	defer srv.Shutdown()
	c := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	for _, tc := range []struct{ file, body string }{
		{"match_coder.json", `{"role":"coder","prompt":"fix the off-by-one in this python loop"}`},
		{"match_task.json", `{"task":"write python code for a CSV parser"}`},
	} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://edge/v1/cluster/routes/match")
		req.Header.SetMethod("POST")
		req.SetBodyString(tc.body)
		if err := c.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			t.Fatalf("%s: %d %s", tc.file, resp.StatusCode(), resp.Body())
		}
		got := append([]byte("POST /v1/cluster/routes/match "+tc.body+"\n----------\n"), resp.Body()...)
		path := "../../routing/testdata/" + tc.file
		if *update {
			os.WriteFile(path, got, 0o644)
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file; got:\n%s", tc.file, got)
		}
	}
}
