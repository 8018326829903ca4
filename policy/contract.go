package policy

import (
	"context"
	"encoding/json"

	"github.com/geniehive/geniehive/fleet"
)

// SchemaVersion is the version of the Input, Data and Decision documents.
const SchemaVersion = 1

// DecisionQuery is the query every Rego-based engine evaluates.
const DecisionQuery = "data.geniehive.decision"

// Input is the per-request document every engine evaluates (input.* in Rego).
type Input struct {
	SchemaVersion int `json:"schema_version"`
	// Operation is the kind the request's route implies.
	Operation fleet.Kind `json:"operation"`
	// API is the client-facing API a chat-kind request used: "chat",
	// "responses" (OpenAI Responses), "messages" (Anthropic Messages),
	// "count_tokens" (Anthropic count_tokens), "completions" (legacy);
	// absent for the other operations (fleet.API* names).
	API string `json:"api,omitempty"`
	// Model is the requested model or role exactly as sent.
	Model string `json:"model"`
	// ModelKey is Model normalised for lookups (see NormalizeModel).
	ModelKey string `json:"model_key"`
	// Service is the live service whose lower-cased id is ModelKey, when
	// the request names one (a client may address a service directly);
	// absent otherwise. The caller looks it up (policies.ServiceIndex):
	// it is not in Data, whose size would then grow with every service
	// of the fleet (50,000 at 10,000 nodes: a 6.4 MB document the Wasm
	// guest could not hold, docs/CAPACITY.md).
	Service *ServiceData `json:"service,omitempty"`
	Stream  bool         `json:"stream"`
	// MaxTokens is the request's max_tokens / max_completion_tokens
	// (Responses: max_output_tokens; 0 = unset).
	MaxTokens int `json:"max_tokens"`
	// Thinking is the request's explicit thinking preference, when it sets one
	// (chat_template_kwargs.enable_thinking, think, or reasoning_effort;
	// Responses reasoning.effort, Messages thinking.type).
	Thinking  *bool `json:"thinking,omitempty"`
	BodyBytes int   `json:"body_bytes"`
	Key       Key   `json:"key"`
	// Headers holds selected request headers, lower-cased names.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the raw request body; only set when the policy declares it
	// needs it.
	Body json.RawMessage `json:"body,omitempty"`
}

// Key describes the caller's credential (never the secret).
type Key struct {
	ID    string      `json:"id"`
	Scope fleet.Scope `json:"scope"`
	Roles []string    `json:"roles,omitempty"`
}

// Data is the slow-changing document (data.* in Rego), rebuilt when the
// snapshot's catalog or registry changes and handed to engines once per
// version, never per request. Its size follows the catalog and the fleet's
// distinct assets, never the number of services or hosts (a service a
// request names comes in Input.Service).
type Data struct {
	SchemaVersion int `json:"schema_version"`
	// Roles by name.
	Roles map[string]fleet.Role `json:"roles"`
	// Aliases maps a lower-cased role name or alias to the role name.
	Aliases map[string]string `json:"aliases"`
	// Models maps every lookup form of an asset name (see NormalizeModel
	// and ModelKeys) to the asset names it matches, sorted.
	Models map[string][]string `json:"models"`
	// Assets holds metadata per asset name.
	Assets map[string]AssetData `json:"assets"`
	// AssetPolicies are per-asset request policies, by asset name.
	AssetPolicies map[string]*fleet.RequestPolicy `json:"asset_policies"`
}

// AssetData is what policies know of an asset.
type AssetData struct {
	Family   string       `json:"family"`
	Kinds    []fleet.Kind `json:"kinds"` // kinds of the services that offer it, sorted
	Thinking bool         `json:"thinking"`
	// Qwen3 is true for models that think by default upstream, so that
	// GenieHive turns thinking off unless the request asks for it: Qwen3 /
	// Qwen3.5 family models, and every model an upstream reports with the
	// "thinking" capability (Ollama's /api/show; Ollama thinks by default
	// since v0.12.4).
	Qwen3 bool     `json:"qwen3"`
	Tags  []string `json:"tags,omitempty"`
}

// ServiceData is what policies know of a service a request names.
type ServiceData struct {
	ID   string     `json:"id"`
	Kind fleet.Kind `json:"kind"`
}

// Target kinds.
const (
	TargetAsset   = "asset"
	TargetService = "service"
)

// Decision is what an engine returns for one request.
type Decision struct {
	SchemaVersion int `json:"schema_version"`
	// Targets is the ordered list of things to try. Targets sharing a Group
	// are alternatives the routing strategy chooses among; groups are tried
	// in order (a role's candidates, then its fallback roles').
	Targets []Target `json:"targets"`
	// StripReasoning removes reasoning_content / reasoning from the reply.
	StripReasoning bool `json:"strip_reasoning"`
	// Headers are added to the response.
	Headers map[string]string `json:"headers,omitempty"`
	// Deny, when set, refuses the request.
	Deny *Denial `json:"deny,omitempty"`
	// Tried lists what resolution looked at, for error messages
	// ("role coder: no candidate of kind chat", "cycle at role x").
	Tried []string `json:"tried,omitempty"`
}

// Target is one asset (or service) the request may go to.
type Target struct {
	Kind      string     `json:"kind"` // asset | service
	Name      string     `json:"name"` // asset name or service id
	Operation fleet.Kind `json:"operation"`
	// Role is the role this target came from ("" for a direct match).
	Role     string `json:"role,omitempty"`
	Group    int    `json:"group"`
	Strategy string `json:"strategy,omitempty"` // role's strategy override
	// Patch is the merged request policy for this target (asset policy
	// under role policy; the role wins on prompts).
	Patch *Patch `json:"patch,omitempty"`
}

// Patch is the body rewrite the edge applies for a target, in the dialect of
// the service it picks.
type Patch struct {
	Defaults     map[string]any      `json:"defaults,omitempty"`
	Overrides    map[string]any      `json:"overrides,omitempty"`
	SystemPrompt *fleet.SystemPrompt `json:"system_prompt,omitempty"`
	// DisableThinking turns thinking off (chat_template_kwargs for
	// OpenAI-compatible servers, think:false for Ollama).
	DisableThinking bool `json:"disable_thinking,omitempty"`
	// StripReasoning removes reasoning_content / reasoning from replies of
	// this target (asset or role policy asked for it). Decision.StripReasoning
	// is the OR over all targets; an edge that knows the target it used
	// should prefer this field.
	StripReasoning bool `json:"strip_reasoning,omitempty"`
}

// Empty reports whether the patch changes nothing (nil-safe).
func (p *Patch) Empty() bool {
	return p == nil || len(p.Defaults) == 0 && len(p.Overrides) == 0 && p.SystemPrompt == nil && !p.DisableThinking
}

// Denial refuses a request.
type Denial struct {
	Status int    `json:"status"` // HTTP status, 403 when unset
	Code   string `json:"code"`   // OpenAI error code, e.g. "policy_denied"
	Reason string `json:"reason"`
}

// Engine evaluates decisions. Implementations are safe for concurrent use.
type Engine interface {
	// Name is the engine's name: "go", "rego", "wasm" or "module".
	Name() string
	// Version identifies the loaded policy (bundle version or hash).
	Version() string
	// SetData installs a new data document; later Evals see it, Evals in
	// flight finish on the one they started with.
	SetData(ctx context.Context, d *Data) error
	// Eval decides one request. out is reset and filled. A denial is a
	// decision (out.Deny), not an error.
	//
	// # Errors
	// An *Error whose Code says what failed: ErrTimeout (the evaluation
	// ran out of time), ErrBusy (no instance came free before ctx was
	// done), ErrClosed, ErrOutput (the policy's output is not a decision),
	// ErrMemory, ErrEval (any other evaluation failure). Match them with
	// errors.Is.
	Eval(ctx context.Context, in *Input, out *Decision) error
	Close() error
}
