package edge

import (
	"strings"
	"testing"
	"time"
)

func TestKeyConfigValidation(t *testing.T) {
	c := Config{Keys: []KeyConfig{{ID: "k", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}}
	if err := c.Provision(); err != nil {
		t.Fatal(err)
	}
	kr, err := newKeyring(c.Keys)
	if err != nil || kr.lookup([]byte("test"), nil) == nil {
		t.Fatalf("sha256 key from config does not authenticate: %v", err)
	}
	bad := Config{Keys: []KeyConfig{{ID: "x"}}}
	if bad.Provision() == nil {
		t.Fatal("key without secret accepted")
	}
	neg := Config{Timeouts: Timeouts{ShutdownDelay: -time.Second}}
	if neg.Provision() == nil {
		t.Fatal("negative shutdown delay accepted")
	}
}

// TestMaxEventStreamsConfig: 0 (unset) is the default 64; a negative
// value is refused by name rather than silently becoming 64.
func TestMaxEventStreamsConfig(t *testing.T) {
	var zero Config
	if err := zero.Provision(); err != nil || zero.MaxEventStreams != 64 {
		t.Fatalf("max_event_streams 0: got %d, %v; want the default 64", zero.MaxEventStreams, err)
	}
	set := Config{MaxEventStreams: 3}
	if err := set.Provision(); err != nil || set.MaxEventStreams != 3 {
		t.Fatalf("max_event_streams 3: got %d, %v", set.MaxEventStreams, err)
	}
	neg := Config{MaxEventStreams: -1}
	err := neg.Provision()
	if err == nil || !strings.Contains(err.Error(), "max_event_streams") {
		t.Fatalf("max_event_streams -1: err = %v, want a refusal naming it", err)
	}
}
