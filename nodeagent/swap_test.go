package nodeagent

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testollama"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/state"
)

const gib = int64(1) << 30

// sendSwap sends one command as an edge does and waits for its result.
func sendSwap(t *testing.T, s *state.Store, cmd fleet.SwapCommand, wait time.Duration) fleet.SwapResult {
	t.Helper()
	ctx := context.Background()
	if cmd.Deadline.IsZero() {
		cmd.Deadline = time.Now().Add(wait)
	}
	if _, err := s.SendSwap(ctx, &cmd); err != nil {
		t.Fatal(err)
	}
	host := state.SwapHost(cmd.Service)
	var r fleet.SwapResult
	waitFor(t, wait+5*time.Second, "result of "+cmd.ID, func() bool {
		var found bool
		var err error
		r, found, err = s.SwapResult(ctx, host, cmd.ID)
		if err != nil {
			t.Fatal(err)
		}
		return found
	})
	return r
}

func assetOf(st fleet.NodeState, svc, model string) (fleet.Asset, fleet.Service, bool) {
	for _, s := range st.Services {
		if s.Name != svc {
			continue
		}
		for _, a := range s.Assets {
			if a.Name == model {
				return a, s, true
			}
		}
	}
	return fleet.Asset{}, fleet.Service{}, false
}

// TestSwapOllamaSim: the agent loads and unloads on an Ollama (simulated,
// server/sched.go's behaviour), answers each command, and its next beat —
// at once, not at the next interval — shows the new loaded state and VRAM.
// A busy model's unload does not happen before its request ends (the
// command expires); a service that cannot swap and an unknown model fail
// with what was wrong; a command past its deadline is never run.
func TestSwapOllamaSim(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	ol := startSim(t, sim.Config{Flavor: sim.FlavorOllama, VRAMTotal: 4 * gib, Models: []sim.Model{
		{Name: "m1:latest", SizeVRAM: 2 * gib}, {Name: "m2:latest", SizeVRAM: 2 * gib}, {Name: "m3:latest", SizeVRAM: 2 * gib},
	}, Behavior: sim.Behavior{LoadTime: 50 * time.Millisecond}})
	vl := startSim(t, sim.Config{Flavor: sim.FlavorVLLM, Models: []sim.Model{{Name: "v1"}}})
	a := newAgent(t, Config{HostID: "sw1", Interval: time.Minute, TTL: 3 * time.Minute, Services: []ServiceConfig{
		{Name: "ollama", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama, VRAMTotal: 4 * gib},
		{Name: "vllm", Endpoint: vl.URL(), Protocol: fleet.ProtocolVLLM},
	}}, store)
	runAgent(t, a)
	waitFor(t, 5*time.Second, "first beat", func() bool { _, ok := readNode(t, store, "sw1"); return ok })
	st, _ := readNode(t, store, "sw1")
	if _, svc, _ := assetOf(st, "ollama", "m1:latest"); svc.Swap != fleet.SwapOllama || svc.Metrics.VRAMTotalBytes != 4*gib {
		t.Fatalf("ollama service: swap %q, vram total %d", svc.Swap, svc.Metrics.VRAMTotalBytes)
	}
	if _, svc, _ := assetOf(st, "vllm", "v1"); svc.Swap != fleet.SwapNone {
		t.Fatalf("vllm says it can swap: %q", svc.Swap)
	}

	r := sendSwap(t, store, fleet.SwapCommand{ID: "c1", Op: fleet.SwapLoad, Service: "sw1/ollama", Model: "m1:latest", KeepAliveMS: -1}, 10*time.Second)
	if r.Status != fleet.SwapDone || r.By != "node" {
		t.Fatalf("load: %+v", r)
	}
	// The interval is a minute: only the beat after the command shows it.
	waitFor(t, 10*time.Second, "beat showing m1 loaded", func() bool {
		st, _ := readNode(t, store, "sw1")
		as, svc, _ := assetOf(st, "ollama", "m1:latest")
		return as.Loaded && as.SizeVRAM == 2*gib && svc.Metrics.VRAMUsedBytes == 2*gib
	})
	if res := ol.Resident(); len(res) != 1 || res[0].Name != "m1:latest" || res[0].ExpiresAt.Before(time.Now().Add(24*time.Hour)) {
		t.Fatalf("resident %+v: want m1 kept forever (keep_alive -1)", res)
	}

	r = sendSwap(t, store, fleet.SwapCommand{ID: "c2", Op: fleet.SwapUnload, Service: "sw1/ollama", Model: "m1:latest"}, 10*time.Second)
	if r.Status != fleet.SwapDone {
		t.Fatalf("unload: %+v", r)
	}
	waitFor(t, 10*time.Second, "beat showing m1 unloaded", func() bool {
		st, _ := readNode(t, store, "sw1")
		as, svc, _ := assetOf(st, "ollama", "m1:latest")
		return !as.Loaded && svc.Metrics.VRAMUsedBytes == 0
	})

	// A model with a request in flight: its unload waits for the request
	// (expireRunner), so a short deadline expires and it stays loaded.
	ol.Update(func(b *sim.Behavior) { b.ChunkInterval = 50 * time.Millisecond; b.Chunks = 40 })
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(ol.URL()+"/api/generate", "application/json", strings.NewReader(`{"model":"m2:latest","prompt":"hi","stream":false}`))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, 5*time.Second, "m2 busy", func() bool {
		for _, res := range ol.Resident() {
			if res.Name == "m2:latest" && res.InUse > 0 && !res.Loading {
				return true
			}
		}
		return false
	})
	r = sendSwap(t, store, fleet.SwapCommand{ID: "c3", Op: fleet.SwapUnload, Service: "sw1/ollama", Model: "m2:latest", Deadline: time.Now().Add(300 * time.Millisecond)}, time.Second)
	if r.Status != fleet.SwapExpired || !strings.Contains(r.Error, "in flight") {
		t.Fatalf("unload of a busy model: %+v, want expired", r)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	r = sendSwap(t, store, fleet.SwapCommand{ID: "c4", Op: fleet.SwapLoad, Service: "sw1/vllm", Model: "v1"}, 5*time.Second)
	if r.Status != fleet.SwapFailed || !strings.Contains(r.Error, "cannot load") {
		t.Fatalf("command to a vLLM: %+v", r)
	}
	r = sendSwap(t, store, fleet.SwapCommand{ID: "c5", Op: fleet.SwapLoad, Service: "sw1/ollama", Model: "nope"}, 5*time.Second)
	if r.Status != fleet.SwapFailed || !strings.Contains(r.Error, "not found") {
		t.Fatalf("load of an unknown model: %+v, want the upstream's 404", r)
	}
	loadsBefore := ol.Stats().Loads
	r = sendSwap(t, store, fleet.SwapCommand{ID: "c6", Op: fleet.SwapLoad, Service: "sw1/ollama", Model: "m3:latest", Deadline: time.Now().Add(-time.Second)}, time.Second)
	if r.Status != fleet.SwapExpired {
		t.Fatalf("command past its deadline: %+v", r)
	}
	if ol.Stats().Loads != loadsBefore {
		t.Fatal("a command past its deadline was run")
	}
}

// TestSwapOllamaAlias: two names of one blob (an `ollama cp` alias) share
// one runner, and /api/ps lists it once, under the name that loaded it
// (server/sched.go keys runners by ModelPath; PsHandler reports the
// runner's model; simulated by sim.Model.CopyOf). A load of the other name
// is confirmed by the digest both share, beats show both names loaded, and
// an unload through either name is confirmed once the runner is gone.
func TestSwapOllamaAlias(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	ol := startSim(t, sim.Config{Flavor: sim.FlavorOllama, VRAMTotal: 4 * gib, Models: []sim.Model{
		{Name: "llama3.2:1b", SizeVRAM: 2 * gib}, {Name: "mine:latest", CopyOf: "llama3.2:1b"}, {Name: "other:latest", SizeVRAM: 2 * gib},
	}, Behavior: sim.Behavior{LoadTime: 20 * time.Millisecond}})
	a := newAgent(t, Config{HostID: "sw4", Interval: time.Minute, TTL: 3 * time.Minute, Services: []ServiceConfig{
		{Name: "ollama", Endpoint: ol.URL(), Protocol: fleet.ProtocolOllama, VRAMTotal: 4 * gib}}}, store)
	runAgent(t, a)
	waitFor(t, 5*time.Second, "first beat", func() bool { _, ok := readNode(t, store, "sw4"); return ok })
	loaded := func(want ...bool) func() bool {
		return func() bool {
			st, _ := readNode(t, store, "sw4")
			for i, name := range []string{"llama3.2:1b", "mine:latest", "other:latest"} {
				if as, _, ok := assetOf(st, "ollama", name); !ok || as.Loaded != want[i] {
					return false
				}
			}
			return true
		}
	}

	for i, model := range []string{"llama3.2:1b", "mine:latest"} {
		id := "a" + strconv.Itoa(i)
		if r := sendSwap(t, store, fleet.SwapCommand{ID: id, Op: fleet.SwapLoad, Service: "sw4/ollama", Model: model}, 10*time.Second); r.Status != fleet.SwapDone {
			t.Fatalf("load of %s: %+v", model, r)
		}
	}
	if res := ol.Resident(); len(res) != 1 || res[0].Name != "llama3.2:1b" || ol.Stats().Loads != 1 {
		t.Fatalf("resident %+v, %d loads: want one runner, under its first name", res, ol.Stats().Loads)
	}
	waitFor(t, 10*time.Second, "beat showing both names loaded", loaded(true, true, false))
	st, _ := readNode(t, store, "sw4")
	if as, svc, _ := assetOf(st, "ollama", "mine:latest"); as.SizeVRAM != 2*gib || svc.Metrics.VRAMUsedBytes != 2*gib {
		t.Fatalf("alias vram %d, service vram used %d: want the one runner's 2 GiB, counted once", as.SizeVRAM, svc.Metrics.VRAMUsedBytes)
	}

	if r := sendSwap(t, store, fleet.SwapCommand{ID: "a2", Op: fleet.SwapUnload, Service: "sw4/ollama", Model: "mine:latest"}, 10*time.Second); r.Status != fleet.SwapDone {
		t.Fatalf("unload through the alias: %+v", r)
	}
	if res := ol.Resident(); len(res) != 0 {
		t.Fatalf("resident %+v after unloading the alias", res)
	}
	waitFor(t, 10*time.Second, "beat showing both names unloaded", loaded(false, false, false))

	// Loaded first through the alias: /api/ps names the alias, and the
	// source is loaded too.
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "a3", Op: fleet.SwapLoad, Service: "sw4/ollama", Model: "mine"}, 10*time.Second); r.Status != fleet.SwapDone {
		t.Fatalf("load of the alias: %+v", r)
	}
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "a4", Op: fleet.SwapLoad, Service: "sw4/ollama", Model: "llama3.2:1b"}, 10*time.Second); r.Status != fleet.SwapDone {
		t.Fatalf("load of the source after its alias: %+v", r)
	}
	waitFor(t, 10*time.Second, "beat showing both names loaded", loaded(true, true, false))
	// A model of another blob is not taken for them.
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "a5", Op: fleet.SwapUnload, Service: "sw4/ollama", Model: "other:latest"}, 10*time.Second); r.Status != fleet.SwapDone {
		t.Fatalf("unload of a model not loaded: %+v", r)
	}
	if res := ol.Resident(); len(res) != 1 || res[0].Name != "mine:latest" {
		t.Fatalf("resident %+v", res)
	}
}

// TestSwapRealOllamaAlias: the same on a real Ollama 0.17.4, with an alias
// made through its own POST /api/copy (ollama cp).
func TestSwapRealOllamaAlias(t *testing.T) {
	ol := testollama.Private(t)
	alias := "tiny-alias:latest"
	if status, body := ol.Do(t, http.MethodPost, "/api/copy", map[string]string{"source": testollama.ChatModel, "destination": alias}); status != http.StatusOK {
		t.Fatalf("POST /api/copy: %d %s", status, body)
	}
	store := realOllamaAgent(t, "sw5", ol)
	model := testollama.ChatModel + ":latest"
	for i, m := range []string{model, alias} {
		if r := sendSwap(t, store, fleet.SwapCommand{ID: "ra" + strconv.Itoa(i), Op: fleet.SwapLoad, Service: "sw5/ollama", Model: m, KeepAliveMS: 600000}, time.Minute); r.Status != fleet.SwapDone {
			t.Fatalf("load of %s on a real Ollama: %+v\n%s", m, r, ol.Log())
		}
	}
	_, ps := ol.Do(t, http.MethodGet, "/api/ps", nil)
	if !bytes.Contains(ps, []byte(`"`+model+`"`)) || bytes.Contains(ps, []byte(`"`+alias+`"`)) {
		t.Fatalf("/api/ps after loading both names: %s (want one runner, under %s)", ps, model)
	}
	waitFor(t, 30*time.Second, "beat showing both loaded", func() bool {
		st, _ := readNode(t, store, "sw5")
		x, _, _ := assetOf(st, "ollama", model)
		y, _, _ := assetOf(st, "ollama", alias)
		return x.Loaded && y.Loaded
	})
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "ra2", Op: fleet.SwapUnload, Service: "sw5/ollama", Model: alias}, time.Minute); r.Status != fleet.SwapDone {
		t.Fatalf("unload through the alias on a real Ollama: %+v", r)
	}
	if _, ps = ol.Do(t, http.MethodGet, "/api/ps", nil); bytes.Contains(ps, []byte(`"`+model+`"`)) {
		t.Fatalf("/api/ps after unloading the alias: %s", ps)
	}
}

// TestSwapLlamaCppRouter: the same against llama.cpp in router mode
// (simulated: POST /models/load answers at once and loads in the
// background; GET /models says when it is loaded).
func TestSwapLlamaCppRouter(t *testing.T) {
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	lc := startSim(t, sim.Config{Flavor: sim.FlavorLlamaCPP, Router: sim.On, Models: []sim.Model{{Name: "a"}, {Name: "b"}},
		Behavior: sim.Behavior{LoadTime: 100 * time.Millisecond}})
	a := newAgent(t, Config{HostID: "sw2", Interval: time.Minute, TTL: 3 * time.Minute, Services: []ServiceConfig{
		{Name: "llama", Endpoint: lc.URL(), Protocol: fleet.ProtocolLlamaCPP}}}, store)
	runAgent(t, a)
	waitFor(t, 5*time.Second, "first beat", func() bool { _, ok := readNode(t, store, "sw2"); return ok })
	st, _ := readNode(t, store, "sw2")
	if as, svc, _ := assetOf(st, "llama", "a"); svc.Swap != fleet.SwapRouter || as.Loaded {
		t.Fatalf("router service: swap %q, a loaded %v", svc.Swap, as.Loaded)
	}
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "l1", Op: fleet.SwapLoad, Service: "sw2/llama", Model: "a"}, 10*time.Second); r.Status != fleet.SwapDone {
		t.Fatalf("load: %+v", r)
	}
	waitFor(t, 10*time.Second, "beat showing a loaded", func() bool {
		st, _ := readNode(t, store, "sw2")
		as, _, _ := assetOf(st, "llama", "a")
		return as.Loaded
	})
	// Loading what is loaded is done (the router's 400 "already loaded").
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "l2", Op: fleet.SwapLoad, Service: "sw2/llama", Model: "a"}, 10*time.Second); r.Status != fleet.SwapDone {
		t.Fatalf("second load: %+v", r)
	}
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "l3", Op: fleet.SwapUnload, Service: "sw2/llama", Model: "a"}, 10*time.Second); r.Status != fleet.SwapDone {
		t.Fatalf("unload: %+v", r)
	}
	waitFor(t, 10*time.Second, "beat showing a unloaded", func() bool {
		st, _ := readNode(t, store, "sw2")
		as, _, _ := assetOf(st, "llama", "a")
		return !as.Loaded
	})
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "l4", Op: fleet.SwapLoad, Service: "sw2/llama", Model: "zz"}, 5*time.Second); r.Status != fleet.SwapFailed || !strings.Contains(r.Error, "not found") {
		t.Fatalf("unknown model: %+v", r)
	}
}

// realOllamaAgent runs an agent for host with one service, "ollama", on
// ol, and waits for its first beat.
func realOllamaAgent(t *testing.T, host string, ol *testollama.Server) *state.Store {
	t.Helper()
	c, prefix := testredis.New(t)
	store := state.New(c, prefix)
	a := newAgent(t, Config{HostID: host, Interval: time.Minute, TTL: 3 * time.Minute, Services: []ServiceConfig{
		{Name: "ollama", Endpoint: ol.URL, Protocol: fleet.ProtocolOllama}}}, store)
	runAgent(t, a)
	waitFor(t, 30*time.Second, "first beat", func() bool { _, ok := readNode(t, store, host); return ok })
	return store
}

// TestSwapRealOllama: load and unload on a real Ollama 0.17.4, confirmed
// through its own /api/ps.
func TestSwapRealOllama(t *testing.T) {
	ol := testollama.Private(t)
	store := realOllamaAgent(t, "sw3", ol)
	model := testollama.ChatModel + ":latest"
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "o1", Op: fleet.SwapLoad, Service: "sw3/ollama", Model: model, KeepAliveMS: 600000}, time.Minute); r.Status != fleet.SwapDone {
		t.Fatalf("load on a real Ollama: %+v\n%s", r, ol.Log())
	}
	_, ps := ol.Do(t, http.MethodGet, "/api/ps", nil)
	if !bytes.Contains(ps, []byte(`"`+model+`"`)) {
		t.Fatalf("/api/ps after load: %s", ps)
	}
	waitFor(t, 30*time.Second, "beat showing it loaded", func() bool {
		st, _ := readNode(t, store, "sw3")
		as, _, _ := assetOf(st, "ollama", model)
		return as.Loaded
	})
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "o2", Op: fleet.SwapUnload, Service: "sw3/ollama", Model: model}, time.Minute); r.Status != fleet.SwapDone {
		t.Fatalf("unload on a real Ollama: %+v", r)
	}
	_, ps = ol.Do(t, http.MethodGet, "/api/ps", nil)
	if bytes.Contains(ps, []byte(`"`+model+`"`)) {
		t.Fatalf("/api/ps after unload: %s", ps)
	}
	if r := sendSwap(t, store, fleet.SwapCommand{ID: "o3", Op: fleet.SwapLoad, Service: "sw3/ollama", Model: "absent-model"}, time.Minute); r.Status != fleet.SwapFailed || !strings.Contains(r.Error, "not found") {
		t.Fatalf("load of an absent model on a real Ollama: %+v", r)
	}
}
