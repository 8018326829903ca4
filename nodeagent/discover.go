package nodeagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

const maxDiscoveryBody = 8 << 20

// probe is what one service's discovery found.
type probe struct {
	assets   []fleet.Asset
	queue    int
	running  int
	vramUsed int64
	// tokens is the upstream's cumulative generated-token counter (-1: unknown).
	tokens   float64
	latency  time.Duration
	err      error
	warnings []string // non-fatal: metrics unreadable, configured asset missing
	apis     []string // client APIs served natively (apis.go)
	swap     string   // how its models load and unload on command (fleet.Swap*)
}

// get fetches endpoint+path and returns the body; a non-2xx status is an error.
func (a *Agent) get(ctx context.Context, endpoint, path string) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+path, nil)
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", path, unwrapURL(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBody))
	d := time.Since(t0)
	if err != nil {
		return nil, d, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, d, fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return b, d, nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (a *Agent) getJSON(ctx context.Context, endpoint, path string, v any) (time.Duration, error) {
	b, d, err := a.get(ctx, endpoint, path)
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return d, fmt.Errorf("GET %s: bad JSON: %w", path, err)
	}
	return d, nil
}

// discover runs the health check and discovery of one service.
func (a *Agent) discover(ctx context.Context, sc *ServiceConfig) (p probe) {
	p.tokens = -1
	first := true
	note := func(d time.Duration) {
		if first {
			p.latency, first = d, false
		}
	}
	if sc.HealthPath != "" {
		_, d, err := a.get(ctx, sc.Endpoint, sc.HealthPath)
		if err != nil {
			p.err = fmt.Errorf("health check: %w", err)
			return p
		}
		note(d)
	}
	var found []fleet.Asset
	authoritative := true // discovery decides Loaded
	switch sc.Protocol {
	case fleet.ProtocolNone:
		if sc.HealthPath == "" {
			d, err := dial(ctx, sc.Endpoint)
			if err != nil {
				p.err = err
				return p
			}
			note(d)
		}
		authoritative = false
	case fleet.ProtocolOllama:
		var tags ollamaTags
		d, err := a.getJSON(ctx, sc.Endpoint, "/api/tags", &tags)
		if err != nil {
			p.err = err
			return p
		}
		note(d)
		var ps ollamaPS
		if _, err := a.getJSON(ctx, sc.Endpoint, "/api/ps", &ps); err != nil {
			p.err = err
			return p
		}
		// /api/ps lists one entry per runner, under the name that loaded
		// it; names sharing its manifest digest (ollama cp aliases) are
		// served by it too (see residentOllama).
		loaded := map[string]*ollamaModel{}
		for i := range ps.Models {
			m := &ps.Models[i]
			loaded[m.Name] = m
			if m.Digest != "" {
				loaded[digestKey+m.Digest] = m
			}
			p.vramUsed += m.SizeVRAM
		}
		for i := range tags.Models {
			t := &tags.Models[i]
			as := fleet.Asset{Name: t.Name, Family: t.Details.Family, ParameterSize: t.Details.ParameterSize, Quantization: t.Details.QuantizationLevel, Size: t.Size}
			m, ok := loaded[t.Name]
			if !ok && t.Digest != "" {
				m, ok = loaded[digestKey+t.Digest]
			}
			if ok {
				as.Loaded, as.SizeVRAM, as.ContextLength = true, m.SizeVRAM, m.ContextLength
			}
			as.Capabilities = a.ollamaCapabilities(ctx, sc.Endpoint, t, &p.warnings)
			found = append(found, as)
		}
		p.swap = fleet.SwapOllama
	case fleet.ProtocolWhisper:
		if len(sc.ModelsManifest) > 0 {
			for _, n := range sc.ModelsManifest {
				found = append(found, fleet.Asset{Name: n, Loaded: true})
			}
			break
		}
		fallthrough
	case fleet.ProtocolOpenAI, fleet.ProtocolLlamaCPP, fleet.ProtocolVLLM:
		var ml modelList
		d, err := a.getJSON(ctx, sc.Endpoint, "/v1/models", &ml)
		if err != nil {
			p.err = err
			return p
		}
		note(d)
		for _, m := range ml.Data {
			as := fleet.Asset{Name: m.ID, Loaded: true, ContextLength: m.MaxModelLen}
			if m.Meta != nil && m.Meta.NCtxTrain > 0 {
				as.ContextLength = m.Meta.NCtxTrain
			}
			if m.Status != nil && sc.Protocol == fleet.ProtocolLlamaCPP {
				// Router mode (server-models.cpp get_router_models): each
				// model says whether it is loaded, and the router loads
				// and unloads on command.
				as.Loaded = m.Status.Value == "loaded"
				p.swap = fleet.SwapRouter
			}
			found = append(found, as)
		}
	}
	switch sc.Protocol {
	case fleet.ProtocolLlamaCPP, fleet.ProtocolVLLM:
		b, _, err := a.get(ctx, sc.Endpoint, "/metrics")
		if err != nil {
			p.warnings = append(p.warnings, "metrics: "+err.Error())
			break
		}
		if sc.Protocol == fleet.ProtocolLlamaCPP {
			m := parseProm(string(b), "llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:tokens_predicted_total")
			p.running, p.queue = int(m["llamacpp:requests_processing"]), int(m["llamacpp:requests_deferred"])
			if v, ok := m["llamacpp:tokens_predicted_total"]; ok {
				p.tokens = v
			}
		} else {
			m := parseProm(string(b), "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:generation_tokens_total")
			p.running, p.queue = int(m["vllm:num_requests_running"]), int(m["vllm:num_requests_waiting"])
			if v, ok := m["vllm:generation_tokens_total"]; ok {
				p.tokens = v
			}
		}
	}
	p.assets, p.warnings = merge(found, sc, authoritative, p.warnings)
	var warn string
	if p.apis, warn = a.discoverAPIs(ctx, sc); warn != "" {
		p.warnings = append(p.warnings, warn)
	}
	return p
}

// merge combines discovered models with the statically configured ones.
// With discovery (authoritative), only discovered models are kept and their
// Loaded state wins (a stale "loaded: true" in the config is corrected);
// configured metadata fills in or overrides the rest.
func merge(found []fleet.Asset, sc *ServiceConfig, authoritative bool, warnings []string) ([]fleet.Asset, []string) {
	byName := make(map[string]int, len(found))
	for i := range found {
		byName[found[i].Name] = i
	}
	out := found
	for _, ac := range sc.Assets {
		i, ok := byName[ac.Name]
		if !ok {
			if authoritative {
				warnings = append(warnings, fmt.Sprintf("configured asset %q not offered by the upstream; left out", ac.Name))
				continue
			}
			out = append(out, fleet.Asset{Name: ac.Name, Loaded: ac.Loaded})
			i = len(out) - 1
			byName[ac.Name] = i
		}
		as := &out[i]
		if ac.Family != "" {
			as.Family = ac.Family
		}
		if ac.ParameterSize != "" {
			as.ParameterSize = ac.ParameterSize
		}
		if ac.Quantization != "" {
			as.Quantization = ac.Quantization
		}
		if ac.ContextLength > 0 {
			as.ContextLength = ac.ContextLength
		}
		if ac.SizeVRAM > 0 && as.SizeVRAM == 0 {
			as.SizeVRAM = ac.SizeVRAM
		}
		if len(ac.Tags) > 0 {
			as.Tags = append([]string(nil), ac.Tags...)
		}
		if ac.Thinking != nil {
			as.Thinking = *ac.Thinking
		} else {
			as.Thinking = thinks(as, sc.Kind)
		}
	}
	for i := range out {
		as := &out[i]
		if as.Family == "" {
			as.Family = guessFamily(as.Name)
		}
		if _, configured := findAsset(sc.Assets, as.Name); !configured {
			as.Thinking = thinks(as, sc.Kind)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, warnings
}

func findAsset(l []AssetConfig, name string) (*AssetConfig, bool) {
	for i := range l {
		if l[i].Name == name {
			return &l[i], true
		}
	}
	return nil, false
}

// thinks: what the upstream says (the "thinking" capability) when it says
// what the model can do, else a guess from the name for a chat service.
func thinks(as *fleet.Asset, kind fleet.Kind) bool {
	if len(as.Capabilities) > 0 {
		return as.Can(fleet.CapThinking)
	}
	return kind == fleet.KindChat && guessThinking(as.Name)
}

// guessThinking: families that reason by default.
func guessThinking(name string) bool {
	n := strings.ToLower(name)
	if strings.Contains(n, "embed") {
		return false
	}
	return strings.Contains(n, "qwen3") || strings.Contains(n, "deepseek-r1") || strings.Contains(n, "qwq")
}

// guessFamily: "Qwen/Qwen3-8B" -> "qwen3", "llama3.2:3b" -> "llama3.2".
func guessFamily(name string) string {
	n := name
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:]
	}
	if i := strings.IndexAny(n, ":-_"); i > 0 {
		n = n[:i]
	}
	return strings.ToLower(n)
}

// dial checks that the endpoint accepts TCP connections.
func dial(ctx context.Context, endpoint string) (time.Duration, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return 0, err
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	var d net.Dialer
	t0 := time.Now()
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return 0, fmt.Errorf("connect %s: %w", host, err)
	}
	c.Close()
	return time.Since(t0), nil
}

type ollamaModel struct {
	Name          string `json:"name"`
	Model         string `json:"model"`
	Digest        string `json:"digest"`
	Size          int64  `json:"size"`
	SizeVRAM      int64  `json:"size_vram"`
	ContextLength int    `json:"context_length"`
	Details       struct {
		Family            string   `json:"family"`
		Families          []string `json:"families"`
		ParameterSize     string   `json:"parameter_size"`
		QuantizationLevel string   `json:"quantization_level"`
	} `json:"details"`
}

// digestKey prefixes digests among names in one map (no model name
// starts with a NUL).
const digestKey = "\x00"

type ollamaTags struct {
	Models []ollamaModel `json:"models"`
}

type ollamaPS struct {
	Models []ollamaModel `json:"models"`
}

type modelList struct {
	Data []struct {
		ID          string `json:"id"`
		MaxModelLen int    `json:"max_model_len"` // vLLM
		Meta        *struct {
			NCtxTrain int `json:"n_ctx_train"`
		} `json:"meta"` // llama.cpp
		Status *routerStatus `json:"status"` // llama.cpp router mode
	} `json:"data"`
}

// ollamaShow is what the agent reads of POST /api/show.
type ollamaShow struct {
	// Capabilities: since v0.6.4 (server/routes.go ShowHandler,
	// types/model/capability.go); absent before.
	Capabilities []string `json:"capabilities"`
}

// ollamaCapabilities returns what an Ollama model can do: the
// capabilities POST /api/show reports, cached per digest (a model's
// capabilities follow from its blobs, so a new digest is asked again). A
// server too old to report them gets guessCapabilities (cached too); a
// show that fails (timeout, error) gets the guess for this beat only, with
// a warning, and is asked again next beat.
func (a *Agent) ollamaCapabilities(ctx context.Context, endpoint string, m *ollamaModel, warnings *[]string) []string {
	key := endpoint + "\x00" + m.Name + "\x00" + m.Digest
	a.capsMu.Lock()
	caps, ok := a.caps[key]
	a.capsMu.Unlock()
	if ok {
		return caps
	}
	var show ollamaShow
	err := a.postJSON(ctx, endpoint, "/api/show", map[string]string{"model": m.Name}, &show)
	switch {
	case err != nil:
		*warnings = append(*warnings, "capabilities of "+m.Name+": "+err.Error()+"; guessed from its family")
		return guessCapabilities(m)
	case len(show.Capabilities) == 0:
		caps = guessCapabilities(m) // Ollama before v0.6.4
	default:
		caps = slices.Clone(show.Capabilities)
		if len(caps) > 16 {
			caps = caps[:16]
		}
	}
	a.capsMu.Lock()
	if len(a.caps) >= 4096 { // models come and go: never grow without bound
		clear(a.caps)
	}
	a.caps[key] = caps
	a.capsMu.Unlock()
	return caps
}

// embeddingFamilies are GGUF architectures of embedding models (BERT and
// its kin), for servers too old to report capabilities.
var embeddingFamilies = []string{"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "xlm-roberta", "roberta", "t5encoder"}

// guessCapabilities classifies a model of an Ollama too old to say what it
// can do: an embedding model by family (or "embed" in its name), else a
// completion model, thinking when its name says so.
func guessCapabilities(m *ollamaModel) []string {
	name := strings.ToLower(m.Name)
	fams := append([]string{strings.ToLower(m.Details.Family)}, m.Details.Families...)
	for _, f := range fams {
		if slices.Contains(embeddingFamilies, strings.ToLower(f)) {
			return []string{fleet.CapEmbedding}
		}
	}
	if strings.Contains(name, "embed") {
		return []string{fleet.CapEmbedding}
	}
	if guessThinking(name) {
		return []string{fleet.CapCompletion, fleet.CapThinking}
	}
	return []string{fleet.CapCompletion}
}

// postJSON posts body as JSON to endpoint+path and decodes the 2xx answer
// into v.
func (a *Agent) postJSON(ctx context.Context, endpoint, path string, body, v any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, unwrapURL(err))
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBody))
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: status %d", path, resp.StatusCode)
	}
	if err := json.Unmarshal(rb, v); err != nil {
		return fmt.Errorf("POST %s: bad JSON: %w", path, err)
	}
	return nil
}
