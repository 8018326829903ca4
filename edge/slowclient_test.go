package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// hostileUpstream registers a chat service "hostile/chat" serving model
// "flood" from h (an upstream misbehaving on purpose: no real server does
// this, which is the point).
func hostileUpstream(t *testing.T, s *stack, h http.HandlerFunc) {
	t.Helper()
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	heartbeat(t, s.store, "hostile", svc("hostile", "chat", fleet.KindChat, up.URL, fleet.Asset{Name: "flood", Loaded: true}))
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["hostile/chat"] != nil })
}

func rawRequest(t *testing.T, s *stack, body string) net.Conn {
	t.Helper()
	// A small receive window, set before connecting (the kernel would
	// otherwise grow it to tcp_rmem's maximum): a client that stops reading
	// is felt soon.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testKey +
		"\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStreamClientThatStopsReading: a client that stops reading a stream
// is cut after timeouts.write; the stream, its upstream request and its
// in-flight lease end (before, they were held until stream_max, an hour).
func TestStreamClientThatStopsReading(t *testing.T) {
	s := newStack(t, func(c *Config, _ *Deps) { c.Timeouts.Write = 300 * time.Millisecond })
	var cancelled atomic.Bool
	ev := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", 4000) + "\"}}]}\n\n")
	hostileUpstream(t, s, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for {
			if _, err := w.Write(ev); err != nil {
				cancelled.Store(true)
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				cancelled.Store(true)
				return
			default:
			}
		}
	})
	rawRequest(t, s, `{"model":"flood","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	// The client reads nothing at all.
	waitUntil(t, 15*time.Second, "stream ended", func() bool { return s.srv.Open() == 0 })
	waitUntil(t, 5*time.Second, "in-flight lease ended", func() bool { return s.srv.Inflight().Open() == 0 })
	waitUntil(t, 5*time.Second, "upstream request cancelled", cancelled.Load)
}

// TestBufferedAnswerToClientThatStopsReading: a whole answer is not
// pinned by a client that does not read it: past timeouts.write the edge
// drops the connection.
func TestBufferedAnswerToClientThatStopsReading(t *testing.T) {
	s := newStack(t, func(c *Config, _ *Deps) { c.Timeouts.Write = 300 * time.Millisecond })
	big := `{"choices":[{"message":{"role":"assistant","content":"` + strings.Repeat("y", 12<<20) + `"}}]}`
	var hit atomic.Bool
	hostileUpstream(t, s, func(w http.ResponseWriter, r *http.Request) {
		hit.Store(true)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, big)
	})
	c := rawRequest(t, s, `{"model":"flood","messages":[{"role":"user","content":"hi"}]}`)
	waitUntil(t, 30*time.Second, "upstream asked", hit.Load)
	// Not reading: wait until the handler is done (the answer is being
	// written), then three write timeouts more.
	waitUntil(t, 30*time.Second, "answer handed to the writer", func() bool { return s.srv.Open() == 0 && s.srv.Inflight().Open() == 0 })
	time.Sleep(time.Second)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := io.Copy(io.Discard, c)
	if n >= int64(len(big)) {
		t.Fatalf("client that stopped reading still got the whole %d-byte answer", n)
	}
}

// TestSSEEventWithoutEnd: a 64 MiB stream with no event terminator ends
// with an error event once one event passes answer_limits.sse_event;
// memory stays bounded and the scan is linear (before: +455 MiB and 50
// CPU-seconds, the pending event rescanned from its start on every read).
func TestSSEEventWithoutEnd(t *testing.T) {
	s := newStack(t)
	chunk := []byte(strings.Repeat("a", 64<<10))
	hostileUpstream(t, s, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: ")
		for i := 0; i < 1024; i++ { // 64 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	h0 := heapInuse()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	c := rawRequest(t, s, `{"model":"flood","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := readAll(t, resp.Body)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	t.Logf("64 MiB without terminator: answer after %v, process CPU %v, heap in use %d -> %d MiB, max RSS %d MiB",
		time.Since(start).Round(time.Millisecond), cpu.Round(time.Millisecond), h0>>20, heapInuse()>>20, ru1.Maxrss>>10)
	if !contains(b, `"upstream_answer_too_large"`) {
		t.Fatalf("no error event: %.300s", b)
	}
}

// TestBufferedAnswerLimit: a non-streaming answer over the route's answer
// limit is 502 in OpenAI's format.
func TestBufferedAnswerLimit(t *testing.T) {
	s := newStack(t, func(c *Config, _ *Deps) { c.AnswerLimits.Chat = 1 << 20 })
	hostileUpstream(t, s, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"message":{"content":"`+strings.Repeat("z", 2<<20)+`"}}]}`)
	})
	r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"flood","messages":[{"role":"user","content":"hi"}]}`), nil)
	if r.StatusCode != 502 || !contains(b, `"upstream_answer_too_large"`) {
		t.Fatalf("%d %.300s", r.StatusCode, b)
	}
}

// TestBufferedClientDisconnectCancelsUpstream: a client hanging up on a
// non-streaming request cancels the upstream call and frees the in-flight
// lease within a heartbeat or so (before: the upstream worked on for up to
// timeouts.request, 10 minutes, the lease held all along).
func TestBufferedClientDisconnectCancelsUpstream(t *testing.T) {
	s := newStack(t) // heartbeat 50ms; request timeout 10m
	var started, cancelled atomic.Bool
	hostileUpstream(t, s, func(w http.ResponseWriter, r *http.Request) {
		// A slow generation, as a real server does it: the answer is
		// written when done, and a client that goes cancels it (net/http
		// cancels r.Context() when its connection closes, once the body
		// was read).
		_, _ = io.ReadAll(r.Body)
		started.Store(true)
		select {
		case <-r.Context().Done():
			cancelled.Store(true)
		case <-time.After(time.Minute):
			io.WriteString(w, `{"choices":[]}`)
		}
	})
	c := rawRequest(t, s, `{"model":"flood","messages":[{"role":"user","content":"hi"}]}`)
	waitUntil(t, 5*time.Second, "upstream request", started.Load)
	waitUntil(t, 5*time.Second, "lease taken", func() bool { return s.srv.Inflight().Open() == 1 })
	c.Close()
	waitUntil(t, 5*time.Second, "upstream call cancelled", cancelled.Load)
	waitUntil(t, 5*time.Second, "request finished", func() bool { return s.srv.Open() == 0 })
	waitUntil(t, 5*time.Second, "lease released", func() bool { return s.srv.Inflight().Open() == 0 })
}
