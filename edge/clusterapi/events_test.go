package clusterapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
)

type eventsEnv struct {
	store *state.Store
	api   *API
	url   string
	stop  chan struct{} // the edge's Stopping
	// problems is what the edge's Health reports as degraded.
	problems atomic.Pointer[[]edge.Problem]
	srv      *fasthttp.Server
	ran      chan struct{} // closed when RunEvents returned
	logged   serverLog     // what the fasthttp server logged
}

// serverLog is a fasthttp.Logger that keeps the lines.
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *serverLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func chatNode(id string) *fleet.NodeState {
	return &fleet.NodeState{Host: fleet.Host{ID: id, GPUs: []fleet.GPU{{Index: 0, Name: "sim", VRAMUsedBytes: 6 << 30, VRAMTotalBytes: 24 << 30}}},
		Services: []fleet.Service{{ID: id + "/chat", HostID: id, Name: "chat", Kind: fleet.KindChat, Protocol: fleet.ProtocolOpenAI,
			Healthy: true, Endpoint: "http://127.0.0.1:1", Assets: []fleet.Asset{{Name: "llama3.1:8b", Loaded: true}}}}}
}

// newEventsEnv serves the API on a real loopback listener, with a running
// snapshot watcher (pub/sub events and resync, as an edge runs it) and
// the event hub; node h1 (TTL a minute) and h2 (TTL ttl2) are registered.
func newEventsEnv(t *testing.T, max int, ttl2 time.Duration) *eventsEnv {
	t.Helper()
	c, prefix := testredis.New(t)
	e := &eventsEnv{store: state.New(c, prefix), stop: make(chan struct{}), ran: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.store.WriteHeartbeat(ctx, chatNode("h1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := e.store.WriteHeartbeat(ctx, chatNode("h2"), ttl2); err != nil {
		t.Fatal(err)
	}
	w := state.NewWatcher(e.store, state.WatcherOptions{Resync: time.Hour}) // changes come from pub/sub and deadlines only
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	wdone := make(chan struct{})
	go func() { defer close(wdone); _ = w.Run(ctx) }()
	r, err := routing.New(routing.Config{}, e.store, state.NewInflight(e.store, "edge-t", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	e.api = New(Deps{Store: e.store, Snapshot: w.Current, Router: r, Authorize: authorize, Changes: w.Changes(), Stopping: e.stop,
		MaxEventStreams: max, Policy: func() PolicyStatus { return PolicyStatus{Engine: "go", Version: "builtin-go-v1"} },
		Health: func() EdgeHealth {
			h := EdgeHealth{ID: "edge-t"}
			if p := e.problems.Load(); p != nil {
				h.Degraded = *p
			}
			return h
		}})
	go func() { defer close(e.ran); e.api.RunEvents(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if !e.api.Handle(ctx) {
			ctx.SetStatusCode(418)
		}
	}, CloseOnShutdown: true, Logger: &e.logged}
	go e.srv.Serve(ln)
	e.url = "http://" + ln.Addr().String()
	t.Cleanup(func() {
		cancel()
		<-wdone
		<-e.ran
		_ = e.srv.Shutdown()
	})
	waitUntil(t, "the hub to run", func() bool { return e.api.ev.started.Load() })
	return e
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // generous: a loaded machine under -race
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type sseEvent struct {
	id, name, data string
}

// stream opens the event stream with key and returns its events as they
// arrive (the channel closes when the stream ends).
func (e *eventsEnv) stream(t *testing.T, key string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url+"/v1/cluster/events", nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan sseEvent, 64)
	if resp.StatusCode != 200 {
		close(ch)
		return resp, ch
	}
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return resp, ch
}

// rawStream opens the event stream with the reader key on a bare
// connection (closed at cleanup) and does not read it.
func (e *eventsEnv) rawStream(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte("GET /v1/cluster/events HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer r\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	return conn
}

// next waits for the first snapshot event whose summary satisfies cond.
func next(t *testing.T, ch <-chan sseEvent, what string, cond func(*eventSummary) bool) *eventSummary {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended while waiting for %s", what)
			}
			if ev.name != "snapshot" {
				continue
			}
			var s eventSummary
			if err := json.Unmarshal([]byte(ev.data), &s); err != nil {
				t.Fatalf("event data %q: %v", ev.data, err)
			}
			if cond(&s) {
				return &s
			}
		case <-timeout:
			t.Fatalf("no event with %s", what)
		}
	}
}

func host(s *eventSummary, id string) *eventHost {
	for i := range s.Hosts {
		if s.Hosts[i].ID == id {
			return &s.Hosts[i]
		}
	}
	return nil
}

// The stream starts with the current state; a node that stops (its agent
// removes it: a pub/sub change) and a node whose heartbeat stops (nothing
// is announced: its deadline passes) both show up as events; the edge
// stopping ends the stream with a "shutdown" event.
func TestEventsStreamFleetChanges(t *testing.T) {
	e := newEventsEnv(t, 4, 1500*time.Millisecond)
	resp, ch := e.stream(t, "r")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	first := next(t, ch, "both hosts live", func(s *eventSummary) bool {
		h1, h2 := host(s, "h1"), host(s, "h2")
		return h1 != nil && h1.Live && h2 != nil && h2.Live
	})
	if len(first.Services) != 2 || len(first.Services[0].Loaded) != 1 || first.Services[0].Loaded[0] != "llama3.1:8b" ||
		first.Policy == nil || first.Policy.Version != "builtin-go-v1" || first.Hosts[0].GPUs[0].VRAMTotalBytes != 24<<30 {
		t.Fatalf("first event: %+v", first)
	}
	// h1's upstream unloads its model: the next heartbeat says so.
	unloaded := chatNode("h1")
	unloaded.Services[0].Assets[0].Loaded = false
	if err := e.store.WriteHeartbeat(context.Background(), unloaded, time.Minute); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "h1's model unloaded", func(s *eventSummary) bool {
		return len(s.Services) > 0 && s.Services[0].ID == "h1/chat" && len(s.Services[0].Loaded) == 0
	})
	// h2's heartbeat is not refreshed: it turns down at its deadline, which
	// no pub/sub message announces (the watcher resyncs hourly here).
	next(t, ch, "h2 down at its deadline", func(s *eventSummary) bool {
		h2 := host(s, "h2")
		return h2 != nil && !h2.Live && host(s, "h1").Live
	})
	// h1's agent stops: it removes the node, the watcher hears it.
	if err := e.store.RemoveNode(context.Background(), "h1"); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "h1 gone", func(s *eventSummary) bool { return host(s, "h1") == nil })
	close(e.stop)
	for ev := range ch {
		if ev.name == "shutdown" {
			if _, ok := <-ch; ok {
				t.Fatal("the stream went on after its shutdown event")
			}
			waitUntil(t, "the stream's slot freed", func() bool { return e.api.ev.open.Load() == 0 })
			r2, _ := e.stream(t, "r")
			if r2.StatusCode != 503 {
				t.Fatalf("a stream opened on a stopping edge: %d", r2.StatusCode)
			}
			return
		}
	}
	t.Fatal("the stream ended without a shutdown event")
}

// Reader scope like every /v1/cluster read; streams past the cap are
// refused with 503 too_many_streams, and a closed stream frees its slot.
func TestEventsScopeAndStreamCap(t *testing.T) {
	e := newEventsEnv(t, 2, time.Minute)
	e.api.ev.ka = 50 * time.Millisecond // a client that left is noticed at the next write
	for key, want := range map[string]int{"": 401, "c": 403} {
		if r, _ := e.stream(t, key); r.StatusCode != want {
			t.Fatalf("events with key %q: %d, want %d", key, r.StatusCode, want)
		}
	}
	r1, _ := e.stream(t, "r")
	_, _ = e.stream(t, "o")
	r3, _ := e.stream(t, "r")
	if r1.StatusCode != 200 || r3.StatusCode != 503 {
		t.Fatalf("streams: first %d, third %d (want 200, 503)", r1.StatusCode, r3.StatusCode)
	}
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.NewDecoder(r3.Body).Decode(&body); err != nil || body.Error.Code != "too_many_streams" {
		t.Fatalf("third stream's error: %+v %v", body, err)
	}
	r1.Body.Close()
	waitUntil(t, "a slot freed by the closed stream", func() bool {
		r, _ := e.stream(t, "r")
		r.Body.Close()
		return r.StatusCode == 200
	})
}

// A client that hangs up frees its slot promptly, not at the next write:
// on a quiet fleet that is the keepalive's, 15s later, and a console
// reloaded a few times held every slot until then. The keepalive is set
// to an hour here, so only the hang-up check can free the slot; the bound
// (10s, for a check every second) is generous for -race on a loaded
// machine and still below the 15s keepalive.
func TestEventsHungUpClientFreesSlot(t *testing.T) {
	e := newEventsEnv(t, 2, time.Minute)
	e.api.ev.ka = time.Hour
	first := e.rawStream(t)
	e.rawStream(t)
	waitUntil(t, "both streams", func() bool { return e.api.ev.open.Load() == 2 })
	if r, _ := e.stream(t, "r"); r.StatusCode != 503 {
		t.Fatalf("a third stream past the cap of 2: %d, want 503", r.StatusCode)
	}
	closed := time.Now()
	first.Close()
	for deadline := closed.Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, _ := e.stream(t, "r")
		r.Body.Close()
		if r.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot 10s after a client hung up (status %d, %d streams open)", r.StatusCode, e.api.ev.open.Load())
		}
	}
	t.Logf("a new stream got the hung-up client's slot %v after the hang-up", time.Since(closed).Round(time.Millisecond))
	// A hang-up is routine (a console reloaded): the edge does not log it.
	if l := e.logged.all(); len(l) > 0 {
		t.Fatalf("the server logged %q", l)
	}
}

// A client that stops reading is dropped once a write waits past the
// write timeout: its slot frees and nothing accumulates for it (every
// stream writes the hub's one latest event).
func TestEventsSlowReaderDropped(t *testing.T) {
	e := newEventsEnv(t, 4, time.Minute)
	e.api.ev.wt = 200 * time.Millisecond
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	if _, err := conn.Write([]byte("GET /v1/cluster/events HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer r\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stream to open", func() bool { return e.api.ev.open.Load() == 1 })
	// Large distinct events until the socket buffers are full and a write
	// blocks past its deadline; the client never reads.
	big := strings.Repeat("x", 256<<10)
	for i := 0; e.api.ev.open.Load() == 1; i++ {
		if i > 10000 {
			t.Fatal("a client that never reads was never dropped")
		}
		e.api.ev.publish([]byte(`{"pad":"` + big + `","n":` + string(rune('0'+i%10)) + `}`))
		time.Sleep(time.Millisecond)
	}
}

// An open stream costs one goroutine on the edge (the connection's own,
// which writes the events) and nothing more: N idle streams add about N
// goroutines, whatever N. A HEAD of the stream frees its slot at once.
func TestEventsStreamCostsOneGoroutine(t *testing.T) {
	e := newEventsEnv(t, 64, time.Minute)
	addr := strings.TrimPrefix(e.url, "http://")
	open := func() net.Conn { return e.rawStream(t) }
	// Warm up: the server's worker pool, the hub.
	open()
	waitUntil(t, "the first stream", func() bool { return e.api.ev.open.Load() == 1 })
	time.Sleep(50 * time.Millisecond)
	before := goruntime.NumGoroutine()
	const n = 40
	for i := 0; i < n; i++ {
		open()
	}
	waitUntil(t, "the streams", func() bool { return e.api.ev.open.Load() == n+1 })
	time.Sleep(50 * time.Millisecond)
	d := goruntime.NumGoroutine() - before
	t.Logf("%d idle streams: %d more goroutines", n, d)
	if d > n+4 {
		t.Fatalf("%d idle streams added %d goroutines (want about one each)", n, d)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("HEAD /v1/cluster/events HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer r\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if k, err := conn.Read(buf); err != nil || !strings.HasPrefix(string(buf[:k]), "HTTP/1.1 200") {
		t.Fatalf("HEAD: %q %v", buf[:k], err)
	}
	waitUntil(t, "the HEAD's slot freed", func() bool { return e.api.ev.open.Load() == n+1 })
}

// Nothing in the snapshot announces that this edge became degraded (a
// refused policy, an unreadable keyring): the hub's tick carries it to the
// open streams.
func TestEventsEdgeDegraded(t *testing.T) {
	e := newEventsEnv(t, 4, time.Minute)
	_, ch := e.stream(t, "r")
	next(t, ch, "a healthy edge", func(s *eventSummary) bool { return s.Edge == "edge-t" && len(s.Degraded) == 0 })
	e.problems.Store(&[]edge.Problem{{Code: edge.DegradedPolicyRefused, Detail: "bundle v9 does not compile"}})
	next(t, ch, "the edge degraded", func(s *eventSummary) bool {
		return len(s.Degraded) == 1 && s.Degraded[0].Code == edge.DegradedPolicyRefused
	})
}

// TestEventsPolicyOmitsZeroLoadedAt: the snapshot event's policy (whose
// load time is dropped so a reload alone does not make an event) and a
// policy never loaded carry no "loaded_at", rather than year 1.
func TestEventsPolicyOmitsZeroLoadedAt(t *testing.T) {
	a := &API{d: Deps{Policy: func() PolicyStatus {
		return PolicyStatus{Engine: "go", Version: "v1", LoadedAt: time.Now()}
	}}}
	b := a.summary(&fleet.Snapshot{}, time.Now())
	if !strings.Contains(string(b), `"policy":{"engine":"go","version":"v1"}`) {
		t.Fatalf("event data %s: want the policy without loaded_at", b)
	}
	for _, p := range []PolicyStatus{{Engine: "go"}, {Engine: "go", LoadedAt: time.Unix(1, 0).UTC()}} {
		j, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(j), "loaded_at"); has != !p.LoadedAt.IsZero() || strings.Contains(string(j), "0001-01-01") {
			t.Fatalf("%+v marshals to %s", p, j)
		}
	}
}
