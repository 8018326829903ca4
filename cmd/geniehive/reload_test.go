package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// Two edges on one Redis serve traffic while a new bundle is pushed: both
// switch, no request fails; a broken bundle pushed next is refused by both
// and the previous one keeps serving.
func TestPushedBundleReachesEveryReplica(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	up := simChatNode(t, ctx, st)
	defer up.Close()
	var addrs [2]string
	var wg sync.WaitGroup
	for i := range addrs {
		addrs[i] = startTestEdge(t, ctx, &wg, c, prefix, "edge-"+string(rune('a'+i)), "")
	}
	defer func() { cancel(); wg.Wait() }()

	shipped := policy.NewBundle(policies.ShippedPolicy()).Version
	for _, a := range addrs {
		if eng, v, _ := policyOf(t, a); eng != "wasm" || v != shipped {
			t.Fatalf("edge %s starts on %s %s, want wasm %s", a, eng, v, shipped)
		}
	}

	// Steady traffic through both edges for the whole test.
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var load sync.WaitGroup
	for w := 0; w < 4; w++ {
		load.Add(1)
		go func(w int) {
			defer load.Done()
			body := `{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}`
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Post("http://"+addrs[(w+n)%2]+"/v1/chat/completions", "application/json", strings.NewReader(body))
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, string(b))
				}
			}
		}(w)
	}

	files := policies.ShippedFiles()
	files["v2.rego"] = "package geniehive.v2\n\nmarker := true\n"
	v2 := policy.NewBundle(files).Version
	pushed := time.Now()
	if err := st.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: v2, Files: files, PushedAt: pushed}); err != nil {
		t.Fatal(err)
	}
	var switched [2]time.Duration
	for i, a := range addrs {
		deadline := time.Now().Add(3 * time.Minute) // generous: -race on a loaded machine
		for {
			if _, v, _ := policyOf(t, a); v == v2 {
				switched[i] = time.Since(pushed)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("edge %s never switched to %s", a, v2)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("both replicas on the new bundle: %v and %v after the push", switched[0].Round(time.Millisecond), switched[1].Round(time.Millisecond))

	broken := policies.ShippedFiles()
	broken["broken.rego"] = "package geniehive\n\ndecision := {\n"
	if err := st.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: "broken-1", Files: broken, PushedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			_, v, perr := policyOf(t, a)
			if perr != "" {
				if v != v2 {
					t.Fatalf("edge %s left %s after a refused bundle: %s", a, v2, v)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("edge %s never reported the broken bundle", a)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // traffic on the surviving policy
	close(stop)
	load.Wait()
	t.Logf("%d requests during the pushes, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
	}
	if sent.Load() < 20 {
		t.Fatalf("only %d requests sent: the test did not exercise traffic", sent.Load())
	}
}

// Issue 17: both replicas switch to a pushed bundle while their CPU is
// saturated (busy goroutines, twice GOMAXPROCS, in the edges' own
// process). Before, the smoke test ran under the 50ms evaluation deadline
// and a deadline or cancellation during it was recorded as a refusal: one
// replica stayed on the old policy. Neither replica may report an error.
func TestPushedBundleReachesEveryReplicaUnderCPULoad(t *testing.T) {
	c, prefix := testredis.New(t)
	st := state.New(c, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var addrs [2]string
	var wg sync.WaitGroup
	for i := range addrs {
		addrs[i] = startTestEdge(t, ctx, &wg, c, prefix, "edge-"+string(rune('a'+i)), "")
	}
	defer func() { cancel(); wg.Wait() }()

	stopHog := cpuHog(2 * runtime.GOMAXPROCS(0))
	defer stopHog()

	files := policies.ShippedFiles()
	files["v2.rego"] = "package geniehive.v2\n\nmarker := true\n"
	v2 := policy.NewBundle(files).Version
	if err := st.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: v2, Files: files, PushedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		deadline := time.Now().Add(6 * time.Minute)
		for {
			_, v, perr := policyOf(t, a)
			if perr != "" {
				t.Fatalf("edge %s refused a valid bundle under CPU load: %s", a, perr)
			}
			if v == v2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("edge %s never switched to %s under CPU load", a, v2)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// cpuHog keeps n goroutines spinning until the returned func is called.
func cpuHog(n int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(i)
			for {
				select {
				case <-done:
					return
				default:
				}
				for j := 0; j < 1<<16; j++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
				hogSink.Store(x)
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

var hogSink atomic.Uint64

func policyOf(t *testing.T, addr string) (engine, version, errMsg string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/cluster/policy")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Local struct {
			Engine  string `json:"engine"`
			Version string `json:"version"`
			Error   string `json:"error"`
		} `json:"local"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Local.Engine, out.Local.Version, out.Local.Error
}
