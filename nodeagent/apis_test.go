package nodeagent

import (
	"context"
	"strings"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/state"
)

// Discovery reads the release each server reports (the simulator answers
// /api/version and /version as the real servers do) and records the APIs
// it serves natively; a configured apis list wins.
func TestDiscoveredAPIs(t *testing.T) {
	newOllama := startSim(t, sim.Config{Flavor: sim.FlavorOllama, Version: "0.17.4", Models: []sim.Model{{Name: "m", Loaded: true}}})
	oldOllama := startSim(t, sim.Config{Flavor: sim.FlavorOllama, Version: "0.13.0", Models: []sim.Model{{Name: "m", Loaded: true}}})
	vllm := startSim(t, sim.Config{Flavor: sim.FlavorVLLM, Version: "0.11.0", Models: []sim.Model{{Name: "m", Loaded: true}}})
	cfg := Config{HostID: "h", Services: []ServiceConfig{
		{Name: "new", Kind: fleet.KindChat, Endpoint: newOllama.URL(), Protocol: fleet.ProtocolOllama},
		{Name: "old", Kind: fleet.KindChat, Endpoint: oldOllama.URL(), Protocol: fleet.ProtocolOllama},
		{Name: "vllm", Kind: fleet.KindChat, Endpoint: vllm.URL(), Protocol: fleet.ProtocolVLLM},
		{Name: "conf", Kind: fleet.KindChat, Endpoint: vllm.URL(), Protocol: fleet.ProtocolVLLM, APIs: []string{"chat", "messages", "count_tokens"}},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, cfg, state.New(nil, "gh:"))
	st := a.Collect(context.Background())
	want := map[string]string{
		"h/new":  "chat,completions,responses,messages",
		"h/old":  "chat,completions",
		"h/vllm": "chat,completions,responses",
		"h/conf": "chat,messages,count_tokens",
	}
	for id, w := range want {
		s := service(st, id)
		if s == nil || !s.Healthy {
			t.Fatalf("%s: %+v", id, s)
		}
		if got := strings.Join(s.APIs, ","); got != w {
			t.Errorf("%s: apis %s, want %s", id, got, w)
		}
	}
	bad := Config{HostID: "h", Services: []ServiceConfig{{Name: "x", Kind: fleet.KindChat, Endpoint: vllm.URL(), APIs: []string{"realtime"}}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "realtime") {
		t.Errorf("unknown api accepted: %v", err)
	}
}
