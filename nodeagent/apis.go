package nodeagent

import (
	"context"
	"github.com/geniehive/geniehive/internal/release"

	"github.com/geniehive/geniehive/fleet"
)

// Which client APIs a chat service serves natively, from its release
// (docs/UPSTREAMS.md "Endpoints, by server and release"). The edge passes
// those through and translates the others to and from Chat Completions,
// which every chat upstream serves, so an API left out here costs a
// translation, never a failure: a release this table does not know is
// given chat (and legacy completions where the server has it) only, and
// the node config's `apis:` says what the operator knows better.
//
//   - Ollama, GET /api/version: /v1/completions since v0.2.0;
//     /v1/responses since v0.13.3 (server/routes.go, commit 1eb5e7597);
//     /v1/messages since v0.14.0 (2b2cda7a2); never count_tokens (404 at
//     v0.17.4 and HEAD).
//   - vLLM, GET /version: /v1/completions always; /v1/responses since
//     v0.10.0 (PR #20504). Its Anthropic router (vllm/entrypoints/anthropic,
//     /v1/messages and count_tokens) has no release we could pin: configure
//     it.
//   - llama.cpp, GET /props build_info "b<build>-<commit>": /v1/completions
//     always; /v1/messages and count_tokens (PR #17570, commit aa6192d) and
//     /v1/responses (PR #18486) came in builds we could not pin: configure
//     them.
//   - openai (generic) and no protocol: chat only, unless configured.
func (a *Agent) discoverAPIs(ctx context.Context, sc *ServiceConfig) (apis []string, warn string) {
	if len(sc.APIs) > 0 {
		return sc.APIs, ""
	}
	if sc.Kind != fleet.KindChat {
		return nil, ""
	}
	switch sc.Protocol {
	case fleet.ProtocolOllama:
		var v struct {
			Version string `json:"version"`
		}
		if _, err := a.getJSON(ctx, sc.Endpoint, "/api/version", &v); err != nil {
			return []string{fleet.APIChat}, "version: " + err.Error()
		}
		return ollamaAPIs(v.Version), ""
	case fleet.ProtocolVLLM:
		var v struct {
			Version string `json:"version"`
		}
		if _, err := a.getJSON(ctx, sc.Endpoint, "/version", &v); err != nil {
			return []string{fleet.APIChat, fleet.APICompletions}, "version: " + err.Error()
		}
		return vllmAPIs(v.Version), ""
	case fleet.ProtocolLlamaCPP:
		return []string{fleet.APIChat, fleet.APICompletions}, ""
	}
	return []string{fleet.APIChat}, ""
}

// ollamaAPIs are the APIs an Ollama release serves (see discoverAPIs).
func ollamaAPIs(version string) []string {
	v, ok := release.Parse(version)
	if !ok {
		return []string{fleet.APIChat}
	}
	apis := []string{fleet.APIChat}
	if v.AtLeast(0, 2, 0) {
		apis = append(apis, fleet.APICompletions)
	}
	if v.AtLeast(0, 13, 3) {
		apis = append(apis, fleet.APIResponses)
	}
	if v.AtLeast(0, 14, 0) {
		apis = append(apis, fleet.APIMessages)
	}
	return apis
}

// vllmAPIs are the APIs a vLLM release serves (see discoverAPIs).
func vllmAPIs(version string) []string {
	apis := []string{fleet.APIChat, fleet.APICompletions}
	if v, ok := release.Parse(version); ok && v.AtLeast(0, 10, 0) {
		apis = append(apis, fleet.APIResponses)
	}
	return apis
}
