package edge

import (
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
