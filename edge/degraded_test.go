package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
)

// A corrupt catalog in Redis made every edge /readyz answer 503 while
// serving a frozen snapshot. A restarted edge now serves the last good
// catalog and says it is degraded, with the reason.
func TestCorruptCatalogServesLastGoodAndReportsDegraded(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	if err := s.store.Client().Set(ctx, s.store.Prefix()+"catalog", "{corrupt", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s2 := restartOn(t, s)
	resp, err := http.Get(s2.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), DegradedCatalogUnreadable) {
		t.Fatalf("/readyz = %d %s, want 200 naming %s", resp.StatusCode, b, DegradedCatalogUnreadable)
	}
	req, _ := http.NewRequest("GET", s2.url+"/v1/models/coder", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("role coder on the restarted edge: %d, want the last good catalog served", resp.StatusCode)
	}
}

// refusingEngine is the Go engine with a data-size limit, standing in for
// an engine that refuses a data document (the Wasm engine's memory cap, a
// derived rule that fails): the review saw a 100k-asset node freeze the
// policy data on every edge, logged once a second and shown nowhere.
type refusingEngine struct {
	policy.Engine
	maxAssets int
}

func (e refusingEngine) SetData(ctx context.Context, d *policy.Data) error {
	if len(d.Assets) > e.maxAssets {
		return errors.New("data document too large")
	}
	return e.Engine.SetData(ctx, d)
}

func TestRefusedPolicyDataIsReported(t *testing.T) {
	s := newStack(t, func(_ *Config, d *Deps) { d.Engine = refusingEngine{policies.NewGo(), 4} })
	readyz := func() string {
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if b := readyz(); strings.Contains(b, DegradedPolicyData) {
		t.Fatalf("before: %s", b)
	}
	heartbeat(t, s.store, "gpu2", svc("gpu2", "chat", fleet.KindChat, s.chat.URL(),
		fleet.Asset{Name: "a1"}, fleet.Asset{Name: "a2"}, fleet.Asset{Name: "a3"}))
	waitUntil(t, 5*time.Second, "policy_data_refused in /readyz", func() bool { return strings.Contains(readyz(), DegradedPolicyData) })
	if err := s.store.RemoveNode(context.Background(), "gpu2"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "policy_data_refused cleared", func() bool { return !strings.Contains(readyz(), DegradedPolicyData) })
}
