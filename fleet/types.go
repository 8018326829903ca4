package fleet

import "time"

// Kind is the operation a service performs. A request is only ever routed to a
// service of the kind its route implies (an embeddings request never lands on
// a chat-only service).
type Kind string

// The service kinds GenieHive routes.
const (
	KindChat          Kind = "chat"
	KindEmbeddings    Kind = "embeddings"
	KindTranscription Kind = "transcription"
	KindSpeech        Kind = "speech"
	KindImages        Kind = "images"
)

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindChat, KindEmbeddings, KindTranscription, KindSpeech, KindImages:
		return true
	}
	return false
}

// Discovery protocols a node agent speaks to find a service's models and load.
const (
	ProtocolNone     = ""
	ProtocolOllama   = "ollama"
	ProtocolOpenAI   = "openai"
	ProtocolWhisper  = "whisper"
	ProtocolLlamaCPP = "llamacpp"
	ProtocolVLLM     = "vllm"
)

// Host is one inference machine, as its node agent reports it.
type Host struct {
	ID        string            `json:"id"`
	Labels    map[string]string `json:"labels,omitempty"`
	Agent     string            `json:"agent,omitempty"` // agent version
	StartedAt time.Time         `json:"started_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	// VRAM reported for the whole host (nvidia-smi), when known.
	GPUs []GPU `json:"gpus,omitempty"`
}

// GPU is one accelerator on a host (from nvidia-smi).
type GPU struct {
	Index          int    `json:"index"`
	Name           string `json:"name"`
	VRAMUsedBytes  int64  `json:"vram_used_bytes"`
	VRAMTotalBytes int64  `json:"vram_total_bytes"`
	UtilPercent    int    `json:"util_percent"`
}

// Asset is one model a service can serve.
type Asset struct {
	// Name is the upstream's own model name ("qwen3:8b", "llama3.1:8b-instruct-q4_K_M").
	Name          string `json:"name"`
	Family        string `json:"family,omitempty"`         // "qwen3", "llama"
	ParameterSize string `json:"parameter_size,omitempty"` // "8B"
	Quantization  string `json:"quantization,omitempty"`   // "Q4_K_M"
	ContextLength int    `json:"context_length,omitempty"`
	Loaded        bool   `json:"loaded"`
	// Loading: the node agent sent this model a load command and has not
	// confirmed it yet. Ollama lists a model in /api/ps while it is still
	// loading (server/sched.go load puts the runner in s.loaded before
	// WaitUntilRunning; PsHandler lists s.loaded), so Loaded alone does not
	// say the model can answer. Edges treat a loading asset as not loaded
	// yet (Ready): a request waits for it, bounded by swap.wait.
	Loading  bool  `json:"loading,omitempty"`
	SizeVRAM int64 `json:"size_vram,omitempty"` // bytes resident in VRAM when loaded
	// Size is the model's size on disk (Ollama's /api/tags), the swap
	// controller's estimate of what loading it takes when it is not loaded.
	Size int64    `json:"size,omitempty"`
	Tags []string `json:"tags,omitempty"`
	// Thinking marks a model that emits reasoning (reasoning_content) by default.
	Thinking bool `json:"thinking,omitempty"`
	// Capabilities are what the upstream says the model can do (Ollama's
	// POST /api/show: completion, embedding, vision, tools, thinking,
	// insert), or the node agent's guess from its family when the server
	// is too old to say; empty when unknown.
	Capabilities []string `json:"capabilities,omitempty"`
}

// Ollama model capabilities (types/model/capability.go).
const (
	CapCompletion = "completion"
	CapEmbedding  = "embedding"
	CapVision     = "vision"
	CapTools      = "tools"
	CapThinking   = "thinking"
	CapInsert     = "insert"
)

// Ready reports whether the asset is loaded and can answer now: loaded and
// not still loading.
func (a *Asset) Ready() bool { return a.Loaded && !a.Loading }

// Can reports whether the asset's capabilities include c.
func (a *Asset) Can(c string) bool {
	for _, x := range a.Capabilities {
		if x == c {
			return true
		}
	}
	return false
}

// CapabilityKind is the kind of service an asset with these capabilities
// serves: embeddings for an embedding model, chat for a completion model,
// "" when the capabilities do not say.
func (a *Asset) CapabilityKind() Kind {
	switch {
	case a.Can(CapEmbedding):
		return KindEmbeddings
	case a.Can(CapCompletion):
		return KindChat
	}
	return ""
}

// Metrics are the load signals a node observes for one service.
type Metrics struct {
	LoadedModelCount int     `json:"loaded_model_count"`
	VRAMUsedBytes    int64   `json:"vram_used_bytes"`
	VRAMTotalBytes   int64   `json:"vram_total_bytes"`
	QueueDepth       int     `json:"queue_depth"`
	InFlight         int     `json:"in_flight"`         // running requests the upstream reports
	LatencyMS        float64 `json:"latency_ms"`        // health-check / observed latency
	TokensPerSecond  float64 `json:"tokens_per_second"` // observed generation rate
}

// Service is one upstream endpoint on a host (an Ollama, a vLLM, a whisper server…).
type Service struct {
	// ID is unique across the fleet: "<host>/<name>".
	ID       string `json:"id"`
	HostID   string `json:"host_id"`
	Name     string `json:"name"`
	Kind     Kind   `json:"kind"`
	Protocol string `json:"protocol,omitempty"` // discovery protocol; also the upstream dialect
	// Endpoint is the base URL the edge proxies to (no trailing slash), e.g.
	// "http://10.0.0.5:11434". OpenAI paths (/v1/...) are appended to it.
	Endpoint       string   `json:"endpoint"`
	MaxConcurrency int      `json:"max_concurrency,omitempty"` // 0 = unlimited
	Healthy        bool     `json:"healthy"`
	HealthError    string   `json:"health_error,omitempty"`
	Assets         []Asset  `json:"assets"`
	Metrics        Metrics  `json:"metrics"`
	Labels         []string `json:"labels,omitempty"`
	// APIs are the client-facing APIs the upstream serves natively (API*
	// names), found from its version at discovery or configured (the node
	// config's apis). The edge passes a request of such an API through and
	// translates the others to and from Chat Completions. Empty: chat only.
	APIs []string `json:"apis,omitempty"`
	// Swap says how the node agent loads and unloads this service's models
	// on command (Swap* names); empty: it cannot, and is never sent one.
	Swap string `json:"swap,omitempty"`
}

// Client-facing APIs (Service.APIs, and the policy input's api).
const (
	APIChat        = "chat"         // POST /v1/chat/completions
	APIResponses   = "responses"    // POST /v1/responses (OpenAI Responses)
	APIMessages    = "messages"     // POST /v1/messages (Anthropic Messages)
	APICountTokens = "count_tokens" // POST /v1/messages/count_tokens
	APICompletions = "completions"  // POST /v1/completions (legacy)
)

// ValidAPI reports whether a is one of the API* names.
func ValidAPI(a string) bool {
	switch a {
	case APIChat, APIResponses, APIMessages, APICountTokens, APICompletions:
		return true
	}
	return false
}

// Speaks reports whether the service serves api natively (chat always).
func (s *Service) Speaks(api string) bool {
	if api == APIChat {
		return true
	}
	for _, a := range s.APIs {
		if a == api {
			return true
		}
	}
	return false
}

// NodeState is everything one node agent writes in one heartbeat.
type NodeState struct {
	Host     Host      `json:"host"`
	Services []Service `json:"services"`
	// TTLSeconds is the heartbeat TTL the agent uses (informational).
	TTLSeconds int `json:"ttl_s"`
	// Shape identifies everything in the state but its volatile metrics
	// (state.VolatileFields): a metrics-only change event names the shape
	// it applies to, and an edge holding another shape reads the whole
	// state instead (state/metricsevent.go). Empty from agents that
	// publish only whole states.
	Shape string `json:"shape,omitempty"`
}

// ServiceStats are the figures edges observe while proxying to a service,
// written back to Redis in batches and shared by every replica.
type ServiceStats struct {
	Requests     int64     `json:"requests"`
	Failures     int64     `json:"failures"`
	LatencyMS    float64   `json:"latency_ms"`     // EWMA of total latency
	TTFTMS       float64   `json:"ttft_ms"`        // EWMA of time to first token
	TokensPerSec float64   `json:"tokens_per_sec"` // EWMA
	UpdatedAt    time.Time `json:"updated_at"`
}

// BenchSample is one measured answer of a benchmark workload.
type BenchSample struct {
	Workload     string    `json:"workload"`
	Model        string    `json:"model"`
	Service      string    `json:"service,omitempty"`
	Prompt       string    `json:"prompt_id,omitempty"`
	LatencyMS    float64   `json:"latency_ms"`
	TTFTMS       float64   `json:"ttft_ms"`
	TokensPerSec float64   `json:"tokens_per_sec"`
	Quality      float64   `json:"quality"` // 0..1
	OK           bool      `json:"ok"`
	At           time.Time `json:"at"`
}

// BenchSummary aggregates the stored samples of one (asset, workload).
type BenchSummary struct {
	Model        string  `json:"model"`
	Workload     string  `json:"workload"`
	Samples      int     `json:"samples"`
	Quality      float64 `json:"quality"`
	LatencyMS    float64 `json:"latency_ms"`
	TTFTMS       float64 `json:"ttft_ms"`
	TokensPerSec float64 `json:"tokens_per_sec"`
}

// Scope is what an API key may do.
type Scope string

// Key scopes, each including the ones before it.
const (
	ScopeClient   Scope = "client"   // OpenAI API
	ScopeReader   Scope = "reader"   // + GET /v1/cluster/*
	ScopeOperator Scope = "operator" // + cluster changes
)

// Allows reports whether a key of scope s may act with scope need.
func (s Scope) Allows(need Scope) bool { return s.rank() >= need.rank() }

func (s Scope) rank() int {
	switch s {
	case ScopeClient:
		return 1
	case ScopeReader:
		return 2
	case ScopeOperator:
		return 3
	}
	return 0
}

// APIKey is a client credential. Only its SHA-256 is ever stored.
type APIKey struct {
	ID    string   `json:"id"`
	Hash  string   `json:"sha256"` // hex SHA-256 of the secret
	Scope Scope    `json:"scope"`
	Roles []string `json:"roles,omitempty"` // roles this key may use; empty = all
}

// EdgeInfo is the presence record an edge replica keeps alive in Redis.
type EdgeInfo struct {
	ID            string    `json:"id"`
	Addr          string    `json:"addr"`
	StartedAt     time.Time `json:"started_at"`
	PolicyVersion string    `json:"policy_version"`
	PolicyEngine  string    `json:"policy_engine"`
	PolicyError   string    `json:"policy_error,omitempty"`
	Deadline      time.Time `json:"deadline"`
	// Version is the edge binary's build (module version and VCS revision).
	Version string `json:"version,omitempty"`
	// SnapshotVersion and SnapshotBuiltAt are the edge's registry snapshot
	// when it last wrote this record (the console's "snapshot age").
	SnapshotVersion uint64    `json:"snapshot_version,omitempty"`
	SnapshotBuiltAt time.Time `json:"snapshot_built_at,omitzero"`
}

// PolicyBundle is a set of policy files pushed into Redis for every edge.
type PolicyBundle struct {
	Version  string            `json:"version"`
	Files    map[string]string `json:"files"` // relative path -> content
	PushedAt time.Time         `json:"pushed_at"`
}

// Valid reports whether s is one of the three scopes.
func (s Scope) Valid() bool { return s.rank() > 0 }
