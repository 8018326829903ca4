package clusterapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
)

type env struct {
	store  *state.Store
	w      *state.Watcher
	router *routing.Router
	client *fasthttp.Client
}

// keys: "r" reader, "o" operator, "c" client; anything else is 401.
func authorize(ctx *fasthttp.RequestCtx, need fleet.Scope) bool {
	scope := map[string]fleet.Scope{"Bearer r": fleet.ScopeReader, "Bearer o": fleet.ScopeOperator, "Bearer c": fleet.ScopeClient}[string(ctx.Request.Header.Peek("Authorization"))]
	if scope == "" {
		writeError(ctx, 401, "invalid_request_error", "invalid_api_key", "", "missing or unknown API key")
		return false
	}
	if !scope.Allows(need) {
		writeError(ctx, 403, "invalid_request_error", "insufficient_scope", "", "this key lacks "+string(need)+" scope")
		return false
	}
	return true
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c, prefix := testredis.New(t)
	e := &env{store: state.New(c, prefix)}
	e.w = state.NewWatcher(e.store, state.WatcherOptions{})
	ctx := context.Background()
	svcs := []fleet.Service{
		{ID: "h1/ollama", HostID: "h1", Name: "ollama", Kind: fleet.KindChat, Protocol: fleet.ProtocolOllama, Healthy: true, Endpoint: "http://127.0.0.1:1",
			Assets: []fleet.Asset{{Name: "qwen3:8b", Family: "qwen3", Loaded: true, Tags: []string{"general"}},
				{Name: "qwen3-coder:30b", Family: "qwen3", Tags: []string{"code"}}},
			Metrics: fleet.Metrics{LatencyMS: 40, TokensPerSecond: 35}},
	}
	if err := e.store.WriteHeartbeat(ctx, &fleet.NodeState{Host: fleet.Host{ID: "h1"}, Services: svcs}, time.Minute); err != nil {
		t.Fatal(err)
	}
	cat := &fleet.Catalog{Roles: []fleet.Role{
		{Name: "coder", Description: "writes and reviews code", Operation: fleet.KindChat, Candidates: []string{"qwen3-coder:30b", "qwen3:8b"}, Workloads: []string{"chat.short_reasoning"}},
		{Name: "support", Description: "answers customer support tickets concisely", Operation: fleet.KindChat, Candidates: []string{"qwen3:8b"}, Workloads: []string{"chat.concise_support"}},
	}}
	if err := e.store.PutCatalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	if err := e.w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := routing.New(routing.Config{}, e.store, state.NewInflight(e.store, "edge-t", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	e.router = r
	api := New(Deps{Store: e.store, Snapshot: e.w.Current, Router: r, Authorize: authorize,
		Health: func() EdgeHealth { return EdgeHealth{ID: "edge-t", StartedAt: time.Now()} },
		Policy: func() PolicyStatus { return PolicyStatus{Engine: "go", Version: "builtin-go-v1"} }})
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if !api.Handle(ctx) {
			ctx.SetStatusCode(418)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(); ln.Close() })
	e.client = &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	return e
}

func (e *env) do(t *testing.T, method, path, key string, body []byte) (int, []byte) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://edge" + path)
	req.Header.SetMethod(method)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.SetBody(body)
	if err := e.client.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

func TestReadsAndScopes(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"hosts", "services", "roles", "benchmarks", "health", "edges", "policy", "routes/resolve?model=coder"} {
		if code, body := e.do(t, "GET", "/v1/cluster/"+p, "r", nil); code != 200 || !json.Valid(body) {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		if code, _ := e.do(t, "GET", "/v1/cluster/"+p, "c", nil); code != 403 {
			t.Fatalf("GET %s with a client key: %d, want 403", p, code)
		}
		if code, _ := e.do(t, "GET", "/v1/cluster/"+p, "", nil); code != 401 {
			t.Fatalf("GET %s without a key: %d, want 401", p, code)
		}
	}
	if code, _ := e.do(t, "POST", "/v1/cluster/benchmarks", "r", []byte(`{}`)); code != 403 {
		t.Fatalf("ingest with reader key: %d, want 403", code)
	}
	if code, body := e.do(t, "DELETE", "/v1/cluster/hosts", "o", nil); code != 405 || !bytes.Contains(body, []byte(`"method_not_allowed"`)) {
		t.Fatalf("DELETE hosts: %d %s", code, body)
	}
	if code, _ := e.do(t, "GET", "/v1/cluster/nope", "r", nil); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
	// An anonymous caller cannot tell unknown paths from known ones
	// (issue 16: enumeration before auth).
	for _, p := range []string{"nope", "keys", "hosts"} {
		if code, _ := e.do(t, "GET", "/v1/cluster/"+p, "", nil); code != 401 {
			t.Fatalf("GET /v1/cluster/%s without a key: %d, want 401", p, code)
		}
	}
	if code, _ := e.do(t, "GET", "/v1/models", "r", nil); code != 418 {
		t.Fatalf("non-cluster path was handled: %d", code)
	}
	_, body := e.do(t, "GET", "/v1/cluster/roles", "r", nil)
	if !bytes.Contains(body, []byte(`"asset:qwen3-coder:30b"`)) {
		t.Fatalf("roles do not show resolution: %s", body)
	}
	_, body = e.do(t, "GET", "/v1/cluster/health", "r", nil)
	var h healthView
	if err := json.Unmarshal(body, &h); err != nil || h.Status != "ok" || !h.Redis.OK || h.Snapshot.Services != 1 || h.Edge.ID != "edge-t" {
		t.Fatalf("health: %s", body)
	}
}

func TestRoutesMatchIsADryRun(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// Make the role round-robin: match must peek, not step, the counter.
	cat, _ := e.store.GetCatalog(ctx)
	cat.Roles[0].Strategy = routing.StrategyRoundRobin
	if err := e.store.PutCatalog(ctx, cat); err != nil {
		t.Fatal(err)
	}
	e.w.Refresh(ctx)
	before := keysWith(t, e, "rr:")
	for i := 0; i < 3; i++ {
		code, body := e.do(t, "POST", "/v1/cluster/routes/match", "r", []byte(`{"role":"coder","prompt":"fix this python function"}`))
		if code != 200 {
			t.Fatalf("match: %d %s", code, body)
		}
		var m MatchResponse
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if m.Routing == nil || m.Routing.Strategy != routing.StrategyRoundRobin || m.Routing.Picked != "h1/ollama" || len(m.Routing.Candidates) != 2 {
			t.Fatalf("match: %s", body)
		}
		if _, ok := m.Routing.Candidates[0].Signals["bench_quality"]; !ok {
			t.Fatalf("signals missing: %s", body)
		}
	}
	if after := keysWith(t, e, "rr:"); after != before {
		t.Fatalf("routes/match changed round-robin counters (%d -> %d keys)", before, after)
	}
	// Free text picks the role.
	_, body := e.do(t, "POST", "/v1/cluster/routes/match", "r", []byte(`{"task":"answer a customer support ticket"}`))
	if !bytes.Contains(body, []byte(`"resolved_as": "role support (best match for the task)"`)) {
		t.Fatalf("task match: %s", body)
	}
	for _, b := range []string{`{}`, `{"model":`, `{"model":"x","bogus":1}`, `{"model":"x","operation":"dance"}`} {
		if code, body := e.do(t, "POST", "/v1/cluster/routes/match", "r", []byte(b)); code != 400 || !bytes.Contains(body, []byte(`"error"`)) {
			t.Fatalf("match %s: %d %s", b, code, body)
		}
	}
}

func keysWith(t *testing.T, e *env, part string) int {
	return len(testredis.Keys(t, e.store.Client(), e.store.Prefix()+part+"*"))
}

func TestBenchmarkIngest(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good := `{"workload":"chat.short_reasoning","model":"qwen3-coder:30b","service":"h1/ollama","started_at":"2026-01-02T03:04:05Z",
	 "samples":[{"prompt_id":"a1","latency_ms":800,"ttft_ms":90,"tokens_per_sec":40,"quality":1,"ok":true},
	            {"prompt_id":"a2","latency_ms":1200,"ttft_ms":100,"tokens_per_sec":30,"quality":0.5,"ok":true}],
	 "summary":{"samples":2}}`
	bad := map[string]string{
		"malformed":         `{"workload":`,
		"unknown field":     strings.Replace(good, `"summary"`, `"sumary"`, 1),
		"unknown model":     strings.Replace(good, `"model":"qwen3-coder:30b"`, `"model":"gpt-9"`, 1),
		"workload mismatch": strings.Replace(good, `"prompt_id":"a2"`, `"prompt_id":"a2","workload":"chat.other"`, 1),
		"quality range":     strings.Replace(good, `"quality":0.5`, `"quality":1.5`, 1),
		"missing quality":   strings.Replace(good, `,"quality":0.5`, ``, 1),
		"ttft > latency":    strings.Replace(good, `"ttft_ms":90`, `"ttft_ms":9000`, 1),
		"negative latency":  strings.Replace(good, `"latency_ms":800`, `"latency_ms":-1`, 1),
		"bad workload":      strings.Replace(good, `"workload":"chat.short_reasoning"`, `"workload":"a b"`, 1),
		"no samples":        `{"workload":"w","model":"qwen3:8b","started_at":"2026-01-02T03:04:05Z","samples":[]}`,
		"service lacks it":  strings.Replace(good, `"service":"h1/ollama"`, `"service":"h9/x"`, 1),
		"no started_at":     strings.Replace(good, `"started_at":"2026-01-02T03:04:05Z",`, ``, 1),
		"trailing":          good + `{}`,
	}
	for name, b := range bad {
		code, body := e.do(t, "POST", "/v1/cluster/benchmarks", "o", []byte(b))
		var er struct {
			Error struct{ Message, Type string } `json:"error"`
		}
		if code != 400 || json.Unmarshal(body, &er) != nil || er.Error.Type != "invalid_request_error" || !strings.Contains(er.Error.Message, "nothing stored") {
			t.Fatalf("%s: %d %s", name, code, body)
		}
		if n := keysWith(t, e, "bench"); n != 0 {
			t.Fatalf("%s: a refused report wrote %d keys", name, n)
		}
	}
	// A good report lands, and a lookup form of the model name is accepted.
	code, body := e.do(t, "POST", "/v1/cluster/benchmarks", "o", []byte(good))
	if code != 200 {
		t.Fatalf("good report: %d %s", code, body)
	}
	var ir IngestResponse
	if err := json.Unmarshal(body, &ir); err != nil || ir.Accepted != 2 || ir.Summary.Quality != 0.75 {
		t.Fatalf("ingest answer: %s", body)
	}
	s, _ := e.store.BenchSamples(ctx, "qwen3-coder:30b", "chat.short_reasoning", 10)
	if len(s) != 2 {
		t.Fatalf("stored %d samples", len(s))
	}
	// Visible in GET /benchmarks and in a routes/match signal once the
	// snapshot has it.
	if err := e.w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	_, body = e.do(t, "GET", "/v1/cluster/benchmarks?samples=5", "r", nil)
	if !bytes.Contains(body, []byte(`"workload": "chat.short_reasoning"`)) || !bytes.Contains(body, []byte(`"prompt_id": "a1"`)) {
		t.Fatalf("benchmarks: %s", body)
	}
	_, body = e.do(t, "POST", "/v1/cluster/routes/match", "r", []byte(`{"role":"coder"}`))
	var m MatchResponse
	json.Unmarshal(body, &m)
	var found bool
	for _, c := range m.Routing.Candidates {
		if c.Asset == "qwen3-coder:30b" && c.Signals["workload_overlap"] > 0 && c.Signals["bench_quality"] > 0 {
			found = true
		}
	}
	if !found {
		t.Fatalf("benchmark not in routing signals: %s", body)
	}
}
