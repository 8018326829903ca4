package edge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	openai "github.com/openai/openai-go/v3"
)

// TestModelsRetrieve: the OpenAI retrieve call (client.Models.Get) answers
// every model and role GET /v1/models lists, names with a slash or a tag
// included; an unknown model is a 404 model_not_found.
func TestModelsRetrieve(t *testing.T) {
	s, _ := thinkingStack(t) // adds Qwen/Qwen3-4B (a slash) and tagged Ollama names
	c := s.clientV3()
	ctx := context.Background()
	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range page.Data {
		ids[m.ID] = true
	}
	for _, want := range []string{"Qwen/Qwen3-4B", "qwen3:4b", "coder", "quiet"} {
		if !ids[want] {
			t.Fatalf("%s not listed: %v", want, ids)
		}
	}
	for id := range ids {
		m, err := c.Models.Get(ctx, id)
		if err != nil {
			t.Fatalf("Models.Get(%q): %v", id, err)
		}
		if m.ID != id || m.Object != "model" {
			t.Fatalf("Models.Get(%q) = %+v", id, m)
		}
	}
	_, err = c.Models.Get(ctx, "no-such-model")
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Code != "model_not_found" {
		t.Fatalf("unknown model: %v", err)
	}
}

// TestUnknownV1Endpoint: a path under /v1 the edge does not serve answers
// 404 in the OpenAI error format, saying the endpoint is not supported.
func TestUnknownV1Endpoint(t *testing.T) {
	s := newStack(t)
	for _, p := range []string{"/v1/fine_tuning/jobs", "/v1/chat/completion", "/v1/assistants"} {
		resp, body := do(t, "POST", s.url+p, testKey, []byte(`{}`), nil)
		var e struct {
			Error struct{ Message, Type, Code string } `json:"error"`
		}
		if resp.StatusCode != http.StatusNotFound || json.Unmarshal([]byte(body), &e) != nil ||
			e.Error.Type != "invalid_request_error" || e.Error.Code != "unknown_endpoint" || !contains(e.Error.Message, "not supported") || !contains(e.Error.Message, p) {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
}
