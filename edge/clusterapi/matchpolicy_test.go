package clusterapi

import (
	"encoding/json"
	"testing"
)

// TestMatchShowsPolicy: routes/match says what the policy does to the
// request: Qwen3's thinking turned off by default, in Ollama's own switch,
// and reasoning stripped if the upstream reasons anyway.
func TestMatchShowsPolicy(t *testing.T) {
	e := newEnv(t)
	code, body := e.do(t, "POST", "/v1/cluster/routes/match", "r", []byte(`{"model":"qwen3:8b"}`))
	var m struct {
		Targets []struct {
			Name   string `json:"name"`
			Policy struct {
				Thinking       string            `json:"thinking"`
				ThinkingSwitch map[string]string `json:"thinking_switch"`
				StripReasoning string            `json:"strip_reasoning"`
			} `json:"policy"`
		} `json:"targets"`
	}
	if code != 200 || json.Unmarshal(body, &m) != nil || len(m.Targets) != 1 {
		t.Fatalf("%d %s", code, body)
	}
	p := m.Targets[0].Policy
	if p.Thinking != "off" || p.ThinkingSwitch["h1/ollama"] != `reasoning_effort: "none"` || p.StripReasoning != "if the upstream reasons anyway" {
		t.Fatalf("policy view: %s", body)
	}
}
