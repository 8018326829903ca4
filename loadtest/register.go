package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// Registration keeps a simulated upstream registered in Redis as a node
// (what a node agent would write) so an edge on that Redis routes to it.
// Stop removes it.
type Registration struct {
	st     *state.Store
	hostID string
	keyID  string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// RegisterUpstream heartbeats host hostID with services healthy services
// (at least one) at endpoint, each serving model (of kind), every 2s with a
// 10s TTL, until Stop. The first is "<hostID>/sim", the others
// "<hostID>/sim-2", …: several services give round_robin something to
// rotate (with one, an edge has nothing to rotate and skips its shared
// counter), while all of them reach the same upstream.
//
// # Errors
// The first heartbeat's error (bad id, Redis unreachable).
func RegisterUpstream(ctx context.Context, st *state.Store, hostID, endpoint, model string, kind fleet.Kind, services int) (*Registration, error) {
	now := time.Now()
	ns := &fleet.NodeState{
		Host: fleet.Host{ID: hostID, Agent: "geniehive-loadtest", StartedAt: now, UpdatedAt: now},
	}
	for i := 1; i <= max(services, 1); i++ {
		name := "sim"
		if i > 1 {
			name += "-" + strconv.Itoa(i)
		}
		ns.Services = append(ns.Services, fleet.Service{
			ID: hostID + "/" + name, HostID: hostID, Name: name, Kind: kind, Protocol: fleet.ProtocolOpenAI,
			Endpoint: endpoint, Healthy: true,
			Assets: []fleet.Asset{{Name: model, Loaded: true}},
		})
	}
	if err := st.WriteHeartbeat(ctx, ns, 10*time.Second); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Registration{st: st, hostID: hostID, cancel: cancel}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tk := time.NewTicker(2 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tk.C:
				ns.Host.UpdatedAt = time.Now()
				_ = st.WriteHeartbeat(rctx, ns, 10*time.Second)
			}
		}
	}()
	return r, nil
}

// TempKey creates a client-scope API key that Stop deletes, and returns
// its secret.
func (r *Registration) TempKey(ctx context.Context) (string, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	secret := "gh-loadtest-" + hex.EncodeToString(b)
	id := "loadtest-" + hex.EncodeToString(b[:4])
	if err := r.st.PutKey(ctx, fleet.APIKey{ID: id, Hash: fleet.HashKeyHex(secret), Scope: fleet.ScopeClient}); err != nil {
		return "", err
	}
	r.keyID = id
	return secret, nil
}

// Stop ends the heartbeats and removes the node (and the key).
func (r *Registration) Stop() {
	r.cancel()
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = r.st.RemoveNode(ctx, r.hostID)
	if r.keyID != "" {
		_ = r.st.DeleteKey(ctx, r.keyID)
	}
}
