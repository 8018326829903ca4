package edge

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
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
