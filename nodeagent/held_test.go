package nodeagent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// TestTimeoutHeldUntilLimit: a service that answered stays as its last
// good check found through fewer timed-out checks in a row than
// unhealthy_after_timeouts, and is unhealthy at the limit; a refusal (an
// HTTP error here) counts at once, and so does a timeout of a service that
// was not healthy. Collect is called directly: one call is one beat.
func TestTimeoutHeldUntilLimit(t *testing.T) {
	// mode: 0 answers, 1 hangs past the check's deadline, 2 answers 500.
	var mode atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 1:
			<-r.Context().Done()
			return
		case 2:
			http.Error(w, `{"error":"boom"}`, http.StatusInternalServerError)
			return
		}
		if r.URL.Path != "/v1/models" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"m1","object":"model","owned_by":"x"}]}`))
	}))
	defer srv.Close()
	svc := func(limit int) func(set int32) fleet.Service {
		a := newAgent(t, Config{HostID: "h", Interval: time.Second, TTL: 3 * time.Second, DiscoveryTimeout: 100 * time.Millisecond,
			UnhealthyAfterTimeouts: limit,
			Services:               []ServiceConfig{{Name: "s", Endpoint: srv.URL, Protocol: fleet.ProtocolOpenAI}}}, nil)
		return func(set int32) fleet.Service {
			mode.Store(set)
			st := a.Collect(context.Background())
			if len(st.Services) != 1 {
				t.Fatalf("%d services", len(st.Services))
			}
			return st.Services[0]
		}
	}
	healthy := func(step string, s fleet.Service) {
		t.Helper()
		if !s.Healthy || s.HealthError != "" || len(s.Assets) != 1 || s.Assets[0].Name != "m1" {
			t.Fatalf("%s: want healthy with its model, got healthy=%v err=%q assets=%v", step, s.Healthy, s.HealthError, s.Assets)
		}
	}
	unhealthy := func(step, want string, s fleet.Service) {
		t.Helper()
		if s.Healthy || s.HealthError == "" || !strings.Contains(s.HealthError, want) {
			t.Fatalf("%s: want unhealthy (%q), got healthy=%v err=%q", step, want, s.Healthy, s.HealthError)
		}
	}

	beat := svc(2)
	healthy("answers", beat(0))
	healthy("first timeout: held", beat(1))
	healthy("answers again", beat(0))
	healthy("one timeout after an answer: held", beat(1))
	unhealthy("second timeout in a row", "GET /v1/models", beat(1))
	unhealthy("a third: still unhealthy", "GET /v1/models", beat(1))
	healthy("answers: healthy", beat(0))
	unhealthy("HTTP 500: at once", "500", beat(2))
	unhealthy("a timeout after a refusal: at once", "GET /v1/models", beat(1))

	beat = svc(1)
	healthy("limit 1: answers", beat(0))
	unhealthy("limit 1: the first timeout", "GET /v1/models", beat(1))

	if err := (&Config{HostID: "h", Services: []ServiceConfig{{Name: "s", Endpoint: srv.URL}}, UnhealthyAfterTimeouts: 11}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "unhealthy_after_timeouts") {
		t.Fatalf("11 accepted: %v", err)
	}
}
