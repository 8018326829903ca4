package edge

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// An edge told auth is required must refuse to start open, not warn and serve.
func TestAuthRequiredWithoutKeysRefusesToStart(t *testing.T) {
	c, prefix := testredis.New(t)
	cfg := Config{Listen: "127.0.0.1:0", ID: "edge-authreq", AuthRequired: true}
	if err := cfg.Provision(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Store: state.New(c, prefix), Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Run(ctx, ln)
	if err == nil || !strings.Contains(err.Error(), "auth_required") {
		t.Fatalf("Run = %v, want an auth_required error", err)
	}
}
