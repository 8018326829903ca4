package ghtest_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"

	"github.com/geniehive/geniehive/deploy/localimages"
	"github.com/geniehive/geniehive/ghtest"
)

// skipReason is set by TestMain when the container tests cannot run here
// (and may be skipped: never under CI=true).
var skipReason string

// TestMain builds the images locally (no registry here). When Docker or
// GENIEHIVE_CHAOS is absent outside CI, every test reports itself as
// skipped with the reason (go test -v shows SKIP, not a silent ok), and the
// examples, which cannot skip, are left out of the run.
func TestMain(m *testing.M) {
	if err := localimages.Prepare(); err != nil {
		if !errors.Is(err, localimages.ErrSkip) {
			fmt.Fprintf(os.Stderr, "ghtest: %v\n", err)
			os.Exit(1)
		}
		skipReason = err.Error()
		flag.Parse()
		_ = flag.Set("test.run", "^Test")
	}
	os.Exit(m.Run())
}

func needDocker(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip("ghtest: " + skipReason)
	}
}

// Start a one-edge cluster with a simulated OpenAI-compatible upstream and
// talk to it with the OpenAI Go SDK.
func ExampleRun() {
	ctx := context.Background()
	c, err := ghtest.Run(ctx, ghtest.WithSimulatedUpstream("sim", "openai", "llama3.1:8b"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Terminate(ctx)

	client := openai.NewClient(option.WithBaseURL(c.BaseURL), option.WithAPIKey(c.APIKey))
	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "llama3.1:8b",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Choices[0].FinishReason, resp.Choices[0].Message.Content != "")
	// Output: stop true
}
