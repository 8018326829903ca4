package dialect

// API is a client-facing API, as the policy input names it.
type API uint8

// The APIs a client may speak.
const (
	APIChat        API = iota // OpenAI Chat Completions (never translated here)
	APIResponses              // OpenAI Responses (POST /v1/responses)
	APIMessages               // Anthropic Messages (POST /v1/messages)
	APICompletions            // OpenAI legacy Completions (POST /v1/completions)
	// APICountTokens is Anthropic's POST /v1/messages/count_tokens: a
	// Messages body without max_tokens, answered with a count.
	APICountTokens
)

var apiNames = [...]string{"chat", "responses", "messages", "completions", "count_tokens"}

// String is the API's name in the policy input: chat, responses, messages,
// completions, count_tokens.
func (a API) String() string {
	if int(a) < len(apiNames) {
		return apiNames[a]
	}
	return "unknown"
}

// Anthropic reports whether errors of a are written in Anthropic's format.
func (a API) Anthropic() bool { return a == APIMessages || a == APICountTokens }

// SystemKind says what shape the request's system prompt has.
type SystemKind uint8

// System prompt shapes.
const (
	SystemAbsent SystemKind = iota // no instructions / system member (or null)
	SystemString                   // a JSON string
	SystemBlocks                   // Anthropic: an array of text blocks
)

// Facts are what the policy decides on, read from a client body in the
// same parse that translates it. Strings are copies owned by the Request.
type Facts struct {
	API   API
	Model string
	// Stream is the request's stream flag.
	Stream bool
	// MaxTokens is max_output_tokens (Responses), max_tokens (Messages,
	// Completions); 0 when unset.
	MaxTokens int
	// Thinking is the client's explicit thinking choice: -1 off (Responses
	// reasoning.effort "none", Messages thinking.type "disabled"), +1 on
	// (any other effort, thinking "enabled" or "adaptive"), 0 unsaid.
	Thinking int8
	// ThinkingBudget is Messages thinking.budget_tokens (0 when unset).
	ThinkingBudget int
	// Effort is Responses reasoning.effort as sent ("" when unset).
	Effort string
	// System is the shape of the system prompt: Responses "instructions",
	// Messages "system" (the member AppendPatched rewrites). Legacy
	// Completions have none. System messages inside the conversation
	// (Responses input items with role system/developer) are not counted.
	System SystemKind
	// Tools is the number of tools offered.
	Tools int
	// Text is the last user message's text (up to TextBytes bytes), for
	// routing strategies that look at the prompt.
	Text string
}

// TextBytes bounds Facts.Text.
const TextBytes = 2048
