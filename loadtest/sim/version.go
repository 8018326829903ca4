package sim

import (
	"github.com/geniehive/geniehive/internal/release"
)

// features is what the simulated server release does, decided once at
// Start from Config.Flavor and Config.Version. Each gate names the commit
// or release that introduced the behaviour (dates and tags from
// `git log -S` on github.com/ollama/ollama, or the project's own PRs);
// docs/UPSTREAMS.md has the table.
type features struct {
	responses bool // POST /v1/responses served
	messages  bool // POST /v1/messages served
	countTok  bool // POST /v1/messages/count_tokens served

	// Ollama.
	capabilities   bool // /api/show "capabilities": e172f095b, v0.6.4
	thinkField     bool // native "think" and response "thinking": 5f57b0ef4, v0.9.0
	psContextLen   bool // /api/ps "context_length": 34088dbcf, v0.10.0
	thinkLevels    bool // think accepts "high"/"medium"/"low": fa7776fd2, v0.11.1
	oaiReasoning   bool // OpenAI layer: "reasoning" field out, reasoning.effort in: fa7776fd2, v0.11.1
	oaiEffort      bool // OpenAI layer: "reasoning_effort" in: d0cf6c828, v0.11.5
	thinkDefaultOn bool // think unset = on for thinking models; effort "none" = off: 90d429f5a, v0.12.4
	thinkFalseOK   bool // think:false accepted by non-thinking models, think:true refused with `"m" does not support thinking`: d681cd7c2, v0.12.5
	embedNeedsCap  bool // chat models refuse embeddings (llama-server runner, 501): 9db4bdbad, v0.30.0

	// vLLM chat reasoning field: reasoning_content only before PR #27752
	// (v0.11.1), both until PR #33402 removed reasoning_content (merged
	// 2026-01-30; first absent in v0.16 by our reading).
	reasoningOld, reasoningNew bool
	// vLLM metric vllm:gpu_cache_usage_perc (replaced by
	// vllm:kv_cache_usage_perc, PR #18354; hidden by default from v0.11).
	gpuCacheMetric, kvCacheMetric bool
}

func newFeatures(c *Config) features {
	var f features
	v, _ := release.Parse(c.Version)
	switch c.Flavor {
	case FlavorOllama:
		f.capabilities = v.AtLeast(0, 6, 4)
		f.thinkField = v.AtLeast(0, 9, 0)
		f.psContextLen = v.AtLeast(0, 10, 0)
		f.thinkLevels = v.AtLeast(0, 11, 1)
		f.oaiReasoning = v.AtLeast(0, 11, 1)
		f.oaiEffort = v.AtLeast(0, 11, 5)
		f.thinkDefaultOn = v.AtLeast(0, 12, 4)
		f.thinkFalseOK = v.AtLeast(0, 12, 5)
		f.embedNeedsCap = v.AtLeast(0, 30, 0)
		// server/routes.go: "/v1/responses" since 1eb5e7597 (v0.13.3),
		// "/v1/messages" since 2b2cda7a2 (v0.14.0); no count_tokens route.
		f.responses = c.Responses.resolve(v.AtLeast(0, 13, 3))
		f.messages = c.Messages.resolve(v.AtLeast(0, 14, 0))
	case FlavorVLLM:
		f.reasoningOld = !v.AtLeast(0, 16, 0)
		f.reasoningNew = v.AtLeast(0, 11, 1)
		f.gpuCacheMetric = !v.AtLeast(0, 11, 0)
		f.kvCacheMetric = v.AtLeast(0, 10, 0)
		// vllm/entrypoints/openai/api_server.py serves /v1/responses;
		// vllm/entrypoints/anthropic serves /v1/messages and count_tokens.
		f.responses = c.Responses.resolve(true)
		f.messages = c.Messages.resolve(true)
		f.countTok = f.messages
	case FlavorLlamaCPP:
		// tools/server/server.cpp: /v1/messages and
		// /v1/messages/count_tokens (PR #17570), /v1/responses (PR #18486).
		f.responses = c.Responses.resolve(true)
		f.messages = c.Messages.resolve(true)
		f.countTok = f.messages
	case FlavorOpenAI:
		// A generic OpenAI-compatible server: Chat Completions only unless
		// told otherwise.
		f.responses = c.Responses.resolve(false)
		f.messages = c.Messages.resolve(false)
		f.countTok = f.messages
	}
	return f
}
