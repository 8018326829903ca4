package routing

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/geniehive/geniehive/fleet"
)

// TestResolutionThroughRouting runs the reference policy (policies.NewGo)
// and then the router, so each case checks the services a request lands on.
func TestResolutionThroughRouting(t *testing.T) {
	cat := &fleet.Catalog{Roles: []fleet.Role{
		{Name: "coder", Aliases: []string{"dev", "programmer"}, Operation: fleet.KindChat,
			Candidates: []string{"qwen3-coder:30b", "qwen3:8b"}, FallbackRoles: []string{"general"}},
		{Name: "general", Operation: fleet.KindChat, Candidates: []string{"llama3.1:8b"}},
		{Name: "broken", Operation: fleet.KindChat, Candidates: []string{"gone:1b"}, FallbackRoles: []string{"general"}},
		{Name: "loop-a", Operation: fleet.KindChat, Candidates: []string{"gone:1b"}, FallbackRoles: []string{"loop-b"}},
		{Name: "loop-b", Operation: fleet.KindChat, Candidates: []string{"gone:2b"}, FallbackRoles: []string{"loop-a"}},
		{Name: "embedder", Operation: fleet.KindEmbeddings, Candidates: []string{"nomic-embed-text"}},
		{Name: "chat-then-embed", Operation: fleet.KindChat, Candidates: []string{"gone:1b"}, FallbackRoles: []string{"embedder", "general"}},
	}}
	coderDown := svc("h3", "ollama", fleet.KindChat, asset("qwen3-coder:30b", "qwen3"))
	coderDown.Healthy = false
	coderDown.HealthError = "connection refused"
	snap := snapOf(cat,
		svc("h1", "ollama", fleet.KindChat, asset("qwen3:8b", "qwen3"), asset("llama3.1:8b", "llama")),
		svc("h2", "vllm", fleet.KindChat, asset("llama3.1:8b", "llama")),
		coderDown,
		svc("h1", "embed", fleet.KindEmbeddings, asset("nomic-embed-text", "nomic-bert")),
	)
	cases := []struct {
		name    string
		model   string
		op      fleet.Kind
		want    []string // plan order
		wantErr error
		errHas  string
	}{
		{name: "direct exact", model: "qwen3:8b", op: fleet.KindChat, want: []string{"h1/ollama|qwen3:8b"}},
		{name: "direct without tag", model: "llama3.1", op: fleet.KindChat, want: []string{"h1/ollama|llama3.1:8b", "h2/vllm|llama3.1:8b"}},
		{name: "direct service id", model: "h2/vllm", op: fleet.KindChat, want: []string{"h2/vllm|llama3.1:8b"}},
		{name: "role by alias, unhealthy candidate skipped, fallback after", model: "DEV", op: fleet.KindChat,
			want: []string{"h1/ollama|qwen3:8b", "h1/ollama|llama3.1:8b", "h2/vllm|llama3.1:8b"}},
		{name: "role", model: "general", op: fleet.KindChat, want: []string{"h1/ollama|llama3.1:8b", "h2/vllm|llama3.1:8b"}},
		{name: "fallback chain", model: "broken", op: fleet.KindChat, want: []string{"h1/ollama|llama3.1:8b", "h2/vllm|llama3.1:8b"}},
		{name: "fallback skips other kind", model: "chat-then-embed", op: fleet.KindChat, want: []string{"h1/ollama|llama3.1:8b", "h2/vllm|llama3.1:8b"}},
		{name: "cycle cut", model: "loop-a", op: fleet.KindChat, wantErr: ErrNoCandidates, errHas: "cycle"},
		{name: "kind mismatch direct", model: "nomic-embed-text", op: fleet.KindChat, wantErr: ErrNoCandidates, errHas: "not of kind chat"},
		{name: "kind mismatch role", model: "embedder", op: fleet.KindChat, wantErr: ErrNoCandidates, errHas: "not of kind chat"},
		{name: "embeddings role", model: "embedder", op: fleet.KindEmbeddings, want: []string{"h1/embed|nomic-embed-text"}},
		{name: "nothing found", model: "gpt-9", op: fleet.KindChat, wantErr: ErrNoCandidates, errHas: "gpt-9"},
		{name: "only unhealthy", model: "qwen3-coder:30b", op: fleet.KindChat, wantErr: ErrNoCandidates, errHas: "connection refused"},
	}
	// Weights: order only, so the expected order is the policy's.
	r := newRouter(t, Config{Weights: &Weights{CandidateOrder: 1}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dec := resolve(t, snap, tc.model, tc.op)
			p, err := r.Plan(context.Background(), snap, dec, &RequestFacts{Operation: tc.op, Model: tc.model})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v (plan %v)", err, tc.wantErr, ids(p))
				}
				if !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %q does not say %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v (decision %+v)", err, dec)
			}
			if got := ids(p); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
			if p.Strategy != StrategyScored {
				t.Fatalf("strategy %q", p.Strategy)
			}
		})
	}
}
