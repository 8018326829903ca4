package edge

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// rssKiB is this process's resident set size (Linux), 0 elsewhere.
func rssKiB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "VmRSS:"), "kB")))
			return n
		}
	}
	return 0
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// sendHeaders opens n connections and sends on each only the request
// headers hdr (no body byte, or the prefix given).
func sendHeaders(t *testing.T, s *stack, n int, hdr string) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte(hdr)); err != nil {
			t.Fatal(err)
		}
	}
	return conns
}

func readStatus(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readAll(t, resp.Body)
}

// TestMemoryBeforeAuth performs issue 16's flood: 40 connections without a
// key each announce a 25 MiB body and send none of it. The edge answers
// 401 from the headers, without waiting for (or allocating) a body; the
// old edge allocated each 25 MiB buffer first and answered only when the
// body timed out.
func TestMemoryBeforeAuth(t *testing.T) {
	s := newStack(t)
	h0, r0 := heapInuse(), rssKiB()
	hdr := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 26214400\r\n\r\n"
	conns := sendHeaders(t, s, 40, hdr)
	time.Sleep(300 * time.Millisecond) // let the edge do whatever it does with them
	h1, r1 := heapInuse(), rssKiB()
	t.Logf("40 unauthenticated 25 MiB announcements: heap in use %d -> %d MiB, RSS %d -> %d MiB", h0>>20, h1>>20, r0>>10, r1>>10)
	for _, c := range conns {
		if code, body := readStatus(t, c); code != 401 || !contains(body, `"invalid_api_key"`) {
			t.Fatalf("answer %d %s, want 401 before the body", code, body)
		}
	}
	if h1 > h0+64<<20 {
		t.Fatalf("heap grew by %d MiB for 40 bodies never sent", (h1-h0)>>20)
	}
}

// TestBodyBufferGrowsWithBytes: authenticated clients announcing the
// largest allowed body and sending one byte cost what they sent, not what
// they announced (the old edge sized each buffer from Content-Length:
// 40 x 8 MiB). Each sends 16 KiB, so that the handler runs (fasthttp
// prefetches up to 8 KiB of a body before calling it).
func TestBodyBufferGrowsWithBytes(t *testing.T) {
	s := newStack(t)
	h0, r0 := heapInuse(), rssKiB()
	hdr := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testKey +
		"\r\nContent-Type: application/json\r\nContent-Length: 8388608\r\n\r\n{" + strings.Repeat(" ", 16<<10)
	sendHeaders(t, s, 40, hdr)
	waitUntil(t, 5*time.Second, "40 requests reading their bodies", func() bool { return s.srv.Open() == 40 })
	h1, r1 := heapInuse(), rssKiB()
	t.Logf("40 authenticated 8 MiB announcements: heap in use %d -> %d MiB, RSS %d -> %d MiB", h0>>20, h1>>20, r0>>10, r1>>10)
	if h1 > h0+32<<20 {
		t.Fatalf("heap grew by %d MiB for 40 one-byte bodies", (h1-h0)>>20)
	}
}

// TestDeclaredSizeRefusedBeforeBody: a Content-Length over the route's
// limit is answered 413 at once, without reading the body.
func TestDeclaredSizeRefusedBeforeBody(t *testing.T) {
	s := newStack(t)
	hdr := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testKey +
		"\r\nContent-Type: application/json\r\nContent-Length: 8388609\r\n\r\n"
	c := sendHeaders(t, s, 1, hdr)[0]
	if code, body := readStatus(t, c); code != 413 || !contains(body, `"request_too_large"`) {
		t.Fatalf("answer %d %s, want 413", code, body)
	}
	// A chunked body is cut as soon as it passes the limit.
	big := strings.Repeat("a", 1<<20)
	c = sendHeaders(t, s, 1, "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testKey+
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")[0]
	go func() {
		for i := 0; i < 3; i++ {
			if _, err := c.Write([]byte(strconv.FormatInt(int64(len(big)), 16) + "\r\n" + big + "\r\n")); err != nil {
				return
			}
		}
	}()
	if code, _ := readStatus(t, c); code != 413 {
		t.Fatalf("chunked body over the speech limit: %d, want 413", code)
	}
}

// TestConnectionCaps: connections past max_conns_per_client from one
// address are refused.
func TestConnectionCaps(t *testing.T) {
	s := newStack(t, func(c *Config, _ *Deps) { c.MaxConnsPerClient = 3 })
	conns := sendHeaders(t, s, 3, "")
	_ = conns
	c := sendHeaders(t, s, 1, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0]
	if code, _ := readStatus(t, c); code != 429 {
		t.Fatalf("4th connection from one address: %d, want 429", code)
	}
}

// TestMetricsNeedAKeyWhenAuthRequired: with auth_required, /metrics needs
// a reader (or operator) key; metrics.listen serves it on a listener of
// its own instead.
func TestMetricsNeedAKeyWhenAuthRequired(t *testing.T) {
	const readerKey = "sk-reader"
	s := newStack(t, func(c *Config, _ *Deps) {
		c.AuthRequired = true
		c.Keys = append(c.Keys, KeyConfig{ID: "r", Secret: readerKey, Scope: fleet.ScopeReader})
	})
	for key, want := range map[string]int{"": 401, testKey: 403, readerKey: 200} {
		if r, b := do(t, "GET", s.url+"/metrics", key, nil, nil); r.StatusCode != want {
			t.Fatalf("/metrics with key %q: %d %s, want %d", key, r.StatusCode, b, want)
		}
	}
	s2 := newStack(t, func(c *Config, _ *Deps) { c.AuthRequired = true; c.Metrics.Listen = "127.0.0.1:0" })
	if r, _ := do(t, "GET", s2.url+"/metrics", testKey, nil, nil); r.StatusCode != 404 {
		t.Fatalf("/metrics on the main listener with metrics.listen set: %d", r.StatusCode)
	}
	waitUntil(t, 3*time.Second, "metrics listener", func() bool { return s2.srv.MetricsAddr() != "" })
	if r, b := do(t, "GET", "http://"+s2.srv.MetricsAddr()+"/metrics", "", nil, nil); r.StatusCode != 200 || !contains(b, "geniehive_") {
		t.Fatalf("metrics listener: %d", r.StatusCode)
	}
}

// TestErrorsNameNoInternals: an upstream's address and its error document
// never reach the client (issue 16: "dial tcp 127.0.0.2:9" was echoed, 4xx
// bodies relayed verbatim with internal fields).
func TestErrorsNameNoInternals(t *testing.T) {
	s := newStack(t)
	heartbeat(t, s.store, "gpu0", svc("gpu0", "chat", fleet.KindChat, "http://127.0.0.2:9", fleet.Asset{Name: "deadmodel", Loaded: true}))
	s.waitFor(func(sn *fleet.Snapshot) bool { return sn.ByID["gpu0/chat"] != nil })
	r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"deadmodel","messages":[{"role":"user","content":"hi"}]}`), nil)
	if r.StatusCode != 502 || contains(b, "127.0.0.2") || contains(b, "dial") || !contains(b, "gpu0/chat") {
		t.Fatalf("dead upstream: %d %s", r.StatusCode, b)
	}
	for body, want := range map[string]string{
		`{"error":{"message":"max_tokens is too large: 9999999","type":"BadRequestError","internal_trace":"/opt/vllm/x.py:12"}}`: "max_tokens is too large: 9999999",
		`{"error":"model requires more system memory (12 GiB) than is available"}`:                                               "model requires more system memory",
		`{"error":{"message":"could not reach http://10.1.2.3:11434/api"}}`:                                                      "",
		`{"error":{"message":"open /root/.ollama/models/blobs/sha256-x: no such file"}}`:                                         "",
	} {
		e := Classify(&upstreamError{service: "gpu0/chat", status: 400, body: []byte(body)})
		if len(e.Body) != 0 || contains(e.Message, "internal_trace") || contains(e.Message, "10.1.2.3") || contains(e.Message, "/root") {
			t.Errorf("%s -> %+v", body, e)
		}
		if want != "" && !contains(e.Message, want) {
			t.Errorf("%s: message %q lacks %q", body, e.Message, want)
		}
	}
}

// TestLongModelNameIsCut: a 1 MiB model name is echoed whole neither in
// the 404 body nor in the access log.
func TestLongModelNameIsCut(t *testing.T) {
	var logged syncBuffer
	s := newStack(t, func(_ *Config, d *Deps) {
		d.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	name := strings.Repeat("m", 1<<20)
	r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"`+name+`","messages":[]}`), nil)
	if r.StatusCode != 404 || len(b) > 8<<10 {
		t.Fatalf("%d, %d-byte answer", r.StatusCode, len(b))
	}
	waitUntil(t, 5*time.Second, "the access log line", func() bool { return strings.Contains(logged.String(), "status=404") })
	for _, line := range strings.Split(logged.String(), "\n") {
		if len(line) > 8<<10 {
			t.Fatalf("a %d-byte log line: %.200s", len(line), line)
		}
	}
	if got := clipName(strings.Repeat("é", 300)); len(got) > maxEchoedName+16 || !strings.HasPrefix(got, "éé") || !utf8Valid(got) {
		t.Fatalf("clipName: %q", got)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestClientAddressHeadersNotRelayed: X-Real-IP and Forwarded from the
// client are replaced or dropped like X-Forwarded-For.
func TestClientAddressHeadersNotRelayed(t *testing.T) {
	s := newStack(t)
	r, b := do(t, "POST", s.url+"/v1/chat/completions", testKey, []byte(`{"model":"coder","messages":[{"role":"user","content":"hi"}]}`),
		map[string]string{"X-Real-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6", "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil"})
	if r.StatusCode != 200 {
		t.Fatalf("%d %s", r.StatusCode, b)
	}
	h := s.chat.LastRequest().Header
	if h.Get("X-Real-IP") != "127.0.0.1" || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("Forwarded") != "" || h.Get("X-Forwarded-Host") != "" {
		t.Fatalf("upstream saw %v", h)
	}
}

// TestExpectContinueRefusedBeforeContinue: a client that sends
// "Expect: 100-continue" and waits (curl does for bodies over 1 MiB)
// must get the 401 or 413 before any "100 Continue": the old edge sent
// "100 Continue" first, inviting the body it was about to refuse. An
// accepted request still gets "100 Continue", then its answer.
func TestExpectContinueRefusedBeforeContinue(t *testing.T) {
	s := newStack(t)
	first := func(hdr string) (net.Conn, *bufio.Reader, string) {
		c := sendHeaders(t, s, 1, hdr)[0]
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no answer to the headers: %v", err)
		}
		return c, br, strings.TrimSpace(line)
	}
	refused := func(what, hdr string, code int, errCode string) {
		t.Helper()
		c, br, line := first(hdr)
		if line != "HTTP/1.1 "+strconv.Itoa(code)+" "+http.StatusText(code) {
			t.Fatalf("%s: first line %q, want %d before any 100 Continue", what, line, code)
		}
		resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(line+"\r\n"), br)), nil)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		if !contains(body, errCode) || !resp.Close {
			t.Fatalf("%s: %d %s (close %v), want an OpenAI error %s and the connection closed", what, resp.StatusCode, body, resp.Close, errCode)
		}
		// Closed by the edge: nothing more to read.
		if n, err := br.Read(make([]byte, 1)); err == nil {
			t.Fatalf("%s: %d more bytes after the refusal", what, n)
		}
		c.Close()
	}
	const chat = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
	refused("no key", chat+"Content-Length: 1000\r\n\r\n", 401, `"invalid_api_key"`)
	refused("wrong key", chat+"Authorization: Bearer sk-wrong\r\nContent-Length: 1000\r\n\r\n", 401, `"invalid_api_key"`)
	refused("over the limit", chat+"Authorization: Bearer "+testKey+"\r\nContent-Length: 8388609\r\n\r\n", 413, `"request_too_large"`)

	// Accepted: 100 Continue, then the body, then the answer.
	body := `{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}`
	c, br, line := first(chat + "Authorization: Bearer " + testKey + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	if line != "HTTP/1.1 100 Continue" {
		t.Fatalf("valid request: first line %q, want 100 Continue", line)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q", blank)
	}
	if _, err := c.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp.Body); resp.StatusCode != 200 || !contains(got, `"choices"`) {
		t.Fatalf("valid request after 100 Continue: %d %s", resp.StatusCode, got)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestOversizedBuffersNotPooled: a buffer that held a huge body or answer
// is not put back into the pool whole (issue 16: pooled 25 MiB buffers
// stayed pinned after the flood).
func TestOversizedBuffersNotPooled(t *testing.T) {
	b := getBuf()
	b.B = make([]byte, 0, 25<<20)
	putBuf(b)
	if cap(b.B) != 0 {
		t.Fatalf("a %d MiB buffer went back into the pool", cap(b.B)>>20)
	}
	small := getBuf()
	small.B = make([]byte, 0, 64<<10)
	putBuf(small)
	if cap(small.B) != 64<<10 {
		t.Fatal("a small buffer was dropped instead of pooled")
	}
}

// TestTotalConnectionCap: past max_conns connections in all (from any
// addresses), a new one is refused rather than served.
func TestTotalConnectionCap(t *testing.T) {
	s := newStack(t, func(c *Config, _ *Deps) { c.MaxConns = 4; c.MaxConnsPerClient = 100 })
	sendHeaders(t, s, 4, "")
	c := sendHeaders(t, s, 1, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0]
	if code, _ := readStatus(t, c); code != 503 {
		t.Fatalf("5th connection past max_conns 4: %d, want 503", code)
	}
}
