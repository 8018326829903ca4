package sim

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// OpenAI /v1/models shapes, with the extra fields vLLM and llama.cpp add.
type modelList struct {
	Object string      `json:"object"`
	Data   []modelInfo `json:"data"`
}

type modelInfo struct {
	ID          string         `json:"id"`
	Object      string         `json:"object"`
	Created     int64          `json:"created"`
	OwnedBy     string         `json:"owned_by"`
	Root        string         `json:"root,omitempty"`          // vLLM
	Parent      *string        `json:"parent,omitempty"`        // vLLM (null)
	MaxModelLen int            `json:"max_model_len,omitempty"` // vLLM
	Meta        map[string]any `json:"meta,omitempty"`          // llama.cpp
	Status      *routerStatus  `json:"status,omitempty"`        // llama.cpp router
}

// routerStatus is a llama.cpp router model's state (server-models.cpp
// get_router_models).
type routerStatus struct {
	Value string   `json:"value"`
	Args  []string `json:"args"`
}

// byModified lists models most recently modified first (Ollama's
// ListHandler order).
func (s *Server) byModified() []*modelEntry {
	l := append([]*modelEntry(nil), s.models.Load().list...)
	sort.SliceStable(l, func(i, j int) bool { return l[i].created > l[j].created })
	return l
}

// ollamaNamespace is the owned_by Ollama reports: the name's namespace.
func ollamaNamespace(name string) string {
	parts := strings.Split(ollamaFullName(name), "/")
	if len(parts) >= 3 {
		return parts[len(parts)-2]
	}
	return "library"
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	if s.cfg.Flavor == FlavorOllama {
		// middleware/openai.go ListWriter over ListHandler.
		out := modelList{Object: "list"}
		for _, e := range s.byModified() {
			out.Data = append(out.Data, modelInfo{ID: e.display, Object: "model", Created: e.created, OwnedBy: ollamaNamespace(e.Name)})
		}
		writeJSON(w, http.StatusOK, ctJSON, out, true)
		return
	}
	t := s.models.Load()
	out := modelList{Object: "list", Data: make([]modelInfo, 0, len(t.list))}
	for _, e := range t.list {
		mi := modelInfo{ID: e.Name, Object: "model", Created: e.created}
		switch s.cfg.Flavor {
		case FlavorVLLM:
			mi.OwnedBy, mi.Root, mi.MaxModelLen = "vllm", e.Name, e.ContextLength
		case FlavorLlamaCPP:
			mi.OwnedBy = "llamacpp"
			if s.router {
				st := "unloaded"
				if e.loaded.Load() {
					st = "loaded"
				}
				for _, res := range s.res.snapshot() {
					if res.Name == e.Name && res.Loading {
						st = "loading"
					}
				}
				mi.Status = &routerStatus{Value: st, Args: []string{"llama-server", "--model", "/models/" + e.Name + ".gguf"}}
			} else {
				mi.Meta = map[string]any{"vocab_type": 2, "n_vocab": 151936, "n_ctx_train": e.ContextLength,
					"n_embd": 4096, "n_params": paramCount(e.ParameterSize), "size": e.Size}
			}
		case FlavorWhisper:
			mi.OwnedBy = "Systran"
			if i := strings.IndexByte(e.Name, '/'); i > 0 {
				mi.OwnedBy = e.Name[:i]
			}
		default:
			mi.OwnedBy = "system"
		}
		out.Data = append(out.Data, mi)
	}
	ct := ctJSON
	if s.cfg.Flavor == FlavorLlamaCPP {
		ct = ctJSONCharset
	}
	writeJSON(w, http.StatusOK, ct, out, false)
}

// retrieveModel answers GET /v1/models/{model}.
func (s *Server) retrieveModel(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	name := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	e, ok := s.lookup(name)
	if s.cfg.Flavor == FlavorOllama {
		// RetrieveMiddleware over ShowHandler: the id is the path as given.
		if !ok {
			s.fail(w, apiModels, apiErr{status: 404, msg: "model '" + name + "' not found"})
			return
		}
		writeJSON(w, http.StatusOK, ctJSON, modelInfo{ID: name, Object: "model", Created: e.created, OwnedBy: ollamaNamespace(e.Name)}, true)
		return
	}
	if !ok {
		s.fail(w, apiModels, apiErr{status: 404, code: "model_not_found", param: "model", msg: "The model `" + name + "` does not exist or you do not have access to it."})
		return
	}
	writeJSON(w, http.StatusOK, ctJSON, modelInfo{ID: e.Name, Object: "model", Created: e.created, OwnedBy: "system"}, false)
}

// paramCount turns "8B" / "3.2B" / "500M" / "140K" into a parameter count.
func paramCount(s string) int64 {
	if s == "" {
		return 0
	}
	mult := 1.0
	switch s[len(s)-1] {
	case 'B', 'b':
		mult, s = 1e9, s[:len(s)-1]
	case 'M', 'm':
		mult, s = 1e6, s[:len(s)-1]
	case 'K', 'k':
		mult, s = 1e3, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return int64(f * mult)
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request, b *Behavior) {
	if b.Unhealthy {
		switch s.cfg.Flavor {
		case FlavorLlamaCPP:
			// README: 503 {"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}.
			s.fail(w, apiOther, apiErr{status: 503, msg: "Loading model"})
		case FlavorVLLM:
			w.WriteHeader(http.StatusServiceUnavailable) // engine dead: empty 503
		default:
			s.fail(w, apiOther, apiErr{status: 503, typ: "unavailable_error", code: "unavailable", msg: "Loading model"})
		}
		return
	}
	switch s.cfg.Flavor {
	case FlavorVLLM:
		w.WriteHeader(http.StatusOK) // vLLM: empty 200
	case FlavorWhisper:
		w.Header().Set("Content-Type", ctText)
		_, _ = w.Write([]byte("OK"))
	default:
		writeJSON(w, http.StatusOK, ctJSONCharset, map[string]string{"status": "ok"}, false)
	}
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request, b *Behavior) {
	running := s.running.Load()
	waiting := s.waiting.Load() + int64(b.ExtraQueued)
	usage := 0.0
	if s.cfg.Slots > 0 {
		usage = float64(running) / float64(s.cfg.Slots)
	}
	pt, ct := s.promptTokens.Load(), s.completionTokens.Load()
	var sb strings.Builder
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	metric := func(name, typ, help, labels, val string) {
		sb.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n" + name + labels + " " + val + "\n")
	}
	if s.cfg.Flavor == FlavorLlamaCPP {
		// tools/server README "Available metrics".
		metric("llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.", "", strconv.FormatInt(pt, 10))
		metric("llamacpp:tokens_predicted_total", "counter", "Number of generation tokens processed.", "", strconv.FormatInt(ct, 10))
		metric("llamacpp:kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.", "", f(usage))
		metric("llamacpp:requests_processing", "gauge", "Number of requests processing.", "", strconv.FormatInt(running, 10))
		metric("llamacpp:requests_deferred", "gauge", "Number of requests deferred.", "", strconv.FormatInt(waiting, 10))
	} else {
		// vllm/v1/metrics/loggers.py (PrometheusStatLogger): labels
		// model_name and engine; kv_cache_usage_perc replaced
		// gpu_cache_usage_perc (PR #18354).
		name := ""
		if l := s.models.Load().list; len(l) > 0 {
			name = l[0].Name
		}
		lbl := `{engine="0",model_name="` + strings.ReplaceAll(name, `"`, `\"`) + `"}`
		fv := func(v int64) string { return strconv.FormatFloat(float64(v), 'f', 1, 64) }
		metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", lbl, fv(running))
		metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", lbl, fv(waiting))
		if s.feat.kvCacheMetric {
			metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", lbl, f(usage))
		}
		if s.feat.gpuCacheMetric {
			metric("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.", lbl, f(usage))
		}
		metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", lbl, fv(pt))
		metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", lbl, fv(ct))
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(sb.String()))
}

// Ollama native API shapes (api/types.go).
type ollamaDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

type ollamaTag struct {
	Name       string        `json:"name"`
	Model      string        `json:"model"`
	ModifiedAt time.Time     `json:"modified_at"`
	Size       int64         `json:"size"`
	Digest     string        `json:"digest"`
	Details    ollamaDetails `json:"details"`
}

type ollamaPS struct {
	Name          string        `json:"name"`
	Model         string        `json:"model"`
	Size          int64         `json:"size"`
	Digest        string        `json:"digest"`
	Details       ollamaDetails `json:"details"`
	ExpiresAt     time.Time     `json:"expires_at"`
	SizeVRAM      int64         `json:"size_vram"`
	ContextLength *int          `json:"context_length,omitempty"`
}

func details(e *modelEntry) ollamaDetails {
	return ollamaDetails{Format: "gguf", Family: e.Family, Families: []string{e.Family},
		ParameterSize: e.ParameterSize, QuantizationLevel: e.Quantization}
}

func (s *Server) ollamaRoot(w http.ResponseWriter, _ *http.Request, _ *Behavior) {
	writeRaw(w, http.StatusOK, ctText, []byte("Ollama is running"))
}

func (s *Server) ollamaVersion(w http.ResponseWriter, _ *http.Request, _ *Behavior) {
	writeJSON(w, http.StatusOK, ctJSONCharset, map[string]string{"version": s.cfg.Version}, false)
}

func (s *Server) ollamaTags(w http.ResponseWriter, _ *http.Request, _ *Behavior) {
	out := struct {
		Models []ollamaTag `json:"models"`
	}{Models: []ollamaTag{}}
	for _, e := range s.byModified() {
		out.Models = append(out.Models, ollamaTag{Name: e.display, Model: e.display,
			ModifiedAt: time.Unix(e.created, 0), Size: e.Size, Digest: e.digest, Details: details(e)})
	}
	writeJSON(w, http.StatusOK, ctJSONCharset, out, false)
}

// ollamaPS answers GET /api/ps from the residency model: loaded models,
// longest remaining keep-alive first.
func (s *Server) ollamaPS(w http.ResponseWriter, _ *http.Request, _ *Behavior) {
	out := struct {
		Models []ollamaPS `json:"models"`
	}{Models: []ollamaPS{}}
	for _, r := range s.res.snapshot() {
		e, ok := s.lookup(r.Name)
		if !ok {
			continue
		}
		p := ollamaPS{Name: e.display, Model: e.display, Size: r.Size, Digest: e.digest, Details: details(e),
			ExpiresAt: r.ExpiresAt, SizeVRAM: r.SizeVRAM}
		if s.feat.psContextLen {
			cl := e.ContextLength
			p.ContextLength = &cl
		}
		out.Models = append(out.Models, p)
	}
	writeJSON(w, http.StatusOK, ctJSONCharset, out, false)
}
