// Package sim runs simulated inference upstreams in-process: Ollama, generic
// OpenAI-compatible servers, faster-whisper-server, llama.cpp and vLLM. Each
// follows what the real server does — the endpoints it serves (by version),
// what each one accepts, ignores and refuses, its field names, error bodies,
// streaming framing and Prometheus metric names — with the server's source
// file or documentation page cited beside each behaviour, and
// docs/UPSTREAMS.md as the summary. The Ollama simulator is checked against
// real Ollama 0.17.4 recordings (fixture_test.go), so it cannot drift from
// the real server unnoticed.
//
// Timing and failures are scripted and can be changed at run time.
//
// # Lifetime and concurrency
//
// Start listens (127.0.0.1:0 unless Config.Addr says otherwise) and serves
// until Close. Every method of *Server is safe for concurrent use; Behavior
// changes (Update, SetBehavior) take effect for requests that start after the
// call. Counters are atomic and cumulative for the server's life.
//
// # Timing model
//
// For every inference request: load the model if the server loads on demand
// and it is not resident (Ollama, llama.cpp router mode: LoadTime, blocking
// the request as the real servers do), wait Latency (nothing written yet;
// failures injected by ErrorRate and FailBeforeFirstByte happen here), then
// TTFT, then one chunk per ChunkInterval. A non-streaming answer is written
// whole after Latency + TTFT + n*ChunkInterval. All waits end early when the
// client goes away.
package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/geniehive/geniehive/internal/release"
)

// Flavor selects which server the simulator impersonates.
type Flavor string

// Supported flavors.
const (
	FlavorOpenAI   Flavor = "openai"   // generic OpenAI-compatible server
	FlavorOllama   Flavor = "ollama"   // Ollama: /api/* plus its /v1 compatibility layer
	FlavorWhisper  Flavor = "whisper"  // faster-whisper-server / speaches
	FlavorLlamaCPP Flavor = "llamacpp" // llama.cpp llama-server
	FlavorVLLM     Flavor = "vllm"     // vLLM OpenAI-compatible server
)

// Model kinds (the same strings as fleet.Kind).
const (
	KindChat          = "chat"
	KindEmbeddings    = "embeddings"
	KindTranscription = "transcription"
	KindSpeech        = "speech" // /v1/audio/speech (text to speech)
	KindImages        = "images" // /v1/images/generations
)

// Ollama capabilities as /api/show reports them (types/model/capability.go).
const (
	CapCompletion = "completion"
	CapTools      = "tools"
	CapInsert     = "insert"
	CapVision     = "vision"
	CapEmbedding  = "embedding"
	CapThinking   = "thinking"
)

// Switch is a tri-state setting: "" or "auto" (what the simulated server
// and version do), "on" or "off".
type Switch string

// Switch values.
const (
	Auto Switch = ""
	On   Switch = "on"
	Off  Switch = "off"
)

func (s Switch) resolve(def bool) bool {
	switch s {
	case On:
		return true
	case Off:
		return false
	}
	return def
}

// Model is one model the simulated server offers.
type Model struct {
	Name          string `yaml:"name" json:"name"`
	Family        string `yaml:"family" json:"family"`                 // default: name up to ':' or '-'
	ParameterSize string `yaml:"parameter_size" json:"parameter_size"` // default "8B"
	Quantization  string `yaml:"quantization" json:"quantization"`     // default "Q4_K_M"
	ContextLength int    `yaml:"context_length" json:"context_length"` // default 8192
	// Loaded: resident when the server starts (Ollama /api/ps lists it;
	// llama.cpp router mode reports it loaded). Servers that load on
	// demand (Ollama, llama.cpp router) load the others on first use.
	Loaded bool  `yaml:"loaded" json:"loaded"`
	Size   int64 `yaml:"size" json:"size"` // bytes on disk (/api/tags); default 4.9 GB
	// SizeVRAM is the model's footprint once loaded (weights, KV cache,
	// graph): what /api/ps reports as size, and what counts against
	// Config.VRAMTotal. Default Size.
	SizeVRAM int64 `yaml:"size_vram" json:"size_vram"`
	// Thinking models reason before answering when thinking is on; how a
	// request turns it off depends on the server (see docs/UPSTREAMS.md).
	Thinking bool `yaml:"thinking" json:"thinking"`
	// ThinksOnly imitates a thinking model whose whole output lands in
	// reasoning while thinking is on (the recorded qwen3-tiny: its template
	// prefills <think> and the model never closes it): content stays
	// empty unless thinking is really off.
	ThinksOnly bool `yaml:"thinks_only" json:"thinks_only"`
	// IgnoresSwitch imitates a thinking model whose chat template reads no
	// thinking switch (DeepSeek-R1 and its distills: the template always
	// opens <think>, chat_template_kwargs.enable_thinking is not read), on
	// vLLM, llama.cpp and generic servers: it reasons whatever the request
	// says.
	IgnoresSwitch bool `yaml:"ignores_switch" json:"ignores_switch"`
	// Capabilities, when set, are exactly what Ollama's /api/show reports
	// (completion, embedding, tools, thinking, vision, insert) and decide
	// what the model accepts on every flavor. Default: from Kind and
	// Thinking (a chat model: completion and tools, plus thinking).
	Capabilities []string `yaml:"capabilities" json:"capabilities"`
	// Kind: chat (default), embeddings, transcription, speech or images
	// (guessed from the name when empty: whisper, embed, tts/speech,
	// dall-e/image/diffusion/sdxl/flux).
	Kind string `yaml:"kind" json:"kind"`
	// Dims is the embedding vector length (default 64). Ollama before
	// 0.30 answers /api/embed for chat models too, with this length.
	Dims int `yaml:"dims" json:"dims"`
	// CopyOf (Ollama only) makes this name an alias made with `ollama cp
	// CopyOf Name`: CopyModel (server/images.go) copies the manifest file
	// byte for byte, so both names have the same digest in /api/tags (the
	// manifest's sha256, manifest/manifest.go) and the same blob. The
	// scheduler keys runners by that blob (server/sched.go
	// schedulerModelKey: ModelPath), so the two names share one runner,
	// and /api/ps lists it once, under the name whose request loaded it
	// (PsHandler reports runnerRef.model, set by load). Everything but
	// Name and Loaded is taken from the model named, which must be listed
	// before this one.
	CopyOf string `yaml:"copy_of" json:"copy_of"`
}

// Has reports whether the model has the Ollama capability c.
func (m *Model) Has(c string) bool { return slices.Contains(m.Capabilities, c) }

// Behavior is the part of the configuration that may change while the server
// runs (Server.Update).
type Behavior struct {
	// Latency is waited before anything is written (response headers).
	Latency time.Duration `yaml:"latency"`
	// TTFT is waited after Latency before the first token.
	TTFT time.Duration `yaml:"ttft"`
	// ChunkInterval is the time between tokens (1/token rate).
	ChunkInterval time.Duration `yaml:"chunk_interval"`
	// Chunks is the number of content tokens per answer (default 16). The
	// request's token limit caps reasoning plus content, reasoning first
	// (finish_reason "length").
	Chunks int `yaml:"chunks"`
	// ReasoningChunks is the number of reasoning tokens a thinking model
	// emits before its answer (default 8).
	ReasoningChunks int `yaml:"reasoning_chunks"`
	// ToolCalls makes a model with the tools capability answer a request
	// that offers function tools (and whose last message is not a tool
	// result) with a call to the first tool, arguments filled from its
	// required parameters.
	ToolCalls bool `yaml:"tool_calls"`
	// LoadTime is how long loading a model takes on servers that load on
	// demand (Ollama, llama.cpp router mode); the request that triggers it
	// waits. UnloadTime is how long an unloaded model's memory stays
	// taken (Ollama waits for VRAM to recover before the next load).
	LoadTime   time.Duration `yaml:"load_time"`
	UnloadTime time.Duration `yaml:"unload_time"`
	// ErrorRate is the probability (0..1) that an inference request gets a
	// 500 in the flavor's error format before any byte of the answer.
	ErrorRate float64 `yaml:"error_rate"`
	// FailBeforeFirstByte makes every request (every path, health included)
	// fail by closing the connection without writing a byte: a dead host.
	FailBeforeFirstByte bool `yaml:"fail_before_first_byte"`
	// FailAfterChunks > 0 aborts a stream (connection cut) after that many
	// content chunks: a host dying mid-answer.
	FailAfterChunks int `yaml:"fail_after_chunks"`
	// Unhealthy makes /health answer 503 (inference still works).
	Unhealthy bool `yaml:"unhealthy"`
	// ExtraQueued is added to the reported queue depth (/metrics), to
	// simulate load from elsewhere.
	ExtraQueued int `yaml:"extra_queued"`
}

// Config describes one simulated server.
type Config struct {
	Flavor Flavor `yaml:"flavor"` // default openai
	// Addr to listen on; default "127.0.0.1:0".
	Addr   string  `yaml:"listen"`
	Models []Model `yaml:"models"`
	// Version of the simulated server; the endpoints and behaviours that
	// changed between releases follow it (docs/UPSTREAMS.md). Ollama:
	// "0.17.4" by default (the recorded release), reported by
	// /api/version. vLLM: "0.17.1", reported by /version. llama.cpp: the
	// build, "b7600" by default, reported by /props build_info.
	Version string `yaml:"version"`
	// Responses and Messages choose whether /v1/responses and /v1/messages
	// (with /v1/messages/count_tokens where the server has it) are served
	// natively: Auto follows the flavor and version, Off answers them with
	// the server's own 404 for an unknown route.
	Responses Switch `yaml:"responses"`
	Messages  Switch `yaml:"messages"`
	// VRAMTotal is the memory budget models load into (bytes); 0 means
	// unlimited. Ollama evicts idle models to make room
	// (server/sched.go).
	VRAMTotal int64 `yaml:"vram_total"`
	// CPUOnly: no GPU, so Ollama's /api/ps reports size_vram 0 (as in the
	// recordings). The budget still applies to memory.
	CPUOnly bool `yaml:"cpu_only"`
	// KeepAlive is Ollama's OLLAMA_KEEP_ALIVE: how long an idle model stays
	// loaded when the request does not say (default 5m; negative: forever).
	KeepAlive time.Duration `yaml:"keep_alive"`
	// MaxLoaded caps resident models: Ollama's OLLAMA_MAX_LOADED_MODELS
	// (default 3 per GPU; one GPU here) and llama.cpp's --models-max
	// (default 4). 0 means the default; negative means no cap.
	MaxLoaded int `yaml:"max_loaded"`
	// Router puts llama.cpp in router mode (several models, /models load
	// and unload endpoints, autoload); default: on when it has more than
	// one model.
	Router Switch `yaml:"router"`
	// Slots > 0 limits concurrent generations; further requests wait in a
	// queue (reported as requests_deferred / num_requests_waiting).
	Slots int `yaml:"slots"`

	Behavior `yaml:",inline"`
}

func (b *Behavior) defaults() {
	if b.Chunks <= 0 {
		b.Chunks = 16
	}
	if b.ReasoningChunks <= 0 {
		b.ReasoningChunks = 8
	}
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	switch c.Flavor {
	case "":
		c.Flavor = FlavorOpenAI
	case FlavorOpenAI, FlavorOllama, FlavorWhisper, FlavorLlamaCPP, FlavorVLLM:
	default:
		return fmt.Errorf("sim: unknown flavor %q (want openai, ollama, whisper, llamacpp or vllm)", c.Flavor)
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Version == "" {
		c.Version = defaultVersion(c.Flavor)
	}
	if c.Flavor == FlavorOllama || c.Flavor == FlavorVLLM {
		if _, ok := release.Parse(c.Version); !ok {
			return fmt.Errorf("sim: version %q is not a release number like 0.17.4", c.Version)
		}
	}
	for _, s := range []Switch{c.Responses, c.Messages, c.Router} {
		switch s {
		case Auto, "auto", On, Off:
		default:
			return fmt.Errorf("sim: %q is not auto, on or off", s)
		}
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 5 * time.Minute // envconfig.KeepAlive default
	}
	if c.ErrorRate < 0 || c.ErrorRate > 1 {
		return errors.New("sim: error_rate must be within 0..1")
	}
	if c.VRAMTotal < 0 {
		return errors.New("sim: vram_total must not be negative")
	}
	c.Behavior.defaults()
	if len(c.Models) == 0 {
		return errors.New("sim: at least one model is required")
	}
	seen := map[string]bool{}
	for i := range c.Models {
		m := &c.Models[i]
		if m.Name == "" {
			return fmt.Errorf("sim: models[%d]: name is required", i)
		}
		if seen[m.Name] {
			return fmt.Errorf("sim: models[%d]: duplicate model %q", i, m.Name)
		}
		if m.CopyOf != "" {
			switch {
			case c.Flavor != FlavorOllama:
				return fmt.Errorf("sim: model %q: copy_of is for the ollama flavor only", m.Name)
			case !seen[m.CopyOf] && !seen[ollamaDisplay(m.CopyOf)]:
				return fmt.Errorf("sim: model %q: copy_of %q is not a model listed before it", m.Name, m.CopyOf)
			}
		}
		seen[m.Name] = true
		m.fill(c.Flavor)
		switch m.Kind {
		case KindChat, KindEmbeddings, KindTranscription, KindSpeech, KindImages:
		default:
			return fmt.Errorf("sim: model %q: unknown kind %q (want chat, embeddings, transcription, speech or images)", m.Name, m.Kind)
		}
		for _, cp := range m.Capabilities {
			switch cp {
			case CapCompletion, CapTools, CapInsert, CapVision, CapEmbedding, CapThinking:
			default:
				return fmt.Errorf("sim: model %q: unknown capability %q", m.Name, cp)
			}
		}
	}
	return nil
}

func defaultVersion(f Flavor) string {
	switch f {
	case FlavorOllama:
		return "0.17.4"
	case FlavorVLLM:
		return "0.17.1"
	case FlavorLlamaCPP:
		return "b7600"
	}
	return "1.0.0"
}

func (m *Model) fill(f Flavor) {
	if m.Kind == "" {
		m.Kind = guessKind(f, m)
	}
	if len(m.Capabilities) == 0 {
		switch m.Kind {
		case KindChat:
			m.Capabilities = []string{CapCompletion, CapTools}
			if m.Thinking {
				m.Capabilities = append(m.Capabilities, CapThinking)
			}
		case KindEmbeddings:
			m.Capabilities = []string{CapEmbedding}
		default:
			m.Capabilities = []string{CapCompletion}
		}
	} else {
		m.Thinking = m.Has(CapThinking)
	}
	if m.ThinksOnly {
		m.Thinking = true
	}
	if m.Family == "" {
		n := m.Name
		if i := strings.LastIndexByte(n, '/'); i >= 0 {
			n = n[i+1:]
		}
		if i := strings.IndexAny(n, ":-"); i > 0 {
			n = n[:i]
		}
		m.Family = strings.ToLower(n)
	}
	if m.ParameterSize == "" {
		m.ParameterSize = "8B"
	}
	if m.Quantization == "" {
		m.Quantization = "Q4_K_M"
	}
	if m.ContextLength == 0 {
		m.ContextLength = 8192
	}
	if m.Size == 0 {
		m.Size = 4_900_000_000
	}
	if m.SizeVRAM == 0 {
		m.SizeVRAM = m.Size
	}
	if m.Dims == 0 {
		m.Dims = 64
	}
}

func guessKind(f Flavor, m *Model) string {
	n := strings.ToLower(m.Name)
	switch {
	case slices.Contains(m.Capabilities, CapEmbedding):
		return KindEmbeddings
	case len(m.Capabilities) > 0:
		return KindChat
	case f == FlavorWhisper || strings.Contains(n, "whisper"):
		return KindTranscription
	case strings.Contains(n, "embed"):
		return KindEmbeddings
	case strings.Contains(n, "tts") || strings.Contains(n, "speech") || strings.Contains(n, "kokoro") || strings.Contains(n, "piper"):
		return KindSpeech
	case strings.Contains(n, "dall-e") || strings.Contains(n, "image") || strings.Contains(n, "diffusion") || strings.Contains(n, "sdxl") || strings.Contains(n, "flux"):
		return KindImages
	}
	return KindChat
}
