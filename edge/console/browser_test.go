package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/console"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/nodeagent"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

const readerKey = "console-test-reader-key-0123456789"

// chromium finds Debian's chromium (scripts/test.sh installs it). Without
// one the test skips, except under CI=true where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("GENIEHIVE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH: CI=true requires the browser test (scripts/test.sh installs Debian's chromium)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium, or make test installs it)")
	return ""
}

// artifacts is where screenshots go: $GENIEHIVE_ARTIFACTS, else a temp dir.
func artifacts(t *testing.T) string {
	if d := os.Getenv("GENIEHIVE_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// node is a simulated Ollama with a real node agent heartbeating it.
type node struct {
	up   *sim.Server
	stop func()
}

func startNode(t *testing.T, st *state.Store, host string, gpu fleet.GPU, models []sim.Model) *node {
	t.Helper()
	up, err := sim.Start(sim.Config{Flavor: sim.FlavorOllama, Models: models})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	cfg := nodeagent.Config{HostID: host, Interval: 300 * time.Millisecond, TTL: 2 * time.Second, NvidiaSMI: "off",
		Services: []nodeagent.ServiceConfig{{Name: "ollama", Kind: fleet.KindChat, Endpoint: up.URL(), Protocol: fleet.ProtocolOllama}}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := nodeagent.New(cfg, st, nodeagent.Options{Logger: quiet,
		GPUs: func(context.Context) ([]fleet.GPU, error) { return []fleet.GPU{gpu}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	var once sync.Once
	n := &node{up: up, stop: func() { once.Do(func() { cancel(); <-done }) }}
	t.Cleanup(n.stop)
	return n
}

type edgeUnderTest struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

// startEdge runs an edge replica; with keys, auth is on (the keys are the
// edge's own, not stored in Redis: another edge on the store without keys
// runs with auth off).
func startEdge(t *testing.T, st *state.Store, prefix, id string, keys []edge.KeyConfig) *edgeUnderTest {
	t.Helper()
	var cfg replica.Config
	cfg.Edge = edge.Config{Listen: "127.0.0.1:0", ID: id, Redis: edge.RedisConfig{Prefix: prefix}, Keys: keys}
	cfg.Edge.PresenceInterval = 200 * time.Millisecond
	// A drain that waited for the console's event stream would wait this
	// long: the stop at the end of the test would hang, not pass late.
	cfg.Edge.Timeouts.Shutdown = time.Hour
	cfg.Policy.Engine = replica.EngineRego // the pushed bundle reloads without a Wasm compile
	cfg.Policy.EvalTimeout = 10 * time.Second
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := replica.New(ctx, cfg, replica.Options{Logger: quiet, Store: st, Ready: func(a string) { ready <- a }})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e := &edgeUnderTest{cancel: cancel, done: make(chan error, 1)}
	go func() { err := r.Run(ctx); _ = r.Close(); e.done <- err }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-e.done:
		case <-time.After(2 * time.Minute):
			t.Error("the edge did not stop")
		}
	})
	select {
	case a := <-ready:
		e.url = "http://" + a
	case err := <-e.done:
		t.Fatalf("edge stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("edge did not start")
	}
	return e
}

// getJSON GETs (or POSTs body to) path on the edge with the reader key.
func getJSON(t *testing.T, base, path string, body []byte, v any) {
	t.Helper()
	method := "GET"
	if body != nil {
		method = "POST"
	}
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+readerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// waitJS polls a JavaScript boolean expression in the page (no reload).
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 2*time.Second {
			t.Logf("waited %v for %s", d.Round(time.Millisecond), what)
		}
	}()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("main").innerText`))
			t.Fatalf("timed out waiting for %s; the page shows:\n%s", what, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goPage opens a console page the way its nav links do (the fragment
// changes; the document stays).
func goPage(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`location.hash = "#`+page+`"`)); err != nil {
		t.Fatal(err)
	}
}

func shot(t *testing.T, ctx context.Context, dir, name string) []byte {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	return png
}

// TestConsoleInBrowser drives Debian's chromium, headless, against an edge
// replica over real Redis with two real node agents on simulated Ollama
// servers: what the console shows must be what the cluster API answers,
// and it must change live (no reload) when a node dies or a policy is
// pushed. Screenshots go to $GENIEHIVE_ARTIFACTS (else a temp dir);
// GENIEHIVE_UPDATE_DOCS=1 also writes docs/console.png.
func TestConsoleInBrowser(t *testing.T) {
	bin := chromium(t)
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	cat := &fleet.Catalog{Roles: []fleet.Role{{Name: "writer", Description: "writes short prose", Operation: fleet.KindChat,
		Candidates: []string{"qwen3:8b"}}}}
	if err := st.PutCatalog(context.Background(), cat); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*node{
		"gpu1": startNode(t, st, "gpu1", fleet.GPU{Index: 0, Name: "Sim RTX 4090", VRAMUsedBytes: 9 << 30, VRAMTotalBytes: 24 << 30},
			[]sim.Model{{Name: "qwen3:8b", Family: "qwen3", Loaded: true, SizeVRAM: 6 << 30, Thinking: true}, {Name: "llama3.2:3b", Family: "llama", Loaded: true, SizeVRAM: 2 << 30}}),
		"gpu2": startNode(t, st, "gpu2", fleet.GPU{Index: 0, Name: "Sim RTX 4080", VRAMUsedBytes: 1 << 30, VRAMTotalBytes: 16 << 30},
			[]sim.Model{{Name: "qwen3:8b", Family: "qwen3", SizeVRAM: 6 << 30, Thinking: true}}),
	}
	e := startEdge(t, st, prefix, "edge-ui", []edge.KeyConfig{{ID: "console", Secret: readerKey, Scope: fleet.ScopeReader}})
	// Both nodes registered with their models before the browser opens.
	deadline := time.Now().Add(time.Minute)
	for {
		var svcs struct{ Data []struct{ ID string } }
		getJSON(t, e.url, "/v1/cluster/services", nil, &svcs)
		if len(svcs.Data) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("services never registered: %+v", svcs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The static files: security headers, same-origin only.
	resp, err := http.Get(e.url + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for h, want := range map[string]string{"Content-Security-Policy": console.CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("/ui/ %s = %q, want %q", h, got, want)
		}
	}
	if !strings.Contains(console.CSP, "default-src 'self'") || !strings.Contains(console.CSP, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", console.CSP)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 800))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	defer tcancel()

	// Every request the page makes, and what went wrong in it.
	var mu sync.Mutex
	var reqs []string
	var bytesIn float64
	var problems []string
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if !strings.HasPrefix(ev.Request.URL, "data:") {
				reqs = append(reqs, ev.Request.Method+" "+ev.Request.URL)
			}
		case *network.EventLoadingFinished:
			bytesIn += ev.EncodedDataLength
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, fmt.Sprintf("exception at %d:%d: %s", d.LineNumber, d.ColumnNumber, msg))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, "console: "+strings.Join(args, " "))
			}
		}
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatalf("chromium (%s) did not start: %v", bin, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.url+"/ui/")); err != nil {
		t.Fatalf("chromium (%s) did not start or load the page: %v", bin, err)
	}

	// Auth is on: the page asks for the key once, keeps it for the tab.
	waitJS(t, ctx, "the key form", `!document.getElementById("login").hidden`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("key"), readerKey), chromedp.Click(chromedp.ID("key-go"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the fleet page with two hosts up",
		`document.querySelectorAll("#hosts article.host[data-status=up]").length === 2 && document.querySelectorAll("#services tbody tr").length === 2`)
	waitJS(t, ctx, "the event stream connected", `document.getElementById("live").textContent.startsWith("live")`)
	if kept, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("geniehive.key")`)); err != nil || kept != readerKey {
		t.Fatalf("key in sessionStorage: %q %v", kept, err)
	}

	// Load cost as an order, not a time: a handful of same-origin requests
	// and a page that fits a small budget.
	mu.Lock()
	loadReqs, loadBytes := append([]string(nil), reqs...), bytesIn
	mu.Unlock()
	for _, r := range loadReqs {
		u, _ := url.Parse(strings.SplitN(r, " ", 2)[1])
		if u.Scheme+"://"+u.Host != e.url {
			t.Errorf("a request left the edge: %s", r)
		}
	}
	// Distinct: the three files, the key check (twice: refused, then with
	// the key), the stream, hosts and services. A fleet change during the
	// load may add one more read of the last two, never another resource.
	distinct := map[string]bool{}
	for _, r := range loadReqs {
		distinct[r] = true
	}
	if len(distinct) > 7 || len(loadReqs) > 10 {
		t.Errorf("%d requests (%d distinct) to show the fleet (want at most 10, 7 distinct): %v", len(loadReqs), len(distinct), loadReqs)
	}
	static := 0
	for _, n := range console.Files() {
		static += n
	}
	if static > 64<<10 || loadBytes > 128<<10 {
		t.Errorf("the console weighs %d bytes of static files, %.0f bytes on the wire at load (budget 64 KiB / 128 KiB)", static, loadBytes)
	}
	t.Logf("load: %d requests, %.0f bytes on the wire, %d bytes of static files: %v", len(loadReqs), loadBytes, static, loadReqs)

	// Host count and a VRAM bar against the heartbeat's figures.
	summary, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("fleet-summary")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(summary, "2 hosts (2 up, 0 down)") {
		t.Fatalf("fleet summary %q", summary)
	}
	var hosts struct {
		Data []struct {
			ID   string
			GPUs []fleet.GPU `json:"gpus"`
		}
	}
	getJSON(t, e.url, "/v1/cluster/hosts", nil, &hosts)
	for _, h := range hosts.Data {
		g := h.GPUs[0]
		want := float64(g.VRAMUsedBytes) / float64(g.VRAMTotalBytes)
		expr := fmt.Sprintf(`(() => { const b = document.querySelector('[data-host=%q] .bar'); return b.querySelector('.fill').getBoundingClientRect().width / b.clientWidth })()`, h.ID)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[float64](expr))
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 0.01 {
			t.Errorf("host %s: VRAM bar fill %.3f of its width, heartbeat says %d/%d = %.3f", h.ID, got, g.VRAMUsedBytes, g.VRAMTotalBytes, want)
		}
	}
	// The page must not have been reloaded by anything that follows.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.__sameDocument = 42`)); err != nil {
		t.Fatal(err)
	}
	sameDoc := `window.__sameDocument === 42`

	// Keyboard: from the skip link, Tab reaches the nav; Enter opens Models.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`document.querySelector(".skip").focus()`)); err != nil {
		t.Fatal(err)
	}
	reached := false
	for i := 0; i < 12 && !reached; i++ {
		if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		id, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.id`))
		if err != nil {
			t.Fatal(err)
		}
		reached = id == "nav-models"
	}
	if !reached {
		t.Fatal("Tab never reached the Models link")
	}
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the Models page opened from the keyboard", `location.hash === "#models" && !document.getElementById("page-models").hidden`)
	waitJS(t, ctx, "qwen3:8b listed as loaded on gpu1",
		`(() => { const r = document.querySelector('#assets tr[data-model="qwen3:8b"]'); return !!r && r.dataset.loaded === "yes" && r.cells[2].textContent.includes("LOADED on gpu1/ollama") && r.cells[3].textContent.includes("gpu2/ollama") && r.cells[5].textContent === "writer" })()`)
	waitJS(t, ctx, "role writer resolving to qwen3:8b",
		`(() => { const r = document.querySelector('#roles tr[data-role="writer"]'); return !!r && r.cells[1].textContent === "ROUTABLE" && r.cells[2].textContent.includes("qwen3:8b") })()`)
	shot(t, ctx, artifacts(t), "console-models.png")

	// The route explainer's pick is routes/match's.
	var match struct {
		Routing struct {
			Picked string `json:"picked"`
		} `json:"routing"`
	}
	getJSON(t, e.url, "/v1/cluster/routes/match", []byte(`{"model":"qwen3:8b","prompt":"write a haiku"}`), &match)
	if match.Routing.Picked == "" {
		t.Fatalf("routes/match picked nothing: %+v", match)
	}
	goPage(t, ctx, "routing")
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("match-name"), "qwen3:8b"),
		chromedp.SetValue(chromedp.ID("match-prompt"), "write a haiku"), chromedp.Click(chromedp.ID("match-go"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the explainer's answer", `!!document.getElementById("match-picked")`)
	picked, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("match-picked")))
	if err != nil {
		t.Fatal(err)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#match .cand .sigbar").length`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(picked, match.Routing.Picked+" ") || bars == 0 {
		t.Fatalf("explainer picked %q with %d signal bars; routes/match picked %q", picked, bars, match.Routing.Picked)
	}
	shot(t, ctx, artifacts(t), "console-routing.png")

	// A node dies: its host turns DOWN on the open page, without a reload.
	goPage(t, ctx, "fleet")
	waitJS(t, ctx, "the fleet page", `!document.getElementById("page-fleet").hidden && document.querySelectorAll("#hosts article.host").length === 2`)
	nodes["gpu2"].stop()
	waitJS(t, ctx, "gpu2 shown DOWN live",
		`(() => { const h = document.querySelector('[data-host="gpu2"]'); return !!h && h.dataset.status === "down" && h.textContent.includes("DOWN") && document.getElementById("fleet-summary").textContent.startsWith("2 hosts (1 up, 1 down)") })()`)
	waitJS(t, ctx, "the same document (no reload)", sameDoc)
	png := shot(t, ctx, artifacts(t), "console-fleet.png")
	if os.Getenv("GENIEHIVE_UPDATE_DOCS") == "1" {
		if err := os.WriteFile("../../docs/console.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A policy is pushed: the version on the Policy page changes live.
	goPage(t, ctx, "policy")
	waitJS(t, ctx, "the policy page", `!!document.getElementById("policy-local")`)
	files := policies.ShippedFiles()
	files["console.rego"] = "package geniehive.console\n\nmarker := true\n"
	v2 := policy.NewBundle(files).Version
	if err := st.PutPolicyBundle(context.Background(), &fleet.PolicyBundle{Version: v2, Files: files, PushedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the pushed version on the Policy page",
		fmt.Sprintf(`document.getElementById("policy-bundle").textContent === %q && document.getElementById("policy-local").textContent === %q`, v2, v2))
	waitJS(t, ctx, "the same document (no reload)", sameDoc)
	shot(t, ctx, artifacts(t), "console-policy.png")

	// Edges page, then a phone's width: nothing wider than the screen.
	goPage(t, ctx, "edges")
	var edges struct {
		Data []fleet.EdgeInfo
	}
	getJSON(t, e.url, "/v1/cluster/edges", nil, &edges)
	if len(edges.Data) != 1 || edges.Data[0].Version == "" || edges.Data[0].SnapshotVersion == 0 {
		t.Fatalf("edges: %+v", edges.Data)
	}
	waitJS(t, ctx, "the Edges page with the replica's build and snapshot",
		fmt.Sprintf(`(() => { const r = document.querySelector('#edges-table tr[data-edge="edge-ui"]'); return !!r && r.cells[2].textContent === %q && r.cells[5].textContent.startsWith("v") })()`, edges.Data[0].Version))
	shot(t, ctx, artifacts(t), "console-edges.png")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	goPage(t, ctx, "fleet")
	waitJS(t, ctx, "the fleet at phone width", `!document.getElementById("page-fleet").hidden && document.querySelectorAll("#hosts article.host").length === 2`)
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Error("the fleet page is wider than a 390px screen")
	}
	shot(t, ctx, artifacts(t), "console-phone.png")

	// An edge with auth off: the console asks for no key.
	open := startEdge(t, st, prefix, "edge-open", nil)
	tab, tabCancel := chromedp.NewContext(ctx)
	defer tabCancel()
	if err := chromedp.Do(tab, chromedp.Navigate(open.url+"/ui/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "the fleet without a key on an edge with auth off",
		`document.getElementById("login").hidden && document.querySelectorAll("#hosts article.host").length === 1 && sessionStorage.getItem("geniehive.key") === null`)

	// The edge stops with the console open: the stream ends with the
	// edge's shutdown event (the drain does not wait for it) and the page
	// says so.
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			t.Fatalf("edge Run: %v", err)
		}
		e.done <- nil // for the cleanup
	case <-time.After(2 * time.Minute):
		t.Fatal("the edge did not stop with a console open")
	}
	waitJS(t, ctx, "the page to notice the edge stopping", `document.getElementById("live").className.includes("bad")`)

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("in the page: %s", p)
	}
}
