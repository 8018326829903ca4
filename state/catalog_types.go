package state

// Catalog is the role catalog: the named roles clients may ask for instead of
// a model, plus per-asset request policies. It is loaded from YAML
// (LoadCatalogFile), validated, stored in Redis as one document and carried
// in every Snapshot.
type Catalog struct {
	Version       string                    `json:"version,omitempty" yaml:"version,omitempty"`
	Roles         []Role                    `json:"roles" yaml:"roles"`
	AssetPolicies map[string]*RequestPolicy `json:"asset_policies,omitempty" yaml:"asset_policies,omitempty"`
}

// Role is a named job ("coder", "summarizer") that resolves to assets.
type Role struct {
	Name        string   `json:"name" yaml:"name"`
	Description string   `json:"description,omitempty" yaml:"description,omitempty"`
	Aliases     []string `json:"aliases,omitempty" yaml:"aliases,omitempty"`
	// Operation is the kind of request the role serves (chat by default).
	Operation Kind `json:"operation" yaml:"operation"`
	// PreferredFamilies rank assets by family ("qwen3", "llama"); when
	// Candidates is empty, every routable asset of these families and of the
	// role's operation is a candidate.
	PreferredFamilies []string `json:"preferred_families,omitempty" yaml:"preferred_families,omitempty"`
	// Candidates are asset names, in order of preference.
	Candidates []string `json:"candidates,omitempty" yaml:"candidates,omitempty"`
	// Workloads are benchmark workloads that matter for this role.
	Workloads []string `json:"workloads,omitempty" yaml:"workloads,omitempty"`
	// FallbackRoles are walked in order when no candidate of this role is
	// routable; each is resolved with its own operation kind; cycles are cut.
	FallbackRoles []string `json:"fallback_roles,omitempty" yaml:"fallback_roles,omitempty"`
	// Strategy overrides routing.default_strategy for this role.
	Strategy      string         `json:"strategy,omitempty" yaml:"strategy,omitempty"`
	RequestPolicy *RequestPolicy `json:"request_policy,omitempty" yaml:"request_policy,omitempty"`
}

// RequestPolicy shapes request bodies bound for an asset or a role.
type RequestPolicy struct {
	// Defaults are deep-merged under the request body (the request wins).
	Defaults map[string]any `json:"defaults,omitempty" yaml:"defaults,omitempty"`
	// Overrides are deep-merged over the request body (the policy wins).
	// Objects merge key by key; arrays and scalars replace.
	Overrides    map[string]any `json:"overrides,omitempty" yaml:"overrides,omitempty"`
	SystemPrompt *SystemPrompt  `json:"system_prompt,omitempty" yaml:"system_prompt,omitempty"`
	// StripReasoning removes reasoning_content / reasoning from replies.
	StripReasoning bool `json:"strip_reasoning,omitempty" yaml:"strip_reasoning,omitempty"`
	// Thinking forces thinking on (true) or off (false) for thinking-capable
	// families; unset means "off for Qwen3-family models unless the request
	// asks for it".
	Thinking *bool `json:"thinking,omitempty" yaml:"thinking,omitempty"`
	// MaxTokens, when > 0, denies requests whose max_tokens (or
	// max_completion_tokens) exceeds it.
	MaxTokens int `json:"max_tokens,omitempty" yaml:"max_tokens,omitempty"`
}

// System prompt injection modes.
const (
	PromptPrepend = "prepend"
	PromptAppend  = "append"
	PromptReplace = "replace"
)

// SystemPrompt injects text into the request's system message.
type SystemPrompt struct {
	Mode string `json:"mode" yaml:"mode"` // prepend | append | replace
	Text string `json:"text" yaml:"text"`
}
