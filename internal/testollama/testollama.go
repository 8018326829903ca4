// Package testollama gives tests a real Ollama with three tiny models.
//
// The binary is GENIEHIVE_TEST_OLLAMA (a path; the test command builds it
// with scripts/ollama.sh). When that is unset the tests that ask for Ollama
// are skipped, except under CI=true, where that is a failure; a binary that
// is set but does not start is always a failure.
//
// Start returns one server per test binary, started on first use on a free
// loopback port; Private starts a dedicated one that a test may load and
// unload models on, stopped when the test ends. Each server has its own
// OLLAMA_MODELS and HOME in a fresh temporary directory and runs under a
// small bash watchdog in its own process group: when the test binary exits,
// however it exits, the watchdog's stdin pipe closes (and Pdeathsig sends
// it SIGTERM), and it kills Ollama with the model runners Ollama spawned,
// then removes the directory.
//
// Every server holds the same three models, created through Ollama's own API
// (POST /api/blobs/:digest, then POST /api/create) from GGUFs written by
// internal/gguf, as in the recordings of ../shared/fixtures/ollama-0.17.4:
//
//	tiny-llama  completion                  plain "role: content" template
//	qwen3-tiny  completion, tools, thinking a template that renders .Thinking
//	                                        and prefills <think> when $.Think
//	tiny-embed  embedding                   llama.pooling_type = 1
//
// Answers are a few random English words, produced in milliseconds on one
// CPU thread. Everything here is safe for concurrent use by parallel tests.
package testollama

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/geniehive/geniehive/internal/gguf"
)

// Version is the Ollama version the test command builds and these tests
// expect (GET /api/version).
const Version = "0.17.4"

// The models every server holds.
const (
	ChatModel     = "tiny-llama"
	ThinkingModel = "qwen3-tiny"
	EmbedModel    = "tiny-embed"
)

// ChatTemplate is tiny-llama's template: "role: content" lines, then
// "assistant:".
const ChatTemplate = `{{- if .System }}system: {{ .System }}
{{ end }}{{- range .Messages }}{{ .Role }}: {{ .Content }}
{{ end }}assistant:`

// ThinkingTemplate is qwen3-tiny's. Ollama lists "thinking" for a template
// that renders .Thinking between two tags inside range .Messages
// (template/template.go, Capabilities via server/images.go), and "tools" for
// one that uses .Tools. Prefilling "<think>" when thinking is on puts the
// whole answer in `thinking`/`reasoning`; with thinking off it is `content`.
const ThinkingTemplate = `{{- if .System }}system: {{ .System }}
{{ end }}
{{- if .Tools }}tools:{{ range .Tools }} {{ .Function.Name }}{{ end }}
{{ end }}
{{- range .Messages }}
{{- if eq .Role "assistant" }}assistant: {{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}
{{- range .ToolCalls }}<tool_call>{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}</tool_call>{{ end }}
{{ else }}{{ .Role }}: {{ .Content }}
{{ end }}
{{- end }}assistant:{{ if $.Think }} <think>{{ end }}`

type model struct {
	name     string
	gguf     gguf.Options
	template string
	params   map[string]any
}

func chatParams() map[string]any {
	return map[string]any{
		"num_ctx": 2048, "num_predict": 48, "temperature": 0.8,
		"num_thread": 1, "stop": []string{"user:"},
	}
}

// models: distinct seeds give distinct blobs, so each model gets its own
// runner (two names on one blob share one, and /api/ps lists only the first).
var models = []model{
	{ChatModel, gguf.Options{Seed: 42}, ChatTemplate, chatParams()},
	{ThinkingModel, gguf.Options{Seed: 7}, ThinkingTemplate, chatParams()},
	{EmbedModel, gguf.Options{Seed: 42, Embedding: true}, "{{ .Prompt }}",
		map[string]any{"num_ctx": 2048, "num_thread": 1}},
}

// Server is a running Ollama.
type Server struct {
	// URL is the base URL, http://127.0.0.1:PORT (no trailing slash).
	URL string
	// Addr is 127.0.0.1:PORT, where Ollama listens.
	Addr string
	dir  string
	cmd  *exec.Cmd
	stop io.WriteCloser // the watchdog's stdin: closing it stops the server
	done chan struct{}
	once sync.Once
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Binary returns GENIEHIVE_TEST_OLLAMA, skipping the test when it is unset
// (failing it under CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("GENIEHIVE_TEST_OLLAMA")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("a real Ollama is required under CI=true: GENIEHIVE_TEST_OLLAMA is unset (the test command sets it from scripts/ollama.sh)")
		}
		t.Skip("no real Ollama: GENIEHIVE_TEST_OLLAMA is unset (make test builds one with scripts/ollama.sh)")
	}
	return bin
}

// Start returns the test binary's shared Ollama, starting it and creating
// the models on first use. Tests must not rely on what is loaded in it
// (others share it); use Private for that.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	sharedOnce.Do(func() {
		shared, sharedErr = start(bin)
	})
	if sharedErr != nil {
		t.Fatalf("real Ollama (%s): %v", bin, sharedErr)
	}
	return shared
}

// Private starts a dedicated Ollama for one test, stopped when it ends.
func Private(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	s, err := start(bin)
	if err != nil {
		t.Fatalf("real Ollama (%s): %v", bin, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// watchdog runs `ollama serve` in its own process group (set -m) and kills
// that group, runners included, when its stdin reaches EOF or it gets
// SIGTERM; then it removes the server's directory. $1 is the binary, $2 the
// directory.
const watchdog = `set -m
dir=$2
"$1" serve </dev/null >>"$dir/ollama.log" 2>&1 &
pid=$!
finish() { kill -KILL -- "-$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"; exit 0; }
trap finish TERM
read -r _ || true
finish
`

func start(bin string) (*Server, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, err
	}
	s, err := launch(bin)
	if err != nil {
		return nil, err
	}
	if err := s.createModels(); err != nil {
		err = fmt.Errorf("%w\n%s", err, s.Log())
		s.Stop()
		return nil, err
	}
	return s, nil
}

// launch starts `ollama serve` on port 0 (no race for a free port) and
// learns the port from its "Listening on" log line (server/routes.go, Serve).
func launch(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "geniehive-ollama-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, done: make(chan struct{})}
	cmd := exec.Command("bash", "-c", watchdog, "testollama", bin, dir)
	cmd.Env = append(os.Environ(),
		"HOME="+dir, // Ollama writes its key pair under ~/.ollama
		"OLLAMA_HOST=127.0.0.1:0",
		"OLLAMA_MODELS="+filepath.Join(dir, "models"),
		"OLLAMA_NUM_PARALLEL=1",      // the default, as recorded
		"OLLAMA_MAX_LOADED_MODELS=3", // all three models at once
		"OLLAMA_KEEP_ALIVE=5m",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	s.stop, err = cmd.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = cmd
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitUp(2 * time.Minute); err != nil {
		log := s.Log()
		s.Stop()
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return s, nil
}

var listening = regexp.MustCompile(`Listening on (127\.0\.0\.1:[0-9]+) \(version ([^)]*)\)`)

// waitUp waits for the "Listening on" line, then for GET /api/version to
// answer Version.
func (s *Server) waitUp(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if s.Addr == "" {
			b, _ := os.ReadFile(filepath.Join(s.dir, "ollama.log"))
			if m := listening.FindSubmatch(b); m != nil {
				if string(m[2]) != Version {
					return fmt.Errorf("ollama is version %s, want %s", m[2], Version)
				}
				s.Addr = string(m[1])
				s.URL = "http://" + s.Addr
			}
			last = errors.New("no \"Listening on\" line yet")
		} else {
			var v struct{ Version string }
			status, body, err := s.do(context.Background(), http.MethodGet, "/api/version", nil)
			switch {
			case err != nil:
				last = err
			case status != http.StatusOK:
				last = fmt.Errorf("GET /api/version: %d %s", status, body)
			case json.Unmarshal(body, &v) != nil || v.Version != Version:
				return fmt.Errorf("GET /api/version = %s, want version %s", body, Version)
			default:
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("ollama serve exited: %v", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("ollama did not come up within %v: %v", limit, last)
}

// createModels uploads each GGUF as a blob and creates its model, as
// `ollama create` does (server/create.go: CreateHandler reads `files`, a map
// of file name to "sha256:<hex>" digest of an uploaded blob).
func (s *Server) createModels() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, m := range models {
		file := gguf.TinyLlama(m.gguf)
		sum := sha256.Sum256(file)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		status, body, err := s.do(ctx, http.MethodPost, "/api/blobs/"+digest, file)
		if err != nil || (status != http.StatusCreated && status != http.StatusOK) {
			return fmt.Errorf("upload %s blob: %d %s %v", m.name, status, body, err)
		}
		req, _ := json.Marshal(map[string]any{
			"model":      m.name,
			"files":      map[string]string{m.name + ".gguf": digest},
			"template":   m.template,
			"parameters": m.params,
			"stream":     false,
		})
		status, body, err = s.do(ctx, http.MethodPost, "/api/create", req)
		if err != nil || status != http.StatusOK || !bytes.Contains(body, []byte(`"success"`)) {
			return fmt.Errorf("create %s: %d %s %v", m.name, status, body, err)
		}
	}
	return nil
}

var client = &http.Client{Timeout: 3 * time.Minute}

func (s *Server) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, b, err
}

// Do sends method path with body (a value marshalled to JSON, or nil) and
// returns the status and the whole response body. A transport error fails
// the test; the first model load can take seconds on a busy machine, so the
// request may take up to three minutes.
func (s *Server) Do(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	status, resp, err := s.do(context.Background(), method, path, b)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, s.Log())
	}
	return status, resp
}

// Log returns the last 16 KB of the server's log (Ollama and its runners).
func (s *Server) Log() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "ollama.log"))
	if err != nil {
		return "(no ollama log: " + err.Error() + ")"
	}
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	return "ollama log:\n" + string(b)
}

// Stop kills the server with its runners and removes its directory. Private
// servers stop when their test ends; the shared one when the test binary
// exits (never call Stop on it).
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.stop.Close()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}
