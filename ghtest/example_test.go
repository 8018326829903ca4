package ghtest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"

	"github.com/geniehive/geniehive/deploy/localimages"
	"github.com/geniehive/geniehive/ghtest"
)

// TestMain builds the images locally (no registry here) and skips the
// package when Docker is unavailable, except under CI=true.
func TestMain(m *testing.M) {
	if err := localimages.Prepare(); err != nil {
		if errors.Is(err, localimages.ErrSkip) {
			fmt.Fprintf(os.Stderr, "ghtest: %v\n", err)
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "ghtest: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
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
