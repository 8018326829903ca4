package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// TestEdgeFlagsOverTheFile: --key is added to the file's keys: with CLIENT
// scope (before, it was silently dropped when the file had keys, because
// flags were re-applied through Value.String(), and it granted operator
// scope); a zero --probe-interval and --shutdown-delay override the file.
func TestEdgeFlagsOverTheFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "edge.yaml")
	err := os.WriteFile(file, []byte(`keys:
  - id: ops
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    scope: operator
timeouts:
  shutdown_delay: 9s
routing:
  probe_interval: 5s
policy:
  engine: go
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := loadEdgeConfig([]string{"--config", file, "--key", "sk-flag", "--probe-interval", "0", "--shutdown-delay", "0s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Edge.Keys) != 2 || cfg.Edge.Keys[0].ID != "ops" {
		t.Fatalf("keys %+v: want the file's key and the flag's", cfg.Edge.Keys)
	}
	if k := cfg.Edge.Keys[1]; k.Secret != "sk-flag" || k.Scope != fleet.ScopeClient {
		t.Fatalf("--key made %+v, want a client-scope key", k)
	}
	if cfg.Routing.ProbeInterval != 0 || cfg.Edge.Timeouts.ShutdownDelay != 0 {
		t.Fatalf("zero flags did not override the file: probe %v, delay %v", cfg.Routing.ProbeInterval, cfg.Edge.Timeouts.ShutdownDelay)
	}
	if cfg.Policy.Engine != "go" {
		t.Fatalf("policy.engine %q", cfg.Policy.Engine)
	}
	// Without flags: the file's values, and the edge's default delay when
	// the file sets none.
	cfg, _, err = loadEdgeConfig([]string{"--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Routing.ProbeInterval != 5*time.Second || cfg.Edge.Timeouts.ShutdownDelay != 9*time.Second {
		t.Fatalf("file values lost: probe %v, delay %v", cfg.Routing.ProbeInterval, cfg.Edge.Timeouts.ShutdownDelay)
	}
	t.Setenv("GENIEHIVE_STRATEGY", "round_robin")
	cfg, _, err = loadEdgeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Edge.Timeouts.ShutdownDelay != 5*time.Second || cfg.Routing.DefaultStrategy != "round_robin" {
		t.Fatalf("defaults/env: delay %v, strategy %q", cfg.Edge.Timeouts.ShutdownDelay, cfg.Routing.DefaultStrategy)
	}
	if _, _, err := loadEdgeConfig([]string{"--strategy", "random"}); err == nil {
		t.Fatal("unknown strategy accepted")
	}
}

// TestExampleEdgeConfig: the documented example file loads as a whole.
func TestExampleEdgeConfig(t *testing.T) {
	cfg, _, err := loadEdgeConfig([]string{"--config", "../../edge/testdata/edge.example.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Edge.BodyLimits.Transcription != 25<<20 || cfg.Edge.Timeouts.StreamIdle != 5*time.Minute || len(cfg.Edge.Keys) != 1 ||
		cfg.Routing.DefaultStrategy != "scored" || cfg.Policy.Engine != "wasm" {
		t.Fatalf("unexpected: %+v", cfg)
	}
}
