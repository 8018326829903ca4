package dialect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/geniehive/geniehive/loadtest/sim"
)

// translator is a minimal edge for one dialect in front of a chat-only
// upstream: what the real edge will do, without routing or policy. It
// parses the client body, refuses in the dialect's error format, forwards
// the Chat Completions body, and translates the answer back (whole, or
// event by event with a flush per upstream event).
type translator struct {
	t    *testing.T
	api  API
	up   string // upstream base URL
	opts ChatOptions

	mu     sync.Mutex
	bodies [][]byte // chat bodies sent upstream
}

func newTranslator(t *testing.T, api API, up string, o ChatOptions) *httptest.Server {
	tr := &translator{t: t, api: api, up: up, opts: o}
	srv := httptest.NewServer(tr)
	translators[srv] = tr
	t.Cleanup(func() { srv.Close(); delete(translators, srv) })
	return srv
}

// translators finds a test server's translator (tests run one at a time).
var translators = map[interface{ Close() }]*translator{}

func (tr *translator) lastBody() []byte {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.bodies) == 0 {
		return nil
	}
	return tr.bodies[len(tr.bodies)-1]
}

func writeErr(w http.ResponseWriter, api API, e ErrorInfo) {
	status, b := AppendError(nil, api, e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (tr *translator) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	body, _ := io.ReadAll(hr.Body)
	api := tr.api
	if strings.HasSuffix(hr.URL.Path, "/count_tokens") {
		api = APICountTokens
	}
	r := AcquireRequest()
	defer ReleaseRequest(r)
	if err := r.Parse(api, body); err != nil {
		writeErr(w, api, FromError(err.(*Error)))
		return
	}
	if api == APICountTokens {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(AppendCountTokens(nil, r.EstimateInputTokens()))
		return
	}
	chat, err := r.AppendChat(nil, &tr.opts)
	if err != nil {
		writeErr(w, api, FromError(err.(*Error)))
		return
	}
	if !json.Valid(chat) {
		tr.t.Errorf("invalid chat body: %s", chat)
	}
	tr.mu.Lock()
	tr.bodies = append(tr.bodies, chat)
	tr.mu.Unlock()
	resp, err := http.Post(tr.up+"/v1/chat/completions", "application/json", bytes.NewReader(chat))
	if err != nil {
		writeErr(w, api, ErrorInfo{Status: 502, Type: "server_error", Message: err.Error()})
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		writeErr(w, api, ErrorInfo{Status: resp.StatusCode, Type: "invalid_request_error", Message: "upstream: " + string(b)})
		return
	}
	if !r.Facts().Stream {
		b, _ := io.ReadAll(resp.Body)
		out, err := r.AppendResponse(nil, b)
		if err != nil {
			writeErr(w, api, FromError(err.(*Error)))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	fl := w.(http.Flusher)
	relay(r.Stream(), resp.Body, func(b []byte) { _, _ = w.Write(b); fl.Flush() })
}

// relay feeds an upstream SSE body to s, handing each batch of client
// events to write; a cut stream ends with the dialect's error event.
func relay(s *Stream, body io.Reader, write func([]byte)) {
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	var out []byte
	for sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		if string(bytes.TrimSpace(data)) == "[DONE]" {
			write(s.Finish(out[:0]))
			return
		}
		out, _ = s.Feed(out[:0], data)
		if len(out) > 0 {
			write(out)
		}
		if s.Done() {
			return
		}
	}
	if err := sc.Err(); err != nil {
		write(s.Fail(out[:0], ErrorInfo{Status: 502, Type: "server_error", Message: "upstream stream broke: " + err.Error()}))
		return
	}
	write(s.Finish(out[:0]))
}

func httpPost(url string, body []byte) ([]byte, error) {
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// chatOnly starts a simulated upstream that serves Chat Completions only.
func chatOnly(t *testing.T, fl sim.Flavor, b sim.Behavior, models ...sim.Model) *sim.Server {
	t.Helper()
	s, err := sim.Start(sim.Config{Flavor: fl, Responses: sim.Off, Messages: sim.Off, Models: models, Behavior: b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
