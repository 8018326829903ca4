package sim

import (
	"net/http"
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
}

func (s *Server) listModels(w http.ResponseWriter) {
	t := s.models.Load()
	out := modelList{Object: "list", Data: make([]modelInfo, 0, len(t.list))}
	for _, e := range t.list {
		mi := modelInfo{ID: e.Name, Object: "model", Created: e.created}
		switch s.cfg.Flavor {
		case FlavorOllama:
			mi.OwnedBy = "library"
		case FlavorVLLM:
			mi.OwnedBy, mi.Root, mi.MaxModelLen = "vllm", e.Name, e.ContextLength
		case FlavorLlamaCPP:
			mi.OwnedBy = "llamacpp"
			mi.Meta = map[string]any{"vocab_type": 2, "n_vocab": 151936, "n_ctx_train": e.ContextLength,
				"n_embd": 4096, "n_params": paramCount(e.ParameterSize), "size": e.Size}
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
	writeJSON(w, http.StatusOK, out)
}

// paramCount turns "8B" / "3.2B" / "500M" into a parameter count.
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
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return int64(f * mult)
}

func (s *Server) health(w http.ResponseWriter, b *Behavior) {
	if b.Unhealthy {
		writeError(w, http.StatusServiceUnavailable, "unavailable_error", "unavailable", "", "Loading model")
		return
	}
	switch s.cfg.Flavor {
	case FlavorVLLM:
		w.WriteHeader(http.StatusOK) // vLLM: empty 200
	case FlavorWhisper:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("OK"))
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// Ollama native API shapes.
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
	ModifiedAt string        `json:"modified_at"`
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
	ExpiresAt     string        `json:"expires_at"`
	SizeVRAM      int64         `json:"size_vram"`
	ContextLength int           `json:"context_length"`
}

func details(e *modelEntry) ollamaDetails {
	return ollamaDetails{Format: "gguf", Family: e.Family, Families: []string{e.Family},
		ParameterSize: e.ParameterSize, QuantizationLevel: e.Quantization}
}

func (s *Server) ollama(w http.ResponseWriter, path string) {
	t := s.models.Load()
	switch path {
	case "/":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Ollama is running"))
	case "/api/version":
		writeJSON(w, http.StatusOK, map[string]string{"version": s.cfg.Version})
	case "/api/tags":
		out := struct {
			Models []ollamaTag `json:"models"`
		}{Models: []ollamaTag{}}
		for _, e := range t.list {
			out.Models = append(out.Models, ollamaTag{Name: e.Name, Model: e.Name,
				ModifiedAt: time.Unix(e.created, 0).Format(time.RFC3339Nano), Size: e.Size,
				Digest: e.digest, Details: details(e)})
		}
		writeJSON(w, http.StatusOK, out)
	case "/api/ps":
		out := struct {
			Models []ollamaPS `json:"models"`
		}{Models: []ollamaPS{}}
		exp := time.Now().Add(5 * time.Minute).Format(time.RFC3339Nano)
		for _, e := range t.list {
			if !e.loaded.Load() {
				continue
			}
			out.Models = append(out.Models, ollamaPS{Name: e.Name, Model: e.Name, Size: e.Size,
				Digest: e.digest, Details: details(e), ExpiresAt: exp, SizeVRAM: e.SizeVRAM,
				ContextLength: e.ContextLength})
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) metrics(w http.ResponseWriter, b *Behavior) {
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
		metric("llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.", "", strconv.FormatInt(pt, 10))
		metric("llamacpp:tokens_predicted_total", "counter", "Number of generation tokens processed.", "", strconv.FormatInt(ct, 10))
		metric("llamacpp:kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.", "", f(usage))
		metric("llamacpp:requests_processing", "gauge", "Number of requests processing.", "", strconv.FormatInt(running, 10))
		metric("llamacpp:requests_deferred", "gauge", "Number of requests deferred.", "", strconv.FormatInt(waiting, 10))
	} else {
		name := ""
		if l := s.models.Load().list; len(l) > 0 {
			name = l[0].Name
		}
		lbl := `{engine="0",model_name="` + strings.ReplaceAll(name, `"`, `\"`) + `"}`
		fv := func(v int64) string { return strconv.FormatFloat(float64(v), 'f', 1, 64) }
		metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", lbl, fv(running))
		metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", lbl, fv(waiting))
		metric("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.", lbl, f(usage))
		metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", lbl, fv(pt))
		metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", lbl, fv(ct))
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(sb.String()))
}
