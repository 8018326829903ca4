package main

import "testing"

// TestLoadFleetRefusesBadFlags: a fleet flag out of range is a usage error
// (exit 2) before any Redis is dialled, never silently replaced by a
// default. The URL names a closed port, so a flag that got past the checks
// would fail later with exit 1 instead.
func TestLoadFleetRefusesBadFlags(t *testing.T) {
	base := []string{"loadtest", "fleet", "--redis-url", "redis://127.0.0.1:1/0", "--quiet"}
	bad := [][]string{
		{"--nodes", "0"},
		{"--nodes", "-5"},
		{"--services", "0"},
		{"--assets", "-1"},
		{"--duration", "0"},
		{"--duration", "-1s"},
		{"--interval", "0"},
		{"--interval", "-1s"},
		{"--interval", "1ms"}, // below the node agent's 100ms minimum
		{"--warmup", "-2s"},
		{"--ttl", "-1s"},
		{"--writers", "0"},
		{"--writers", "-3"},
		{"--models", "0"},
		{"--services", "65"},     // over state.MaxServicesPerNode
		{"--nodes", "100000000"}, // would build 10^8 node states in memory
	}
	for _, b := range bad {
		args := append(append([]string{}, base...), b...)
		if got := run(args); got != 2 {
			t.Errorf("geniehive %v: exit %d, want 2 (usage error)", b, got)
		}
	}
	// In range: passes validation and fails only on the closed port.
	if got := run(append(base, "--nodes", "1", "--duration", "1s", "--interval", "100ms", "--warmup", "0", "--ttl", "0")); got != 1 {
		t.Errorf("valid flags: exit %d, want 1 (Redis unreachable)", got)
	}
}
