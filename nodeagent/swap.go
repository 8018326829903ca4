package nodeagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// Swap commands (issue 14): the agent reads its own command stream
// (state.ReadSwaps, consumer group "agent"), carries each command out
// against the upstream's own API, confirms it from what the upstream then
// reports, stores the result and acknowledges the entry, then beats at
// once so edges see the new loaded state and VRAM.
//
// Ollama (server/routes.go GenerateHandler, server/sched.go): a
// /api/generate request with a model and no prompt loads the model and
// answers {"done":true,"done_reason":"load"}; with keep_alive 0 it expires
// the runner instead ("done_reason":"unload"), which unloads it now when
// idle, else when its last request ends. /api/ps lists what is resident
// (one entry per runner: an alias sharing a blob is matched by digest,
// residentOllama).
//
// llama.cpp router mode (tools/server/server-models.cpp, README "Using
// multiple models"): POST /models/load {"model"} and POST /models/unload
// {"model"} answer {"success":true} at once and work in the background;
// GET /models (also /v1/models) gives each model's status.value
// ("unloaded", "loading", "loaded"), with "failed":true and an exit code
// when a load failed.

// swapPoll is how often a command's effect is checked on the upstream.
const swapPoll = 100 * time.Millisecond

// swapTarget is what the agent needs to swap models of one service.
type swapTarget struct {
	kind     string // fleet.Swap*
	endpoint string
}

// swapTargets maps every service id the last beat wrote (siblings
// included) to how it swaps; set in Collect.
func (a *Agent) swapTarget(id string) (swapTarget, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.swaps[id]
	return t, ok
}

// runSwaps reads and executes commands until ctx ends. Commands taken
// before a restart and never acknowledged are handled first (run if their
// deadline allows, else answered expired). Redis errors are retried
// after a pause; a node nobody ever sent a command polls once a second.
func (a *Agent) runSwaps(ctx context.Context) {
	pending := true
	for ctx.Err() == nil {
		cmds, err := a.store.ReadSwaps(ctx, a.cfg.HostID, a.cfg.HostID, pending, 4, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, state.ErrNoSwapStream) {
				a.warnOnce("swapread", "swap commands unreadable; retrying", "err", err)
			}
			sleep(ctx, time.Second)
			continue
		}
		if pending && len(cmds) == 0 {
			pending = false
			continue
		}
		for i := range cmds {
			a.handleSwap(ctx, &cmds[i])
		}
		if len(cmds) > 0 {
			a.beatNow() // edges see the new state
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handleSwap runs one command and stores its result.
func (a *Agent) handleSwap(ctx context.Context, rs *state.ReceivedSwap) {
	start := time.Now()
	res := fleet.SwapResult{ID: rs.Cmd.ID, By: "node"}
	switch {
	case rs.Err != nil:
		res.Status, res.Error = fleet.SwapFailed, rs.Err.Error()
	case !start.Before(rs.Cmd.Deadline):
		res.Status, res.Error = fleet.SwapExpired, "deadline passed before the node took it"
	default:
		res.Status, res.Error = a.ExecSwap(ctx, &rs.Cmd)
	}
	if res.ID == "" {
		res.ID = "invalid-" + strings.ReplaceAll(rs.StreamID, "-", "")
	}
	if len(res.Error) > 512 {
		res.Error = res.Error[:512]
	}
	res.At, res.TookMS = time.Now(), time.Since(start).Milliseconds()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if _, err := a.store.FinishSwap(wctx, a.cfg.HostID, rs.StreamID, &res); err != nil {
		a.log.Warn("swap result not stored", "id", res.ID, "err", err)
		return
	}
	a.log.Info("swap command", "id", res.ID, "op", rs.Cmd.Op, "service", rs.Cmd.Service, "model", rs.Cmd.Model, "result", res.Status, "err", res.Error, "took_ms", res.TookMS)
}

// ExecSwap carries out cmd against its service's upstream, bounded by the
// command's deadline, and says how it ended: done once the upstream
// reports the model resident (load) or gone (unload); failed with the
// upstream's own error; expired when the deadline came first (an unload
// of a busy Ollama model completes only when its requests end).
func (a *Agent) ExecSwap(ctx context.Context, cmd *fleet.SwapCommand) (fleet.SwapStatus, string) {
	t, ok := a.swapTarget(cmd.Service)
	if !ok {
		return fleet.SwapFailed, "no service " + cmd.Service + " on this node"
	}
	if t.kind == fleet.SwapNone {
		return fleet.SwapFailed, "service " + cmd.Service + " cannot load or unload models"
	}
	ctx, cancel := context.WithDeadline(ctx, cmd.Deadline)
	defer cancel()
	if cmd.Op == fleet.SwapLoad {
		// Until confirmed below, beats report the model as loading: the
		// upstream may list it as resident already (Ollama's /api/ps does
		// while it loads), and a request sent to it now would queue inside
		// the upstream, unbounded by the edges' swap.wait.
		a.setLoading(cmd.Service, cmd.Model)
		defer a.setLoading(cmd.Service, "")
		a.beatNow() // say so now, not a heartbeat interval later
	}
	var err error
	switch t.kind {
	case fleet.SwapOllama:
		err = a.ollamaSwap(ctx, t.endpoint, cmd)
	case fleet.SwapRouter:
		err = a.routerSwap(ctx, t.endpoint, cmd)
	default:
		err = errors.New("unknown swap kind " + t.kind)
	}
	switch {
	case err == nil:
		return fleet.SwapDone, ""
	case ctx.Err() != nil:
		msg := "deadline passed"
		if err != ctx.Err() {
			msg += ": " + err.Error()
		}
		return fleet.SwapExpired, msg
	}
	return fleet.SwapFailed, err.Error()
}

// beatNow asks the heartbeat loop for a beat now.
func (a *Agent) beatNow() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// setLoading records the model a load command is loading on a service
// ("" when none).
func (a *Agent) setLoading(service, model string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if model == "" {
		delete(a.loading, service)
	} else {
		a.loading[service] = model
	}
}

// markLoading returns assets with the one a load command is loading on
// service marked Loading (a copy when it changes: assets may be the last
// discovery's slice, kept across beats). Called with mu held.
func (a *Agent) markLoading(service string, assets []fleet.Asset) []fleet.Asset {
	m, ok := a.loading[service]
	if !ok {
		return assets
	}
	for i := range assets {
		if assets[i].Name == m || sameOllamaName(assets[i].Name, m) {
			out := append([]fleet.Asset(nil), assets...)
			out[i].Loading = true
			return out
		}
	}
	return assets
}

// post sends body as JSON and returns the status and (capped) answer.
func (a *Agent) post(ctx context.Context, url string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// A load can take minutes: this client has no header timeout, the
	// command's deadline bounds it.
	resp, err := a.swapHC.Do(req)
	if err != nil {
		return 0, nil, unwrapURL(err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, rb, err
}

// upstreamError is the upstream's own error message ({"error":"..."} for
// Ollama, {"error":{"message":...}} for llama.cpp), else the status.
func upstreamError(status int, body []byte) error {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var s string
		var o struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &s) == nil {
			msg = s
		} else if json.Unmarshal(e.Error, &o) == nil {
			msg = o.Message
		}
	}
	if msg == "" {
		msg = strings.TrimSpace(string(body))
	}
	return fmt.Errorf("status %d: %s", status, msg)
}

// ollamaSwap: load = POST /api/generate {model, keep_alive} (no prompt),
// unload = the same with keep_alive 0; then /api/ps until it agrees.
func (a *Agent) ollamaSwap(ctx context.Context, endpoint string, cmd *fleet.SwapCommand) error {
	body := map[string]any{"model": cmd.Model}
	load := cmd.Op == fleet.SwapLoad
	switch {
	case !load:
		body["keep_alive"] = 0
	case cmd.KeepAliveMS < 0:
		body["keep_alive"] = -1 // forever (api.Duration: negative)
	case cmd.KeepAliveMS > 0:
		body["keep_alive"] = strconv.FormatInt(cmd.KeepAliveMS, 10) + "ms"
	}
	status, rb, err := a.post(ctx, endpoint+"/api/generate", body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return upstreamError(status, rb)
	}
	digest := a.ollamaDigest(ctx, endpoint, cmd.Model)
	for {
		var ps ollamaPS
		if _, err := a.getJSON(ctx, endpoint, "/api/ps", &ps); err != nil && ctx.Err() == nil {
			return err
		}
		if residentOllama(ps.Models, cmd.Model, digest) == load {
			return nil
		}
		if load {
			// The generate answered after the load; a model that is not in
			// /api/ps now was evicted at once or failed to stay.
			return errors.New("loaded but not listed by /api/ps")
		}
		sleep(ctx, swapPoll) // a busy model unloads when its requests end
		if ctx.Err() != nil {
			return errors.New("still resident (requests in flight)")
		}
	}
}

// ollamaDigest is the manifest digest /api/tags gives name ("" when it
// is not listed or /api/tags fails: the caller matches by name alone).
func (a *Agent) ollamaDigest(ctx context.Context, endpoint, name string) string {
	var tags ollamaTags
	if _, err := a.getJSON(ctx, endpoint, "/api/tags", &tags); err != nil {
		return ""
	}
	for _, t := range tags.Models {
		if sameOllamaName(t.Name, name) {
			return t.Digest
		}
	}
	return ""
}

// residentOllama: /api/ps lists a runner serving name. Ollama keys runners
// by blob (server/sched.go schedulerModelKey: ModelPath) and PsHandler
// (server/routes.go) lists each runner once, under the name whose request
// loaded it, with that model's manifest digest; an `ollama cp` alias has
// the same manifest, so the same digest (server/images.go CopyModel,
// manifest/manifest.go), and is served by that runner. Matched by name,
// else by digest (when known).
func residentOllama(ps []ollamaModel, name, digest string) bool {
	for i := range ps {
		m := &ps[i]
		if sameOllamaName(m.Name, name) || sameOllamaName(m.Model, name) || (digest != "" && m.Digest == digest) {
			return true
		}
	}
	return false
}

// sameOllamaName compares model names as Ollama does, ":latest" implied.
func sameOllamaName(a, b string) bool {
	norm := func(s string) string {
		if !strings.Contains(s[strings.LastIndexByte(s, '/')+1:], ":") {
			return s + ":latest"
		}
		return s
	}
	return a != "" && b != "" && norm(a) == norm(b)
}

// routerSwap: POST /models/load or /models/unload, then GET /models until
// the model's status says it is done.
func (a *Agent) routerSwap(ctx context.Context, endpoint string, cmd *fleet.SwapCommand) error {
	load := cmd.Op == fleet.SwapLoad
	path, want := "/models/unload", "unloaded"
	if load {
		path, want = "/models/load", "loaded"
	}
	status, rb, err := a.post(ctx, endpoint+path, map[string]string{"model": cmd.Model})
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		uerr := upstreamError(status, rb)
		// Already in the wanted state (server-models.cpp
		// post_router_models_load / _unload: "model is already loaded" /
		// "model is not loaded", "already running" / "not running" in
		// later builds): confirm below.
		msg := uerr.Error()
		if !strings.Contains(msg, "already loaded") && !strings.Contains(msg, "already running") &&
			!strings.Contains(msg, "not loaded") && !strings.Contains(msg, "not running") {
			return uerr
		}
	}
	for {
		var ml routerModels
		if _, err := a.getJSON(ctx, endpoint, "/models", &ml); err != nil && ctx.Err() == nil {
			return err
		}
		for _, m := range ml.Data {
			if m.ID != cmd.Model || m.Status == nil {
				continue
			}
			if m.Status.Value == want {
				return nil
			}
			if load && m.Status.Value == "unloaded" && m.Status.Failed {
				return fmt.Errorf("load failed (exit code %d)", m.Status.ExitCode)
			}
		}
		sleep(ctx, swapPoll)
		if ctx.Err() != nil {
			return errors.New("status not " + want)
		}
	}
}

// routerModels is llama.cpp's router GET /models.
type routerModels struct {
	Data []struct {
		ID     string        `json:"id"`
		Status *routerStatus `json:"status"`
	} `json:"data"`
}

type routerStatus struct {
	Value    string `json:"value"`
	Failed   bool   `json:"failed"`
	ExitCode int    `json:"exit_code"`
}
