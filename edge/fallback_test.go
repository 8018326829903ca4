package edge

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	openai "github.com/openai/openai-go/v3"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// TestFallbackRoles: a role whose fallbacks form a cycle with nothing
// routable answers 503 naming what was tried (not 404 "does not exist");
// a role routable only through a fallback shows routable and resolves_to
// in /v1/models (and GET /v1/models/{role}), and is served.
func TestFallbackRoles(t *testing.T) {
	s := newStack(t)
	cat, err := state.ParseCatalog("test", []byte(testCatalog+`
  - name: ring-a
    operation: chat
    candidates: [gone-a]
    fallback_roles: [ring-b]
  - name: ring-b
    operation: chat
    candidates: [gone-b]
    fallback_roles: [ring-a]
  - name: leaner
    operation: chat
    candidates: [gone-c]
    fallback_roles: [coder]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.PutCatalog(context.Background(), cat); err != nil {
		t.Fatal(err)
	}
	s.waitFor(func(sn *fleet.Snapshot) bool { _, ok := sn.Role("leaner"); return ok })
	c := s.clientV3()
	ctx := context.Background()
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}

	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "ring-a", Messages: msgs})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Code != "no_available_upstream" ||
		!contains(ae.Message, "ring-b") || !contains(ae.Message, "gone-a") || !contains(ae.Message, "gone-b") {
		t.Fatalf("fallback cycle: %v", err)
	}

	m, err := c.Models.Get(ctx, "leaner")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		GenieHive struct {
			Routable   bool     `json:"routable"`
			ResolvesTo []string `json:"resolves_to"`
		} `json:"geniehive"`
	}
	if err := json.Unmarshal([]byte(m.RawJSON()), &meta); err != nil {
		t.Fatal(err)
	}
	if !meta.GenieHive.Routable || !slices.Equal(meta.GenieHive.ResolvesTo, []string{"llama3.1:8b"}) {
		t.Fatalf("leaner: %s", m.RawJSON())
	}
	r, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "leaner", Messages: msgs})
	if err != nil || r.Choices[0].Message.Content == "" {
		t.Fatalf("leaner: %v", err)
	}
}
