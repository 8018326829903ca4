package edge

import (
	"testing"
	"time"

	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/routing"
)

func TestExampleConfig(t *testing.T) {
	var c Config
	if err := cli.LoadYAML("testdata/edge.example.yaml", &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Provision(); err != nil {
		t.Fatal(err)
	}
	if c.BodyLimits.Transcription != 25<<20 || c.Timeouts.StreamIdle != 5*time.Minute || len(c.Keys) != 1 || c.Failover.Attempts != 3 {
		t.Fatalf("unexpected: %+v", c)
	}
	var rc routing.Config
	if err := c.Routing.Decode(&rc); err != nil || rc.DefaultStrategy != "scored" {
		t.Fatalf("routing section: %v %+v", err, rc)
	}
	kr, err := newKeyring(c.Keys)
	if err != nil || kr.lookup([]byte("test"), nil) == nil {
		t.Fatalf("sha256 key from config does not authenticate: %v", err)
	}
	bad := Config{Keys: []KeyConfig{{ID: "x"}}}
	if bad.Provision() == nil {
		t.Fatal("key without secret accepted")
	}
}
