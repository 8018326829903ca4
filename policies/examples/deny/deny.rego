# Example: extra denials on top of the shipped policy.
#
# Use it:
#   geniehive policy shipped ./mypolicy          # the shipped policy + its tests
#   cp policies/examples/deny/*.rego ./mypolicy/
#   geniehive policy test ./mypolicy             # must pass before a push
#   geniehive policy push ./mypolicy --redis-url redis://...
#
# Rules add objects to the partial set `denials` of package geniehive; the
# decision refuses the request with the lowest-priority one. The shipped
# rules use 10 (role_not_allowed) and 20 (max_tokens_exceeded): use 100+.
# Only builtins OPA's Wasm target implements natively are used here
# (startswith, count, comparisons), so the policy runs on every engine.
package geniehive

# Large bodies are refused before any upstream sees them.
denials contains {
	"priority": 100,
	"status": 413,
	"code": "body_too_large",
	"reason": "request body over 1 MiB",
} if {
	input.body_bytes > 1048576
}

# Batch keys may not stream.
denials contains {
	"priority": 110,
	"status": 403,
	"code": "policy_denied",
	"reason": "streaming is disabled for batch keys",
} if {
	input.stream == true
	startswith(input.key.id, "batch-")
}

# Legacy Completions only for keys of the "legacy-" family: input.api says
# which client API a chat request used (chat, responses, messages,
# count_tokens, completions).
denials contains {
	"priority": 120,
	"status": 403,
	"code": "policy_denied",
	"reason": "the legacy completions API is disabled for this key",
} if {
	input.api == "completions"
	not startswith(input.key.id, "legacy-")
}
