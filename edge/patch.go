package edge

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/state"
)

// applyPatch rewrites a JSON request body for one target: defaults deep-
// merged under it, overrides over it, the system prompt injected, thinking
// turned off in the upstream's dialect, and the model set to the upstream's
// name. This is the slow path (a full decode); it only runs when a policy
// patch is not empty.
//
// TODO(edge): switch to policies.ApplyPatch once agent "policy" ships it;
// this local version implements the same contract (policies/contract.go).
func applyPatch(body []byte, p *policies.Patch, dialect, upstreamModel string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("body is not an object")
	}
	if len(p.Defaults) > 0 {
		m = policies.DeepMerge(p.Defaults, m)
	}
	if len(p.Overrides) > 0 {
		m = policies.DeepMerge(m, p.Overrides)
	}
	if sp := p.SystemPrompt; sp != nil && sp.Text != "" {
		if msgs, ok := m["messages"].([]any); ok {
			m["messages"] = injectSystem(msgs, sp)
		}
	}
	if p.DisableThinking {
		if dialect == state.ProtocolOllama {
			m["think"] = false
		} else {
			kw, _ := m["chat_template_kwargs"].(map[string]any)
			nk := make(map[string]any, len(kw)+1)
			for k, v := range kw {
				nk[k] = v
			}
			nk["enable_thinking"] = false
			m["chat_template_kwargs"] = nk
		}
	}
	if upstreamModel != "" {
		m["model"] = upstreamModel
	}
	return json.Marshal(m)
}

func injectSystem(msgs []any, sp *state.SystemPrompt) []any {
	for i, mm := range msgs {
		msg, ok := mm.(map[string]any)
		if !ok || msg["role"] != "system" {
			continue
		}
		cur, _ := msg["content"].(string)
		nm := make(map[string]any, len(msg))
		for k, v := range msg {
			nm[k] = v
		}
		switch sp.Mode {
		case state.PromptAppend:
			nm["content"] = cur + "\n\n" + sp.Text
		case state.PromptReplace:
			nm["content"] = sp.Text
		default:
			nm["content"] = sp.Text + "\n\n" + cur
		}
		out := append([]any(nil), msgs...)
		out[i] = nm
		return out
	}
	out := make([]any, 0, len(msgs)+1)
	out = append(out, map[string]any{"role": "system", "content": sp.Text})
	return append(out, msgs...)
}
