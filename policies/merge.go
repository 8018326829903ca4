package policies

import (
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
)

// DeepMerge returns base with over merged on top: objects merge key by key
// (recursively), anything else in over replaces what base holds. Neither
// argument is modified, but the result shares sub-values with them and is
// one of them when the other is empty: copy before writing into it. It
// returns nil when both are empty.
func DeepMerge(base, over map[string]any) map[string]any {
	if len(over) == 0 {
		if len(base) == 0 {
			return nil
		}
		return base
	}
	if len(base) == 0 {
		return over
	}
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bo, ok := out[k].(map[string]any); ok {
			if oo, ok := v.(map[string]any); ok {
				out[k] = DeepMerge(bo, oo)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// mergedPolicy is an asset policy with a role policy laid over it.
type mergedPolicy struct {
	defaults, overrides map[string]any
	prompt              *fleet.SystemPrompt
	strip               bool
	thinking            *bool
	maxTokens           int // smallest positive limit, 0 = none
}

// mergePolicies lays role over asset: defaults and overrides deep-merged
// (role wins), the role's system prompt wins when both set one,
// strip_reasoning if either asks, thinking from the role when it sets it,
// max_tokens the smaller positive limit.
func mergePolicies(asset, role *fleet.RequestPolicy) mergedPolicy {
	var m mergedPolicy
	if asset == nil {
		asset = &fleet.RequestPolicy{}
	}
	if role == nil {
		role = &fleet.RequestPolicy{}
	}
	m.defaults = DeepMerge(asset.Defaults, role.Defaults)
	m.overrides = DeepMerge(asset.Overrides, role.Overrides)
	m.prompt = asset.SystemPrompt
	if role.SystemPrompt != nil {
		m.prompt = role.SystemPrompt
	}
	m.strip = isTrue(asset.StripReasoning) || isTrue(role.StripReasoning)
	m.thinking = asset.Thinking
	if role.Thinking != nil {
		m.thinking = role.Thinking
	}
	m.maxTokens = asset.MaxTokens
	if role.MaxTokens > 0 && (m.maxTokens <= 0 || role.MaxTokens < m.maxTokens) {
		m.maxTokens = role.MaxTokens
	}
	if m.maxTokens < 0 {
		m.maxTokens = 0
	}
	return m
}

// Thinking modes of a target.
const (
	thinkKeep    = iota // never disable
	thinkOff            // always disable
	thinkDefault        // disable unless the request asks for thinking
)

// thinkingMode applies the thinking rules for a target of operation op.
func thinkingMode(m *mergedPolicy, a policy.AssetData, op fleet.Kind) int {
	if op != fleet.KindChat {
		return thinkKeep
	}
	if m.thinking != nil {
		if !*m.thinking && (a.Thinking || a.Qwen3) {
			return thinkOff
		}
		return thinkKeep
	}
	if a.Qwen3 {
		return thinkDefault
	}
	return thinkKeep
}

// patch returns the target patch for a policy, nil when it changes nothing.
func (m *mergedPolicy) patch(disableThinking bool) *policy.Patch {
	p := &policy.Patch{
		Defaults:        m.defaults,
		Overrides:       m.overrides,
		SystemPrompt:    m.prompt,
		DisableThinking: disableThinking,
		StripReasoning:  m.strip,
	}
	if p.Empty() && !p.StripReasoning {
		return nil
	}
	return p
}
