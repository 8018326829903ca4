package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/loadtest/sim"
)

// rawStream sends a streaming chat request on a raw connection and returns
// the connection and a reader positioned after the response headers.
func rawStream(t *testing.T, s *stack) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	body := `{"model":"coder","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testKey +
		"\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("status line %q: %v", status, err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			return conn, br
		}
	}
}

// TestSilentUpstreamHeartbeatsAndDisconnect: while the upstream is silent
// mid-stream (a model thinking) the client gets SSE comment heartbeats, and
// a client that hangs up then is noticed at the next one: the upstream
// request is cancelled and the accounting returns to zero.
func TestSilentUpstreamHeartbeatsAndDisconnect(t *testing.T) {
	s := newStack(t) // heartbeat every 50ms
	s.chat.Update(func(b *sim.Behavior) { b.ChunkInterval = 20 * time.Second; b.Chunks = 3 })
	conn, br := rawStream(t, s)
	beats, data := 0, 0
	for beats < 3 {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l, "data:") {
			data++
		}
		if strings.HasPrefix(l, ": keep-alive") {
			if data == 0 {
				t.Fatal("heartbeat before the upstream's first event")
			}
			beats++
		}
	}
	conn.Close()
	start := time.Now()
	waitUntil(t, 3*time.Second, "upstream stream aborted", func() bool { return s.chat.StreamsAborted() == 1 })
	waitUntil(t, 3*time.Second, "edge request finished", func() bool { return s.srv.Open() == 0 })
	waitUntil(t, 3*time.Second, "in-flight lease ended", func() bool { return s.srv.Inflight().Open() == 0 })
	if d := time.Since(start); d > time.Second {
		t.Fatalf("disconnect noticed after %v with 50ms heartbeats", d)
	}
}

// TestStreamIdleBoundsSilenceDespiteHeartbeats: heartbeats to the client do
// not extend Timeouts.StreamIdle: an upstream silent for longer ends the
// stream with an SSE error event.
func TestStreamIdleBoundsSilenceDespiteHeartbeats(t *testing.T) {
	s := newStack(t, func(c *Config, _ *Deps) { c.Timeouts.StreamIdle = 400 * time.Millisecond })
	s.chat.Update(func(b *sim.Behavior) { b.ChunkInterval = 10 * time.Second; b.Chunks = 3 })
	_, br := rawStream(t, s)
	start := time.Now()
	var data, beats int
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended without an error event (data %d, heartbeats %d): %v", data, beats, err)
		}
		switch {
		case strings.HasPrefix(l, ": keep-alive"):
			beats++
		case strings.HasPrefix(l, `data: {"error"`):
			if !strings.Contains(l, "upstream_timeout") {
				t.Fatalf("error event %q", l)
			}
			// Not before the idle timeout (no ceiling: a loaded machine
			// may deliver the error event late).
			if d := time.Since(start); d < 300*time.Millisecond {
				t.Fatalf("idle stream cut after %v, before the 400ms idle timeout", d)
			}
			if beats < 3 {
				t.Fatalf("%d heartbeats during 400ms of silence, want several", beats)
			}
			return
		case strings.HasPrefix(l, "data:"):
			data++
		}
	}
}

// TestLargeEventAcrossReads: an SSE event larger than one upstream read,
// arriving in pieces, reaches the client whole, and events after it too.
func TestLargeEventAcrossReads(t *testing.T) {
	s := newStack(t)
	big := strings.Repeat("x", 20000)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		ev := `data: {"choices":[{"delta":{"content":"` + big + `"}}]}` + "\n\n"
		for i := 0; i < len(ev); i += 7000 {
			_, _ = io.WriteString(w, ev[i:min(i+7000, len(ev))])
			fl.Flush()
			time.Sleep(5 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"tail\"}}]}\n\ndata: [DONE]\n\n")
		fl.Flush()
	}))
	defer up.Close()
	heartbeat(t, s.store, "big", svc("big", "chat", fleet.KindChat, up.URL, fleet.Asset{Name: "bigmodel", Loaded: true}))
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["big/chat"] != nil })
	r, body := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"bigmodel","stream":true,"messages":[]}`), nil)
	if r.StatusCode != 200 {
		t.Fatalf("%d %s", r.StatusCode, body)
	}
	events := strings.Split(strings.TrimSpace(body), "\n\n")
	if len(events) != 3 || !strings.Contains(events[0], big) || !strings.Contains(events[1], "tail") || events[2] != "data: [DONE]" {
		t.Fatalf("events: %d, first %d bytes", len(events), len(events[0]))
	}
}
