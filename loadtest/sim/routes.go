package sim

import (
	"net/http"
	"strings"
	"time"
)

type handler func(w http.ResponseWriter, r *http.Request, b *Behavior)

type route struct {
	method string
	head   bool // GET route that also answers HEAD
	h      handler
}

// routeTable is what each simulated server serves, from its own route
// registration: Ollama server/routes.go GenerateRoutes, llama.cpp
// tools/server/server.cpp, vLLM vllm/entrypoints/openai/api_server.py and
// vllm/entrypoints/anthropic, OpenAI's API reference for the generic
// flavor, speaches (faster-whisper-server) for whisper.
func (s *Server) routeTable() map[string]route {
	m := map[string]route{}
	get := func(p string, h handler) { m[p] = route{method: http.MethodGet, h: h} }
	getHead := func(p string, h handler) { m[p] = route{method: http.MethodGet, head: true, h: h} }
	post := func(p string, h handler) { m[p] = route{method: http.MethodPost, h: h} }
	f := s.feat
	switch s.cfg.Flavor {
	case FlavorOllama:
		getHead("/", s.ollamaRoot)
		getHead("/api/version", s.ollamaVersion)
		getHead("/api/tags", s.ollamaTags)
		get("/api/ps", s.ollamaPS)
		post("/api/show", s.ollamaShow)
		post("/api/chat", s.ollamaChat)
		post("/api/generate", s.ollamaGenerate)
		post("/api/embed", s.ollamaEmbed)
		post("/api/embeddings", s.ollamaEmbeddings)
		post("/v1/chat/completions", s.chat)
		post("/v1/completions", s.completions)
		post("/v1/embeddings", s.embeddings)
		get("/v1/models", s.listModels)
	case FlavorLlamaCPP:
		get("/health", s.health)
		get("/v1/health", s.health)
		get("/metrics", s.metrics)
		get("/props", s.llamaProps)
		get("/models", s.listModels)
		get("/v1/models", s.listModels)
		post("/completions", s.completions)
		post("/v1/completions", s.completions)
		post("/chat/completions", s.chat)
		post("/v1/chat/completions", s.chat)
		post("/embeddings", s.embeddings)
		post("/v1/embeddings", s.embeddings)
		post("/tokenize", s.llamaTokenize)
		post("/detokenize", s.llamaDetokenize)
		post("/v1/audio/transcriptions", s.transcription)
		if s.router {
			post("/models/load", s.llamaLoad)
			post("/models/unload", s.llamaUnload)
		}
	case FlavorVLLM:
		get("/health", s.health)
		get("/version", s.vllmVersion)
		get("/metrics", s.metrics)
		get("/v1/models", s.listModels)
		post("/v1/chat/completions", s.chat)
		post("/v1/completions", s.completions)
		post("/v1/embeddings", s.embeddings)
		post("/tokenize", s.vllmTokenize)
		post("/detokenize", s.vllmDetokenize)
		post("/v1/audio/transcriptions", s.transcription)
	case FlavorWhisper:
		get("/health", s.health)
		get("/v1/models", s.listModels)
		post("/v1/audio/transcriptions", s.transcription)
		post("/v1/audio/speech", s.speech)
	default:
		get("/health", s.health)
		get("/v1/models", s.listModels)
		post("/v1/chat/completions", s.chat)
		post("/v1/completions", s.completions)
		post("/v1/embeddings", s.embeddings)
		post("/v1/audio/transcriptions", s.transcription)
		post("/v1/audio/speech", s.speech)
		post("/v1/images/generations", s.images)
	}
	if f.responses {
		post("/v1/responses", s.responses)
	}
	if f.messages {
		post("/v1/messages", s.messages)
	}
	if f.countTok {
		post("/v1/messages/count_tokens", s.countTokens)
	}
	return m
}

// prefixRoute serves the paths with a parameter.
func (s *Server) prefixRoute(path string) (route, bool) {
	switch {
	case strings.HasPrefix(path, "/v1/models/") && (s.cfg.Flavor == FlavorOllama || s.cfg.Flavor == FlavorOpenAI):
		// Ollama: GET /v1/models/:model (RetrieveMiddleware); OpenAI:
		// GET /v1/models/{model}. vLLM and llama.cpp have no retrieve.
		return route{method: http.MethodGet, h: s.retrieveModel}, true
	case strings.HasPrefix(path, imageFilesPrefix) && s.cfg.Flavor == FlavorOpenAI:
		return route{method: http.MethodGet, h: s.imageFile}, true
	}
	return route{}, false
}

// writer writes one answer in a dialect, streamed (the emitter methods)
// or whole.
type writer interface {
	emitter
	whole()
}

// writerFactory makes the writer once the answer is planned.
type writerFactory interface {
	newWriter(p plan) writer
}

// factoryFunc adapts a function (the paths where an allocation does not
// matter).
type factoryFunc func(p plan) writer

func (f factoryFunc) newWriter(p plan) writer { return f(p) }

// serveGen carries a checked generation request to its answer: a
// generation slot (queueing), Latency, injected failures, then the answer
// streamed or whole. The caller holds the in-flight count and any model
// reference.
func (s *Server) serveGen(w http.ResponseWriter, r *http.Request, b *Behavior, g *genReq, loadTime time.Duration, mk writerFactory) {
	ctx := r.Context()
	release, ok := s.gate(ctx)
	if !ok {
		s.clientAborts.Add(1)
		return
	}
	defer release()
	var t *time.Timer
	if !pause(ctx, &t, b.Latency) {
		s.clientAborts.Add(1)
		return
	}
	if s.inject(w, g.api, b) {
		return
	}
	p := planFor(b, g)
	p.loadTime = loadTime
	wr := mk.newWriter(p)
	if g.stream {
		if s.stream(ctx, w, b, t, &p, wr) {
			s.account(g, &p)
		}
		return
	}
	if !s.holdAnswer(ctx, b, t, &p) {
		return
	}
	wr.whole()
	s.account(g, &p)
}

// acquire makes g's model resident for the request (loading it on the
// servers that load on demand, waiting as they do); false when the client
// went away meanwhile.
func (s *Server) acquire(r *http.Request, g *genReq) (release func(), loadTime time.Duration, ok bool) {
	rel, d, err := s.res.acquire(r.Context(), g.model, g.keepAlive)
	if err != nil {
		s.clientAborts.Add(1)
		return nil, 0, false
	}
	return rel, d, true
}
