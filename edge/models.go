package edge

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
)

func sortStrings(s []string) { slices.Sort(s) }

// modelsCache holds the /v1/models documents (OpenAI list, per-id
// entries, Anthropic list) of the last snapshot version it built.
//
// A build is linear in the fleet's size but not free (100k assets: about
// 0.6 s), so it never runs on a client's goroutine: one build at a time
// runs on its own goroutine and every request waiting for it also watches
// its client, and one that hangs up stops waiting. What a build costs is
// then bounded by the snapshot versions and the refresh period, not by the
// number of requests or of clients that gave up (with the document built
// per request, a 100k-asset fleet made /v1/models an 81-CPU-second
// request that ran on after its client left).
type modelsCache struct {
	mu       sync.Mutex
	doc      *modelsDoc
	building chan struct{}                    // closed when the build in flight ends; nil when none
	builds   atomic.Int64                     // builds finished (tests)
	build    func(*fleet.Snapshot) *modelsDoc // nil: buildModelsDoc (tests wrap it)
}

// modelsDoc is one build's output, immutable once published.
type modelsDoc struct {
	version   uint64
	next      time.Time // refresh when asked after this
	list      []byte
	byID      map[string][]byte // lower-cased id and aliases -> entry JSON
	anthropic []byte
}

// modelsRefresh is the shortest time between two builds for one snapshot
// version (routability changes as deadlines and cooldowns pass without a
// new snapshot); modelsRefreshCost stretches it to this many times the
// last build's duration, so refreshes cost at most a tenth of a core.
const (
	modelsRefresh     = time.Second
	modelsRefreshCost = 10
)

// get returns the documents for snap (or for a newer version). A document
// of snap's version is returned at once, even when due for a refresh (the
// refresh starts in the background); otherwise get starts a build, or
// joins the one running, and waits for it, asking gone every
// modelsGonePoll: it returns nil as soon as gone reports the client left.
func (c *modelsCache) get(snap *fleet.Snapshot, gone func() bool) *modelsDoc {
	var tick *time.Ticker
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		c.mu.Lock()
		d := c.doc
		if d != nil && d.version >= snap.Version {
			if c.building == nil && time.Now().After(d.next) {
				c.startLocked(snap)
			}
			c.mu.Unlock()
			return d
		}
		if c.building == nil {
			c.startLocked(snap)
		}
		ch := c.building
		c.mu.Unlock()
		if tick == nil {
			tick = time.NewTicker(modelsGonePoll)
		}
	wait:
		for {
			select {
			case <-ch:
				break wait
			case <-tick.C:
				if gone() {
					return nil
				}
			}
		}
	}
}

// modelsGonePoll is how often a request waiting for a build checks on its
// client.
const modelsGonePoll = 50 * time.Millisecond

// startLocked starts building snap's documents; c.mu is held.
func (c *modelsCache) startLocked(snap *fleet.Snapshot) {
	ch := make(chan struct{})
	c.building = ch
	build := c.build
	if build == nil {
		build = buildModelsDoc
	}
	go func() {
		d := build(snap)
		c.mu.Lock()
		if c.doc == nil || d.version >= c.doc.version {
			c.doc = d
		}
		c.building = nil
		c.mu.Unlock()
		c.builds.Add(1)
		close(ch)
	}()
}

// buildModelsDoc builds the documents of snap.
func buildModelsDoc(snap *fleet.Snapshot) *modelsDoc {
	start := time.Now()
	entries := buildModels(snap, start)
	list, _ := json.Marshal(struct {
		Object string       `json:"object"`
		Data   []ModelEntry `json:"data"`
	}{"list", entries})
	byID := make(map[string][]byte, len(entries))
	for i := range entries {
		b, _ := json.Marshal(&entries[i])
		byID[strings.ToLower(entries[i].ID)] = b
		for _, a := range entries[i].GenieHive.Aliases {
			byID[strings.ToLower(a)] = b
		}
	}
	end := time.Now()
	wait := modelsRefreshCost * end.Sub(start)
	if wait < modelsRefresh {
		wait = modelsRefresh
	}
	return &modelsDoc{version: snap.Version, next: end.Add(wait), list: list, byID: byID,
		anthropic: anthropicModels(entries)}
}

// ModelEntry is one /v1/models entry: OpenAI's fields plus GenieHive's.
type ModelEntry struct {
	ID        string    `json:"id"`
	Object    string    `json:"object"`
	Created   int64     `json:"created"`
	OwnedBy   string    `json:"owned_by"`
	GenieHive ModelMeta `json:"geniehive"`
}

// ModelMeta is GenieHive's metadata about a model or role.
type ModelMeta struct {
	Kind       string       `json:"kind"` // asset | role
	Operations []fleet.Kind `json:"operations,omitempty"`
	// Asset fields.
	Family        string `json:"family,omitempty"`
	ParameterSize string `json:"parameter_size,omitempty"`
	Quantization  string `json:"quantization,omitempty"`
	ContextLength int    `json:"context_length,omitempty"`
	Thinking      bool   `json:"thinking,omitempty"`
	// Capabilities are what the upstream says the model can do (Ollama's
	// /api/show: completion, embedding, vision, tools, thinking, insert).
	Capabilities []string      `json:"capabilities,omitempty"`
	Loaded       bool          `json:"loaded"`
	VRAMBytes    int64         `json:"vram_bytes,omitempty"`
	Hosts        []string      `json:"hosts,omitempty"`
	Services     []ServiceMeta `json:"services,omitempty"`
	Roles        []string      `json:"roles,omitempty"` // roles that resolve to it
	LatencyMS    float64       `json:"latency_ms,omitempty"`
	TTFTMS       float64       `json:"ttft_ms,omitempty"`
	TokensPerSec float64       `json:"tokens_per_sec,omitempty"`
	BenchQuality float64       `json:"bench_quality,omitempty"`
	Offload      *Offload      `json:"offload,omitempty"`
	// Role fields.
	Description string   `json:"description,omitempty"`
	Aliases     []string `json:"aliases,omitempty"`
	Candidates  []string `json:"candidates,omitempty"`
	Fallbacks   []string `json:"fallback_roles,omitempty"`
	ResolvesTo  []string `json:"resolves_to,omitempty"` // routable assets, in order
	Routable    bool     `json:"routable"`
}

// ServiceMeta is one service offering an asset.
type ServiceMeta struct {
	ID           string  `json:"id"`
	Host         string  `json:"host"`
	Kind         string  `json:"kind"`
	Protocol     string  `json:"protocol,omitempty"`
	Loaded       bool    `json:"loaded"`
	Healthy      bool    `json:"healthy"`
	Routable     bool    `json:"routable"`
	QueueDepth   int     `json:"queue_depth"`
	InFlight     int     `json:"in_flight"`
	LatencyMS    float64 `json:"latency_ms,omitempty"`
	TokensPerSec float64 `json:"tokens_per_sec,omitempty"`
	VRAMUsed     int64   `json:"vram_used_bytes,omitempty"`
	VRAMTotal    int64   `json:"vram_total_bytes,omitempty"`
}

// Offload classifies how well a model suits a coding agent handing it a
// low-complexity subtask (summarise a file, write a docstring, rename):
// such work wants a chat model that is already loaded, fast, with room for
// some context. Class is "preferred" (score >= 0.75), "suitable" (>= 0.5),
// "marginal" (> 0) or "unsuitable"; Reasons say why.
type Offload struct {
	Class   string   `json:"class"`
	Score   float64  `json:"score"`
	Reasons []string `json:"reasons,omitempty"`
}

func classifyOffload(m *ModelMeta) *Offload {
	o := &Offload{}
	if !slices.Contains(m.Operations, fleet.KindChat) {
		o.Class, o.Reasons = "unsuitable", []string{"not a chat model"}
		return o
	}
	score := 0.5
	if m.Loaded {
		score += 0.15
		o.Reasons = append(o.Reasons, "loaded (no cold start)")
	} else {
		score -= 0.15
		o.Reasons = append(o.Reasons, "not loaded: first request pays a load")
	}
	switch tps := m.TokensPerSec; {
	case tps >= 40:
		score += 0.2
		o.Reasons = append(o.Reasons, "fast generation")
	case tps >= 15:
		score += 0.1
	case tps > 0 && tps < 8:
		score -= 0.2
		o.Reasons = append(o.Reasons, "slow generation")
	}
	switch lat := m.LatencyMS; {
	case lat > 0 && lat < 500:
		score += 0.05
	case lat > 3000:
		score -= 0.1
		o.Reasons = append(o.Reasons, "high latency")
	}
	switch c := m.ContextLength; {
	case c >= 16384:
		score += 0.1
		o.Reasons = append(o.Reasons, "large context")
	case c > 0 && c < 4096:
		score -= 0.2
		o.Reasons = append(o.Reasons, "small context")
	}
	if m.Thinking {
		score -= 0.1
		o.Reasons = append(o.Reasons, "thinking model: slower, answer after reasoning")
	}
	if m.BenchQuality > 0 {
		score += (m.BenchQuality - 0.5) * 0.3
	}
	if !m.Routable {
		score = 0
		o.Reasons = append(o.Reasons, "no routable service now")
	}
	score = min(max(score, 0), 1)
	o.Score = float64(int(score*100+0.5)) / 100
	switch {
	case o.Score >= 0.75:
		o.Class = "preferred"
	case o.Score >= 0.5:
		o.Class = "suitable"
	case o.Score > 0:
		o.Class = "marginal"
	default:
		o.Class = "unsuitable"
	}
	return o
}

// buildModels builds the /v1/models entries from a snapshot.
func buildModels(snap *fleet.Snapshot, now time.Time) []ModelEntry {
	out, _ := buildModelsCounted(snap, now)
	return out
}

// buildModelsCounted is buildModels, also reporting how many asset entries
// it visited: each service's assets once, so the build is linear in the
// fleet's size (it used to look every asset name up in every service that
// offers it by a linear scan: 100k assets on one node took 81 CPU-seconds).
func buildModelsCounted(snap *fleet.Snapshot, now time.Time) ([]ModelEntry, int) {
	created := snap.BuiltAt.Unix()
	assets := make(map[string]*ModelMeta, len(snap.AssetServices))
	var names []string
	visits := 0
	for _, se := range snap.Services {
		r := se.Routable(now)
		sm := se.Metrics() // one load: one report's figures
		lat := se.Stats.LatencyMS
		if lat == 0 {
			lat = sm.LatencyMS
		}
		tps := se.Stats.TokensPerSec
		if tps == 0 {
			tps = sm.TokensPerSecond
		}
		healthy := se.IsHealthy()
		for i := range se.Assets {
			visits++
			a := &se.Assets[i]
			m := assets[a.Name]
			if m == nil {
				if len(snap.AssetServices[a.Name]) == 0 {
					continue // not indexed (e.g. a service the snapshot left out)
				}
				m = &ModelMeta{Kind: "asset"}
				assets[a.Name] = m
				names = append(names, a.Name)
			} else if n := len(m.Services); n > 0 && m.Services[n-1].ID == se.ID {
				continue // the same name twice on one service: the first wins, as Asset(name) did
			}
			m.Routable = m.Routable || r
			if !slices.Contains(m.Operations, se.Kind) {
				m.Operations = append(m.Operations, se.Kind)
			}
			if m.Family == "" {
				m.Family, m.ParameterSize, m.Quantization, m.ContextLength = a.Family, a.ParameterSize, a.Quantization, a.ContextLength
			}
			m.Thinking = m.Thinking || a.Thinking
			for _, c := range a.Capabilities {
				if !slices.Contains(m.Capabilities, c) {
					m.Capabilities = append(m.Capabilities, c)
				}
			}
			m.Loaded = m.Loaded || a.Loaded
			if a.SizeVRAM > m.VRAMBytes {
				m.VRAMBytes = a.SizeVRAM
			}
			if !slices.Contains(m.Hosts, se.HostID) {
				m.Hosts = append(m.Hosts, se.HostID)
			}
			m.Services = append(m.Services, ServiceMeta{ID: se.ID, Host: se.HostID, Kind: string(se.Kind), Protocol: se.Protocol,
				Loaded: a.Loaded, Healthy: healthy, Routable: r, QueueDepth: sm.QueueDepth, InFlight: sm.InFlight,
				LatencyMS: lat, TokensPerSec: tps, VRAMUsed: sm.VRAMUsedBytes, VRAMTotal: sm.VRAMTotalBytes})
			if r && lat > 0 && (m.LatencyMS == 0 || lat < m.LatencyMS) {
				m.LatencyMS = lat
			}
			if r && tps > m.TokensPerSec {
				m.TokensPerSec = tps
			}
			if r && se.Stats.TTFTMS > 0 && (m.TTFTMS == 0 || se.Stats.TTFTMS < m.TTFTMS) {
				m.TTFTMS = se.Stats.TTFTMS
			}
		}
	}
	// /v1/models lists what can be served now.
	kept := names[:0]
	for _, name := range names {
		m := assets[name]
		if !m.Routable {
			delete(assets, name)
			continue
		}
		for _, b := range snap.Bench[name] {
			if b.Quality > m.BenchQuality {
				m.BenchQuality = b.Quality
			}
			if m.TokensPerSec == 0 && b.TokensPerSec > 0 {
				m.TokensPerSec = b.TokensPerSec
			}
		}
		kept = append(kept, name)
	}
	names = kept
	slices.Sort(names)
	data := policies.BuildData(snap)
	var roles []ModelEntry
	for _, r := range snap.Catalog.Roles {
		op := r.Operation
		if op == "" {
			op = fleet.KindChat
		}
		cands, _ := policies.RoleCandidates(data, &r)
		rm := ModelMeta{Kind: "role", Operations: []fleet.Kind{op}, Description: r.Description, Aliases: r.Aliases,
			Candidates: r.Candidates, Fallbacks: r.FallbackRoles}
		for _, c := range cands {
			if a := assets[c]; a != nil && a.Routable && slices.Contains(a.Operations, op) {
				rm.ResolvesTo = append(rm.ResolvesTo, c)
				a.Roles = append(a.Roles, r.Name)
			}
		}
		// Then what its fallback roles resolve to, walked in order with
		// cycles cut, as the policy walks them.
		seen := map[string]bool{strings.ToLower(r.Name): true}
		queue := slices.Clone(r.FallbackRoles)
		for len(queue) > 0 {
			fr, ok := snap.Catalog.Role(queue[0])
			queue = queue[1:]
			if !ok || seen[strings.ToLower(fr.Name)] {
				continue
			}
			seen[strings.ToLower(fr.Name)] = true
			queue = append(queue, fr.FallbackRoles...)
			if roleOp(fr) != op {
				continue
			}
			fc, _ := policies.RoleCandidates(data, fr)
			for _, c := range fc {
				if a := assets[c]; a != nil && a.Routable && slices.Contains(a.Operations, op) && !slices.Contains(rm.ResolvesTo, c) {
					rm.ResolvesTo = append(rm.ResolvesTo, c)
				}
			}
		}
		rm.Routable = len(rm.ResolvesTo) > 0
		roles = append(roles, ModelEntry{ID: r.Name, Object: "model", Created: created, OwnedBy: "geniehive", GenieHive: rm})
	}
	out := make([]ModelEntry, 0, len(names)+len(roles))
	for _, n := range names {
		m := assets[n]
		m.Offload = classifyOffload(m)
		owner := "geniehive"
		if len(m.Hosts) == 1 {
			owner = m.Hosts[0]
		}
		out = append(out, ModelEntry{ID: n, Object: "model", Created: created, OwnedBy: owner, GenieHive: *m})
	}
	return append(out, roles...), visits
}

// roleOp is the operation a role serves (chat when unset).
func roleOp(r *fleet.Role) fleet.Kind {
	if r.Operation == "" {
		return fleet.KindChat
	}
	return r.Operation
}

func (s *Server) serveModels(ctx *fasthttp.RequestCtx, id string) {
	d := s.modelsDoc(ctx)
	if d == nil {
		return
	}
	ctx.SetContentType("application/json")
	if id == "" {
		ctx.SetBody(d.list)
		return
	}
	b, ok := d.byID[strings.ToLower(id)]
	if !ok {
		b, ok = d.byID[policies.NormalizeModel(id)]
	}
	if !ok {
		writeError(ctx, &APIError{Status: 404, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
			Message: "The model '" + id + "' does not exist; see GET /v1/models for what is available."})
		return
	}
	ctx.SetBody(b)
}

// modelsDoc returns the current snapshot's /v1/models documents, or nil
// when the client left while they were being built (nothing is answered).
func (s *Server) modelsDoc(ctx *fasthttp.RequestCtx) *modelsDoc {
	conn := ctx.Conn()
	d := s.models.get(s.watcher.Current(), func() bool { return ClientGone(conn) })
	if d == nil {
		ctx.SetConnectionClose()
	}
	return d
}
