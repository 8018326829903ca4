package sim

// Endpoints only llama.cpp's llama-server (tools/server/server.cpp,
// server-models.cpp, README "API Endpoints") or vLLM
// (vllm/entrypoints/openai/api_server.py) have.

import (
	"encoding/binary"
	"net/http"

	"github.com/valyala/fastjson"
)

// Tokens: the simulator's tokenizer packs up to 4 bytes of text into one
// token id, so that detokenize inverts tokenize and counts stay close to
// the ~4 characters per token used everywhere else.
func tokenize(text string) []int {
	out := make([]int, 0, len(text)/4+1)
	for i := 0; i < len(text); i += 4 {
		var b [4]byte
		copy(b[:], text[i:min(i+4, len(text))])
		out = append(out, int(binary.LittleEndian.Uint32(b[:])))
	}
	return out
}

func detokenize(ids []int) string {
	var out []byte
	for _, id := range ids {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(id))
		for _, c := range b {
			if c != 0 {
				out = append(out, c)
			}
		}
	}
	return string(out)
}

func intArray(v *fastjson.Value, key string) []int {
	var out []int
	for _, t := range v.GetArray(key) {
		out = append(out, t.GetInt())
	}
	return out
}

// bodyJSON reads and parses a JSON object body (endpoints off the hot
// path: a parser of its own); on failure it has answered.
func (s *Server) bodyJSON(w http.ResponseWriter, r *http.Request, a api) (*fastjson.Value, bool) {
	body, ok := s.readBody(w, r, a)
	if !ok {
		return nil, false
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(body)
	if err != nil || v.Type() != fastjson.TypeObject {
		s.badJSON(w, a, body)
		return nil, false
	}
	return v, true
}

// llamaTokenize: POST /tokenize {"content": ...} → {"tokens": [...]}.
func (s *Server) llamaTokenize(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	v, ok := s.bodyJSON(w, r, apiOther)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, ctJSONCharset, map[string][]int{"tokens": tokenize(string(v.GetStringBytes("content")))}, false)
}

// llamaDetokenize: POST /detokenize {"tokens": [...]} → {"content": ...}.
func (s *Server) llamaDetokenize(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	v, ok := s.bodyJSON(w, r, apiOther)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, ctJSONCharset, map[string]string{"content": detokenize(intArray(v, "tokens"))}, false)
}

// llamaProps: GET /props. build_info is how a client learns the build
// ("b<build>-<commit>"); in router mode without ?model= the router answers
// for itself.
func (s *Server) llamaProps(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	m := s.models.Load().list[0]
	if s.router {
		name := r.URL.Query().Get("model")
		if name == "" {
			writeJSON(w, http.StatusOK, ctJSONCharset, map[string]any{"role": "router", "max_instances": s.res.maxLoaded,
				"model_alias": "llama-server", "model_path": "none", "build_info": s.cfg.Version,
				"default_generation_settings": map[string]any{"params": map[string]any{}, "n_ctx": 0}}, false)
			return
		}
		e, ok := s.lookup(name)
		if !ok {
			s.fail(w, apiOther, apiErr{status: 400, msg: "model not found"})
			return
		}
		m = e
	}
	slots := max(s.cfg.Slots, 1)
	writeJSON(w, http.StatusOK, ctJSONCharset, map[string]any{
		"default_generation_settings": map[string]any{"n_ctx": m.ContextLength, "params": map[string]any{"n_predict": -1}},
		"total_slots":                 slots,
		"model_alias":                 m.Name,
		"model_path":                  "/models/" + m.Name + ".gguf",
		"chat_template":               showTemplate(m),
		"modalities":                  map[string]bool{"vision": m.Has(CapVision), "audio": false},
		"build_info":                  s.cfg.Version + "-sim",
		"is_sleeping":                 false,
	}, false)
}

// llamaLoad: router POST /models/load {"model"} → {"success":true}; the
// load goes on in the background (server-models.cpp post_router_models_load).
func (s *Server) llamaLoad(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	s.llamaModelCommand(w, r, true)
}

// llamaUnload: router POST /models/unload {"model"} → {"success":true}.
func (s *Server) llamaUnload(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	s.llamaModelCommand(w, r, false)
}

func (s *Server) llamaModelCommand(w http.ResponseWriter, r *http.Request, load bool) {
	v, ok := s.bodyJSON(w, r, apiOther)
	if !ok {
		return
	}
	e, ok := s.lookup(string(v.GetStringBytes("model")))
	switch {
	case !ok && load:
		s.fail(w, apiOther, apiErr{status: 404, msg: "model is not found"})
	case !ok: // unload answers 400 for an unknown model
		s.fail(w, apiOther, apiErr{status: 400, msg: "model is not found"})
	case load && e.loaded.Load():
		s.fail(w, apiOther, apiErr{status: 400, msg: "model is already loaded"})
	case !load && !e.loaded.Load():
		s.fail(w, apiOther, apiErr{status: 400, msg: "model is not loaded"})
	default:
		if load {
			s.res.loadAsync(e)
		} else {
			s.res.expire(e)
		}
		writeJSON(w, http.StatusOK, ctJSONCharset, map[string]bool{"success": true}, false)
	}
}

// vllmVersion: GET /version → {"version": "..."}.
func (s *Server) vllmVersion(w http.ResponseWriter, _ *http.Request, _ *Behavior) {
	writeJSON(w, http.StatusOK, ctJSON, map[string]string{"version": s.cfg.Version}, false)
}

// modelBody reads a JSON body naming one of the server's models.
func (s *Server) modelBody(w http.ResponseWriter, r *http.Request) (*fastjson.Value, *modelEntry, bool) {
	v, ok := s.bodyJSON(w, r, apiOther)
	if !ok {
		return nil, nil, false
	}
	e, ok := s.openAIModel(w, apiOther, string(v.GetStringBytes("model")))
	return v, e, ok
}

// vllmTokenize: POST /tokenize {"model","prompt"} or {"model","messages"}
// → {"count","max_model_len","tokens","token_strs"}.
func (s *Server) vllmTokenize(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	v, e, ok := s.modelBody(w, r)
	if !ok {
		return
	}
	text := string(v.GetStringBytes("prompt"))
	for _, m := range v.GetArray("messages") {
		text += string(m.GetStringBytes("content"))
	}
	toks := tokenize(text)
	writeJSON(w, http.StatusOK, ctJSON, map[string]any{"count": len(toks), "max_model_len": e.ContextLength, "tokens": toks, "token_strs": nil}, false)
}

// vllmDetokenize: POST /detokenize {"model","tokens"} → {"prompt"}.
func (s *Server) vllmDetokenize(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	v, _, ok := s.modelBody(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, ctJSON, map[string]string{"prompt": detokenize(intArray(v, "tokens"))}, false)
}
