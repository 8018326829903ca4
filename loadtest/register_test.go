package loadtest

import (
	"context"
	"testing"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// TestRegisterUpstreamServices: the simulated upstream is registered as the
// asked number of services on one endpoint, and Stop removes them.
func TestRegisterUpstreamServices(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	ctx := context.Background()
	reg, err := RegisterUpstream(ctx, st, "lt", "http://127.0.0.1:9", "sim", fleet.KindChat, 2)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := st.ReadNodes(ctx)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes %v, %v", nodes, err)
	}
	svcs := nodes[0].State.Services
	if len(svcs) != 2 || svcs[0].ID != "lt/sim" || svcs[1].ID != "lt/sim-2" {
		t.Fatalf("services %+v", svcs)
	}
	for _, s := range svcs {
		if s.Endpoint != "http://127.0.0.1:9" || !s.Healthy || len(s.Assets) != 1 || s.Assets[0].Name != "sim" {
			t.Fatalf("service %+v", s)
		}
	}
	reg.Stop()
	if nodes, _ := st.ReadNodes(ctx); len(nodes) != 0 {
		t.Fatalf("after Stop: %d nodes", len(nodes))
	}
}
