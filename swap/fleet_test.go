package swap_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/nodeagent"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
	"github.com/geniehive/geniehive/swap"
)

const gib = int64(1) << 30

// budget is every simulated node's VRAM: two 2 GiB models fit.
const budget = 4 * gib

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func logger() *slog.Logger {
	if os.Getenv("GENIEHIVE_SWAP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return quiet
}

// models are the six 2 GiB models every node offers.
var models = []string{"m1:latest", "m2:latest", "m3:latest", "m4:latest", "m5:latest", "m6:latest"}

type node struct {
	id     string
	sim    *sim.Server
	client redis.UniversalClient // the agent's own connection (closed to kill it)
	cancel context.CancelFunc
	done   chan error
}

type edgeH struct {
	id     string
	url    string
	r      *replica.Replica
	cancel context.CancelFunc
	done   chan error
}

type harness struct {
	t      *testing.T
	st     *state.Store
	prefix string
	nodes  map[string]*node
	edges  []*edgeH
}

// newHarness starts two simulated Ollamas (each 4 GiB of VRAM, six 2 GiB
// models, the given ones loaded), a node agent beside each, and two edges
// with swapping on, all on one real Redis.
func newHarness(t *testing.T, loaded map[string][]string, beh map[string]sim.Behavior, mutate func(*replica.Config)) *harness {
	t.Helper()
	c, prefix := testredis.New(t)
	h := &harness{t: t, st: state.New(c, prefix), prefix: prefix, nodes: map[string]*node{}}
	for _, id := range []string{"n1", "n2"} {
		b := sim.Behavior{LoadTime: 100 * time.Millisecond, UnloadTime: 20 * time.Millisecond, Chunks: 4, ChunkInterval: time.Millisecond}
		if x, ok := beh[id]; ok {
			b = x
		}
		var ms []sim.Model
		for _, m := range models {
			ms = append(ms, sim.Model{Name: m, Family: "llama", SizeVRAM: 2 * gib, Size: 2 * gib, Loaded: contains(loaded[id], m)})
		}
		up, err := sim.Start(sim.Config{Flavor: sim.FlavorOllama, VRAMTotal: budget, Models: ms, Behavior: b})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { up.Close() })
		h.nodes[id] = &node{id: id, sim: up}
		h.startAgent(id)
	}
	h.waitFor("both nodes registered", 30*time.Second, func() bool {
		recs, _ := h.st.ReadNodes(context.Background())
		return len(recs) == 2
	})
	for _, id := range []string{"e1", "e2"} {
		h.startEdge(id, mutate)
	}
	return h
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (h *harness) startAgent(id string) {
	n := h.nodes[id]
	n.client = testredis.Client(h.t)
	a, err := nodeagent.New(nodeagent.Config{HostID: id, Interval: 200 * time.Millisecond, TTL: 3 * time.Second, DiscoveryTimeout: 200 * time.Millisecond, NvidiaSMI: "off",
		Services: []nodeagent.ServiceConfig{{Name: "ollama", Kind: fleet.KindChat, Endpoint: n.sim.URL(), Protocol: fleet.ProtocolOllama, VRAMTotal: budget}}},
		state.New(n.client, h.prefix), nodeagent.Options{Logger: logger()})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- a.Run(ctx) }()
	h.t.Cleanup(func() { cancel(); <-n.done })
}

// kill takes a node down as a crash would: its Redis connection is cut
// first, so it neither answers its command nor removes its key (which
// expires with its TTL), and its upstream is gone.
func (h *harness) kill(id string) {
	n := h.nodes[id]
	n.client.Close()
	n.cancel()
	<-n.done
	n.done <- nil // for the cleanup
	n.sim.Close()
}

func (h *harness) startEdge(id string, mutate func(*replica.Config)) *edgeH {
	var cfg replica.Config
	cfg.Edge = edge.Config{Listen: "127.0.0.1:0", ID: id, Redis: edge.RedisConfig{Prefix: h.prefix},
		Swap: swap.Settings{Enabled: true, Interval: 100 * time.Millisecond, Lease: time.Second, MinResidency: time.Millisecond,
			Idle: 300 * time.Millisecond, Cooldown: 100 * time.Millisecond, CommandTimeout: 3 * time.Second, Wait: 20 * time.Second}}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Provision(); err != nil {
		h.t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	r, err := replica.New(ctx, cfg, replica.Options{Logger: logger(), Store: h.st, Ready: func(a string) { ready <- a }})
	if err != nil {
		h.t.Fatal(err)
	}
	e := &edgeH{id: id, r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { err := r.Run(ctx); _ = r.Close(); e.done <- err }()
	select {
	case a := <-ready:
		e.url = "http://" + a
	case err := <-e.done:
		h.t.Fatalf("edge %s stopped: %v", id, err)
	case <-time.After(time.Minute):
		h.t.Fatalf("edge %s did not start", id)
	}
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-e.done:
		case <-time.After(time.Minute):
		}
	})
	h.edges = append(h.edges, e)
	return e
}

func (h *harness) waitFor(what string, d time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chat sends one chat request for model through edge e.
func chat(e *edgeH, model string) (int, string) {
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(e.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func resident(s *sim.Server) []string {
	var out []string
	for _, r := range s.Resident() {
		if !r.Loading {
			out = append(out, r.Name)
		}
	}
	return out
}

func (h *harness) records() []fleet.SwapRecord {
	recs, err := h.st.SwapRecords(context.Background(), 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

// checkInvariants: no node's VRAM ever went over budget, and no service
// ever had two commands in flight (in the log's order, a second "sent"
// for a service never precedes the first one's outcome).
func (h *harness) checkInvariants() {
	h.t.Helper()
	for id, n := range h.nodes {
		if p := n.sim.Stats().VRAMPeak; p > budget {
			h.t.Errorf("node %s: VRAM peak %d over the budget %d", id, p, budget)
		}
	}
	recs := h.records()
	open := map[string]string{}
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		switch r.Event {
		case "sent":
			if c, busy := open[r.Service]; busy {
				h.t.Errorf("command %s sent to %s while %s was in flight", r.CmdID, r.Service, c)
			}
			open[r.Service] = r.CmdID
		case "outcome":
			delete(open, r.Service)
		}
	}
}

func find(recs []fleet.SwapRecord, f func(r fleet.SwapRecord) bool) *fleet.SwapRecord {
	for i := range recs {
		if f(recs[i]) {
			return &recs[i]
		}
	}
	return nil
}

// TestSwapLoadsWhereItFits: n1 is full (m1, m2), n2 has room (m3). A
// request for m4, loaded nowhere, waits while the controller loads it on
// n2 — the node with room, nothing unloaded — and is then served there.
func TestSwapLoadsWhereItFits(t *testing.T) {
	h := newHarness(t, map[string][]string{"n1": {"m1:latest", "m2:latest"}, "n2": {"m3:latest"}}, nil, nil)
	code, body := chat(h.edges[0], "m4:latest")
	if code != 200 {
		t.Fatalf("request for m4: %d %s", code, body)
	}
	if got := resident(h.nodes["n2"].sim); !contains(got, "m4:latest") || !contains(got, "m3:latest") {
		t.Fatalf("n2 holds %v, want m3 and m4", got)
	}
	if got := resident(h.nodes["n1"].sim); len(got) != 2 || h.nodes["n1"].sim.Stats().Unloads != 0 || h.nodes["n2"].sim.Stats().Unloads != 0 {
		t.Fatalf("something was unloaded: n1 %v, unloads %d/%d", got, h.nodes["n1"].sim.Stats().Unloads, h.nodes["n2"].sim.Stats().Unloads)
	}
	h.waitFor("the load's outcome in the log", 10*time.Second, func() bool {
		return find(h.records(), func(r fleet.SwapRecord) bool {
			return r.Event == "outcome" && r.Op == fleet.SwapLoad && r.Model == "m4:latest" && r.Service == "n2/ollama" && r.Result == fleet.SwapDone
		}) != nil
	})
	recs := h.records()
	if r := find(recs, func(r fleet.SwapRecord) bool { return r.Event == "sent" && r.Model == "m4:latest" }); r == nil || !strings.Contains(r.Reason, "fits") {
		t.Fatalf("the decision does not say why: %+v", r)
	}
	h.checkInvariants()
}

// TestSwapUnloadsOnlyIdleUnpinned: both nodes are full. n1 holds m1
// (pinned in the catalog) and m2 (idle); n2 holds m3 and m4, each with a
// long request in flight through the edges. A request for m5 gets m2
// unloaded and m5 loaded on n1; m1, m3 and m4 are never unloaded.
func TestSwapUnloadsOnlyIdleUnpinned(t *testing.T) {
	slow := sim.Behavior{LoadTime: 100 * time.Millisecond, Chunks: 60, ChunkInterval: 100 * time.Millisecond}
	h := newHarness(t, map[string][]string{"n1": {"m1:latest", "m2:latest"}, "n2": {"m3:latest", "m4:latest"}},
		map[string]sim.Behavior{"n2": slow}, nil)
	ctx := context.Background()
	if err := h.st.PutCatalog(ctx, &fleet.Catalog{Swap: &fleet.SwapCatalog{Pin: []string{"m1:latest"}}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, m := range []string{"m3:latest", "m4:latest"} {
		wg.Add(1)
		go func() { defer wg.Done(); chat(h.edges[1], m) }()
	}
	defer wg.Wait()
	h.waitFor("m3 and m4 busy", 20*time.Second, func() bool {
		busy := 0
		for _, r := range h.nodes["n2"].sim.Resident() {
			if r.InUse > 0 {
				busy++
			}
		}
		return busy == 2
	})
	code, body := chat(h.edges[0], "m5:latest")
	if code != 200 {
		t.Fatalf("request for m5: %d %s", code, body)
	}
	if got := resident(h.nodes["n1"].sim); !contains(got, "m1:latest") || !contains(got, "m5:latest") || contains(got, "m2:latest") {
		t.Fatalf("n1 holds %v, want m1 (pinned) and m5, m2 unloaded", got)
	}
	if got := resident(h.nodes["n2"].sim); !contains(got, "m3:latest") || !contains(got, "m4:latest") || h.nodes["n2"].sim.Stats().Unloads != 0 {
		t.Fatalf("n2 holds %v (unloads %d): a model with requests in flight was evicted", got, h.nodes["n2"].sim.Stats().Unloads)
	}
	h.waitFor("the load's outcome in the log", 10*time.Second, func() bool {
		return find(h.records(), func(r fleet.SwapRecord) bool {
			return r.Event == "outcome" && r.Op == fleet.SwapLoad && r.Model == "m5:latest"
		}) != nil
	})
	recs := h.records()
	if r := find(recs, func(r fleet.SwapRecord) bool {
		return r.Event == "outcome" && r.Op == fleet.SwapUnload && r.Model == "m2:latest" && r.Result == fleet.SwapDone
	}); r == nil || r.For != "m5:latest" {
		t.Fatalf("no done unload of m2 for m5: %+v", recs)
	}
	for _, r := range recs {
		if r.Op == fleet.SwapUnload && r.Model != "m2:latest" && r.Event != "refused" {
			t.Errorf("unload of %s on %s: %+v", r.Model, r.Service, r)
		}
	}
	h.checkInvariants()
}

func (h *harness) leader() *edgeH {
	for _, e := range h.edges {
		if s := e.r.Swapper(); s != nil && s.Leader() {
			return e
		}
	}
	return nil
}

// TestSwapLeaseHandover: one controller at a time; when its edge stops,
// the other edge takes the lease over and the next swap is its decision.
// No service ever had two commands in flight (checkInvariants over the
// whole log, written by both).
func TestSwapLeaseHandover(t *testing.T) {
	h := newHarness(t, map[string][]string{"n1": {"m1:latest"}, "n2": {"m2:latest"}}, nil, nil)
	h.waitFor("a controller", 10*time.Second, func() bool { return h.leader() != nil })
	first := h.leader()
	for _, e := range h.edges {
		if e != first && e.r.Swapper().Leader() {
			t.Fatal("two edges hold the swap lease")
		}
	}
	var other *edgeH
	for _, e := range h.edges {
		if e != first {
			other = e
		}
	}
	if code, body := chat(other, "m3:latest"); code != 200 {
		t.Fatalf("m3 through the non-leader: %d %s", code, body)
	}
	first.cancel()
	<-first.done
	first.done <- nil
	h.waitFor("the lease handed over", 10*time.Second, func() bool { return other.r.Swapper().Leader() })
	if code, body := chat(other, "m4:latest"); code != 200 {
		t.Fatalf("m4 after the handover: %d %s", code, body)
	}
	h.waitFor("both loads settled", 10*time.Second, func() bool {
		n := 0
		for _, r := range h.records() {
			if r.Event == "outcome" && r.Op == fleet.SwapLoad && r.Result == fleet.SwapDone {
				n++
			}
		}
		return n == 2
	})
	recs := h.records()
	m3 := find(recs, func(r fleet.SwapRecord) bool { return r.Event == "sent" && r.Model == "m3:latest" })
	m4 := find(recs, func(r fleet.SwapRecord) bool { return r.Event == "sent" && r.Model == "m4:latest" })
	if m3 == nil || m4 == nil || m3.Edge != first.id || m4.Edge != other.id {
		t.Fatalf("decisions: m3 %+v, m4 %+v; want m3 by %s, m4 by %s", m3, m4, first.id, other.id)
	}
	h.checkInvariants()
}

// TestSwapNodeDiesMidSwap: the only node with room dies while loading
// (its Redis connection cut: no result, no graceful removal). The command
// expires at its deadline, decided by the controller; nothing stays in
// flight, the dead service leaves the controller's state with its key,
// and a command to a node that never reads its stream expires the same
// way.
func TestSwapNodeDiesMidSwap(t *testing.T) {
	slowLoad := sim.Behavior{LoadTime: 10 * time.Second, Chunks: 4, ChunkInterval: time.Millisecond}
	h := newHarness(t, map[string][]string{"n2": {"m1:latest", "m2:latest"}}, map[string]sim.Behavior{"n1": slowLoad},
		func(c *replica.Config) {
			c.Edge.Swap.Wait = 500 * time.Millisecond
			c.Edge.Swap.MinResidency = time.Hour
		})
	go chat(h.edges[0], "m3:latest")
	h.waitFor("the load sent to n1", 10*time.Second, func() bool {
		return find(h.records(), func(r fleet.SwapRecord) bool { return r.Event == "sent" && r.Service == "n1/ollama" }) != nil
	})
	h.waitFor("n1 loading", 10*time.Second, func() bool {
		for _, r := range h.nodes["n1"].sim.Resident() {
			if r.Loading {
				return true
			}
		}
		return false
	})
	h.kill("n1")
	// A node that never reads its stream: its heartbeat, written here, is
	// all there is of it.
	ghost := &fleet.NodeState{Host: fleet.Host{ID: "ghost"}, Services: []fleet.Service{{ID: "ghost/ollama", HostID: "ghost", Name: "ollama",
		Kind: fleet.KindChat, Protocol: fleet.ProtocolOllama, Swap: fleet.SwapOllama, Endpoint: "http://127.0.0.1:9", Healthy: true,
		Metrics: fleet.Metrics{VRAMTotalBytes: budget}, Assets: []fleet.Asset{{Name: "m9:latest", Size: gib}}}}}
	if err := h.st.WriteHeartbeat(context.Background(), ghost, time.Minute); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Demand for m9 until a load is sent to the ghost: 404 until the
		// edge's snapshot has the ghost, then requests that wait (swap.wait)
		// for a load. One waiting request alone can end before the
		// controller that holds the lease reads the usage it was counted
		// in (a CI run saw no command sent), so they continue (at most 20s).
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
			recs, _ := h.st.SwapRecords(context.Background(), 0) // not h.records: no t.Fatal off the test's goroutine
			if find(recs, func(r fleet.SwapRecord) bool { return r.Event == "sent" && r.Service == "ghost/ollama" }) != nil {
				return
			}
			if code, _ := chat(h.edges[1], "m9:latest"); code == 404 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	defer func() {
		if t.Failed() {
			for _, r := range h.records() {
				t.Logf("%+v", r)
			}
		}
	}()
	h.waitFor("both commands expired", 20*time.Second, func() bool {
		n := 0
		for _, r := range h.records() {
			if r.Event == "outcome" && r.Result == fleet.SwapExpired {
				n++
			}
		}
		return n == 2
	})
	for _, r := range h.records() {
		if r.Event == "outcome" && r.Result != fleet.SwapExpired {
			t.Errorf("outcome %+v", r)
		}
	}
	res, found, err := h.st.SwapResult(context.Background(), "n1", find(h.records(), func(r fleet.SwapRecord) bool { return r.Event == "sent" && r.Service == "n1/ollama" }).CmdID)
	if err != nil || !found || res.Status != fleet.SwapExpired || res.By == "node" {
		t.Fatalf("n1's command result %+v %v %v: want expired by an edge", res, found, err)
	}
	h.waitFor("no stuck state", 20*time.Second, func() bool {
		ctl, err := h.st.SwapControls(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for id, c := range ctl {
			if c.Cmd != nil || id == "n1/ollama" {
				return false
			}
		}
		return true
	})
	h.checkInvariants()
}

// TestSwapPolicyPushLive: a pushed bundle whose swap rule decides nothing
// stops swapping on the running edges (a request for an unloaded model
// waits out swap.wait and nothing is sent); pushing the shipped rule back
// starts it again. Meanwhile routes/match says the pick would wait for a
// load, and GET /v1/cluster/swaps lists the decision.
func TestSwapPolicyPushLive(t *testing.T) {
	h := newHarness(t, map[string][]string{"n1": {"m1:latest"}}, nil, func(c *replica.Config) { c.Edge.Swap.Wait = 700 * time.Millisecond })
	ctx := context.Background()
	push := func(version, swapRule string) {
		files := map[string]string{}
		for k, v := range policies.ShippedPolicy() {
			files[k] = v
		}
		if swapRule != "" {
			files["rego/swap.rego"] = swapRule
		}
		if err := h.st.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: version, Files: files, PushedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		want := policy.NewBundle(files).Version
		defer func() {
			if t.Failed() {
				for _, e := range h.edges {
					t.Logf("%s: %s %q", e.id, e.r.Server().Engine().Version(), e.r.Server().PolicyError())
				}
			}
		}()
		h.waitFor("both edges on "+version, 20*time.Second, func() bool {
			for _, e := range h.edges {
				if e.r.Server().Engine().Version() != want {
					return false
				}
			}
			return true
		})
	}
	push("never", "package geniehive\n\nswap := {\"schema_version\": 1, \"actions\": []}\n")
	v := match(t, h.edges[1], "m2:latest")
	if v.State != "would_wait" || v.Model != "m2:latest" || v.WaitS != 0.7 {
		t.Fatalf("routes/match swap view %+v, want would_wait for m2", v)
	}
	code, _ := chat(h.edges[0], "m2:latest")
	if code != 200 { // after the wait, n1 or n2 loads it on demand as before
		t.Fatalf("m2 after the wait: %d", code)
	}
	if r := find(h.records(), func(r fleet.SwapRecord) bool { return r.Event == "sent" }); r != nil {
		t.Fatalf("a swap was sent under a policy that decides none: %+v", r)
	}
	push("shipped-again", "")
	// The controller loads m3; a load that outlasts swap.wait (700ms, a
	// loaded machine) answers 503 model_loading, which a client retries:
	// retry on that answer only, until the load is done.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := chat(h.edges[0], "m3:latest")
		if code == 200 {
			break
		}
		if code != 503 || !strings.Contains(body, "model_loading") || time.Now().After(deadline) {
			t.Fatalf("m3: %d %s", code, body)
		}
	}
	h.waitFor("the load of m3 in the log", 10*time.Second, func() bool {
		return find(h.records(), func(r fleet.SwapRecord) bool {
			return r.Event == "outcome" && r.Model == "m3:latest" && r.Result == fleet.SwapDone
		}) != nil
	})
	var sv struct {
		Enabled    bool               `json:"enabled"`
		Controller string             `json:"controller"`
		Data       []fleet.SwapRecord `json:"data"`
	}
	getJSON(t, h.edges[1].url+"/v1/cluster/swaps?limit=5", &sv)
	if !sv.Enabled || sv.Controller == "" || len(sv.Data) == 0 || len(sv.Data) > 5 || sv.Data[0].Model != "m3:latest" {
		t.Fatalf("GET /v1/cluster/swaps: %+v", sv)
	}
	// The outcome is logged by the controller's edge when its snapshot
	// shows the model loaded; the other edge applies the same heartbeat
	// on its own, a moment earlier or later (seen: still "loading" there
	// right after the log said done).
	var m3 swap.View
	defer func() {
		if t.Failed() {
			t.Logf("edge 1's last routes/match for m3: %+v", m3)
		}
	}()
	h.waitFor("m3 loaded in edge 1's routes/match", 10*time.Second, func() bool {
		m3 = match(t, h.edges[1], "m3:latest")
		return m3.State == "loaded"
	})
	h.checkInvariants()
}

func match(t *testing.T, e *edgeH, model string) swap.View {
	t.Helper()
	resp, err := http.Post(e.url+"/v1/cluster/routes/match", "application/json", strings.NewReader(`{"model":"`+model+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Swap *swap.View `json:"swap"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 || m.Swap == nil {
		t.Fatalf("routes/match: %d %v %+v", resp.StatusCode, err, m)
	}
	return *m.Swap
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
