package fleet

import (
	"strconv"
	"strings"
)

// Catalog is the role catalog: the named roles clients may ask for instead of
// a model, plus per-asset request policies. It is loaded from YAML
// (state.LoadCatalogFile), validated, stored in Redis as one document and carried
// in every Snapshot.
type Catalog struct {
	Version       string                    `json:"version,omitempty" yaml:"version,omitempty"`
	Roles         []Role                    `json:"roles" yaml:"roles"`
	AssetPolicies map[string]*RequestPolicy `json:"asset_policies,omitempty" yaml:"asset_policies,omitempty"`
	// Swap holds the operator's model-swapping settings (issue 14).
	Swap *SwapCatalog `json:"swap,omitempty" yaml:"swap,omitempty"`
}

// SwapCatalog is the catalog's swap section.
type SwapCatalog struct {
	// Pin lists models the swap controller never unloads.
	Pin []string `json:"pin,omitempty" yaml:"pin,omitempty"`
}

// Pinned returns the pinned models (nil-safe).
func (c *Catalog) Pinned() []string {
	if c == nil || c.Swap == nil {
		return nil
	}
	return c.Swap.Pin
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
	// StripReasoning true removes reasoning_content / reasoning from
	// replies. Unset, the edge strips reasoning only when it turned thinking
	// off and the upstream reasons anyway; false keeps it even then.
	StripReasoning *bool `json:"strip_reasoning,omitempty" yaml:"strip_reasoning,omitempty"`
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

// Role returns the role with that name or alias, case-insensitively.
// It is safe on a nil Catalog.
func (c *Catalog) Role(name string) (*Role, bool) {
	if c == nil {
		return nil, false
	}
	for i := range c.Roles {
		r := &c.Roles[i]
		if strings.EqualFold(r.Name, name) {
			return r, true
		}
	}
	for i := range c.Roles {
		r := &c.Roles[i]
		for _, a := range r.Aliases {
			if strings.EqualFold(a, name) {
				return r, true
			}
		}
	}
	return nil, false
}

// CatalogError is a validation error located in a catalog file.
type CatalogError struct {
	File  string
	Line  int    // 0 when unknown
	Field string // "roles[2].operation"
	Msg   string
}

func (e *CatalogError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Field != "" {
		return loc + ": " + e.Field + ": " + e.Msg
	}
	return loc + ": " + e.Msg
}

// Is makes every CatalogError match ErrInvalid.
func (e *CatalogError) Is(target error) bool { return target == ErrInvalid }

func (c *Catalog) normalize() {
	for i := range c.Roles {
		r := &c.Roles[i]
		r.Name = strings.TrimSpace(r.Name)
		if r.Operation == "" {
			r.Operation = KindChat
		}
	}
}

// Validate checks a catalog (as PutCatalog does before storing it).
func (c *Catalog) Validate() error {
	c.normalize()
	return c.validate()
}

// Routing strategies a role may name.
var validStrategies = map[string]bool{"": true, "scored": true, "round_robin": true, "least_loaded": true}

func (c *Catalog) validate() error {
	seen := map[string]string{} // lower name/alias -> field that defined it
	for i := range c.Roles {
		r := &c.Roles[i]
		f := "roles[" + strconv.Itoa(i) + "]"
		if r.Name == "" {
			return &CatalogError{Field: f + ".name", Msg: "a role needs a name"}
		}
		if !ValidID(r.Name) {
			return &CatalogError{Field: f + ".name", Msg: "role name " + strconv.Quote(r.Name) + " may only hold letters, digits and . _ - /"}
		}
		if prev, dup := seen[strings.ToLower(r.Name)]; dup {
			return &CatalogError{Field: f + ".name", Msg: "role " + strconv.Quote(r.Name) + " is already defined at " + prev}
		}
		seen[strings.ToLower(r.Name)] = f + ".name"
		for j, a := range r.Aliases {
			af := f + ".aliases[" + strconv.Itoa(j) + "]"
			if strings.TrimSpace(a) == "" {
				return &CatalogError{Field: af, Msg: "empty alias"}
			}
			if prev, dup := seen[strings.ToLower(a)]; dup {
				return &CatalogError{Field: af, Msg: "alias " + strconv.Quote(a) + " is already used at " + prev}
			}
			seen[strings.ToLower(a)] = af
		}
		if !r.Operation.Valid() {
			return &CatalogError{Field: f + ".operation", Msg: "unknown operation " + strconv.Quote(string(r.Operation)) + " (want chat, embeddings, transcription, speech or images)"}
		}
		if !validStrategies[r.Strategy] {
			return &CatalogError{Field: f + ".strategy", Msg: "unknown strategy " + strconv.Quote(r.Strategy) + " (want scored, round_robin or least_loaded)"}
		}
		if len(r.Candidates) == 0 && len(r.PreferredFamilies) == 0 && len(r.FallbackRoles) == 0 {
			return &CatalogError{Field: f, Msg: "role " + strconv.Quote(r.Name) + " needs candidates, preferred_families or fallback_roles"}
		}
		if err := validatePolicy(r.RequestPolicy, f+".request_policy"); err != nil {
			return err
		}
	}
	for i := range c.Roles {
		r := &c.Roles[i]
		for j, fb := range r.FallbackRoles {
			if _, ok := c.Role(fb); !ok {
				return &CatalogError{Field: "roles[" + strconv.Itoa(i) + "].fallback_roles[" + strconv.Itoa(j) + "]", Msg: "unknown role " + strconv.Quote(fb)}
			}
		}
	}
	for name, p := range c.AssetPolicies {
		if err := validatePolicy(p, "asset_policies."+name); err != nil {
			return err
		}
	}
	return nil
}

func validatePolicy(p *RequestPolicy, field string) error {
	if p == nil {
		return nil
	}
	if sp := p.SystemPrompt; sp != nil {
		switch sp.Mode {
		case PromptPrepend, PromptAppend, PromptReplace:
		case "":
			sp.Mode = PromptPrepend
		default:
			return &CatalogError{Field: field + ".system_prompt.mode", Msg: "unknown mode " + strconv.Quote(sp.Mode) + " (want prepend, append or replace)"}
		}
	}
	if p.MaxTokens < 0 {
		return &CatalogError{Field: field + ".max_tokens", Msg: "must be >= 0"}
	}
	return nil
}
