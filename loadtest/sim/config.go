// Package sim runs simulated inference upstreams in-process: Ollama, generic
// OpenAI-compatible servers, faster-whisper-server, llama.cpp and vLLM. Each
// speaks its real wire format (JSON shapes, SSE framing, Prometheus metric
// names) closely enough that the OpenAI Go SDK, GenieHive's edge and node
// agent cannot tell it from the real thing, while its timing and failures are
// scripted and can be changed at run time.
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
// For every inference request: wait Latency (nothing written yet; failures
// injected by ErrorRate and FailBeforeFirstByte happen here), then TTFT, then
// one chunk per ChunkInterval. A non-streaming answer is written whole after
// Latency + TTFT + n*ChunkInterval. All waits end early when the client goes
// away.
package sim

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Flavor selects which server the simulator impersonates.
type Flavor string

// Supported flavors.
const (
	FlavorOpenAI   Flavor = "openai"   // generic OpenAI-compatible server
	FlavorOllama   Flavor = "ollama"   // Ollama: /api/* plus its /v1 compatibility layer
	FlavorWhisper  Flavor = "whisper"  // faster-whisper-server / speaches
	FlavorLlamaCPP Flavor = "llamacpp" // llama.cpp server: /metrics with llamacpp:* names
	FlavorVLLM     Flavor = "vllm"     // vLLM: /metrics with vllm:* names
)

// Model kinds (the same strings as fleet.Kind).
const (
	KindChat          = "chat"
	KindEmbeddings    = "embeddings"
	KindTranscription = "transcription"
	KindSpeech        = "speech" // /v1/audio/speech (text to speech)
	KindImages        = "images" // /v1/images/generations
)

// Model is one model the simulated server offers.
type Model struct {
	Name          string `yaml:"name" json:"name"`
	Family        string `yaml:"family" json:"family"`                 // default: name up to ':' or '-'
	ParameterSize string `yaml:"parameter_size" json:"parameter_size"` // default "8B"
	Quantization  string `yaml:"quantization" json:"quantization"`     // default "Q4_K_M"
	ContextLength int    `yaml:"context_length" json:"context_length"` // default 8192
	// Loaded: resident in VRAM (Ollama /api/ps lists it). Ollama loads a
	// model on first use; other flavors ignore this.
	Loaded   bool  `yaml:"loaded" json:"loaded"`
	Size     int64 `yaml:"size" json:"size"`           // bytes on disk; default 4.9 GB
	SizeVRAM int64 `yaml:"size_vram" json:"size_vram"` // bytes in VRAM when loaded; default Size
	// Thinking models emit reasoning_content before their answer unless the
	// request turns thinking off ("think": false,
	// chat_template_kwargs.enable_thinking false, or "/no_think" in a message).
	Thinking bool `yaml:"thinking" json:"thinking"`
	// Kind: chat (default), embeddings, transcription, speech or images
	// (guessed from the name when empty: whisper, embed, tts/speech,
	// dall-e/image/diffusion/sdxl/flux).
	Kind string `yaml:"kind" json:"kind"`
	// Dims is the embedding vector length (embeddings models; default 64).
	Dims int `yaml:"dims" json:"dims"`
}

// Behavior is the part of the configuration that may change while the server
// runs (Server.Update).
type Behavior struct {
	// Latency is waited before anything is written (response headers).
	Latency time.Duration `yaml:"latency"`
	// TTFT is waited after Latency before the first token.
	TTFT time.Duration `yaml:"ttft"`
	// ChunkInterval is the time between tokens (1/token rate).
	ChunkInterval time.Duration `yaml:"chunk_interval"`
	// Chunks is the number of content tokens per answer (default 16);
	// max_tokens in a request lowers it (finish_reason "length").
	Chunks int `yaml:"chunks"`
	// ReasoningChunks is the number of reasoning tokens a thinking model
	// emits before its answer (default 8).
	ReasoningChunks int `yaml:"reasoning_chunks"`
	// ErrorRate is the probability (0..1) that an inference request gets a
	// 500 in OpenAI error format before any byte of the answer.
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
	// VRAMTotal is the GPU memory the host claims (bytes); informational.
	VRAMTotal int64 `yaml:"vram_total"`
	// Version reported by Ollama's /api/version (default "0.9.0").
	Version string `yaml:"version"`
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
		c.Version = "0.9.0"
	}
	if c.ErrorRate < 0 || c.ErrorRate > 1 {
		return errors.New("sim: error_rate must be within 0..1")
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
		seen[m.Name] = true
		m.fill(c.Flavor)
		switch m.Kind {
		case KindChat, KindEmbeddings, KindTranscription, KindSpeech, KindImages:
		default:
			return fmt.Errorf("sim: model %q: unknown kind %q (want chat, embeddings, transcription, speech or images)", m.Name, m.Kind)
		}
	}
	return nil
}

func (m *Model) fill(f Flavor) {
	if m.Kind == "" {
		m.Kind = KindChat
		if f == FlavorWhisper || strings.Contains(strings.ToLower(m.Name), "whisper") {
			m.Kind = KindTranscription
		} else if n := strings.ToLower(m.Name); strings.Contains(n, "embed") {
			m.Kind = KindEmbeddings
		} else if strings.Contains(n, "tts") || strings.Contains(n, "speech") || strings.Contains(n, "kokoro") || strings.Contains(n, "piper") {
			m.Kind = KindSpeech
		} else if strings.Contains(n, "dall-e") || strings.Contains(n, "image") || strings.Contains(n, "diffusion") || strings.Contains(n, "sdxl") || strings.Contains(n, "flux") {
			m.Kind = KindImages
		}
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
