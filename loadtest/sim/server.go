package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/geniehive/geniehive/internal/jsonw"
)

// Server is one running simulated upstream.
type Server struct {
	cfg  Config // static part; Behavior lives in beh
	ln   net.Listener
	http *http.Server
	url  string

	beh    atomic.Pointer[Behavior]
	models atomic.Pointer[modelTable]
	slots  chan struct{} // nil when unlimited

	paths   map[string]*atomic.Int64 // read-only after Start
	other   atomic.Int64
	total   atomic.Int64
	seq     atomic.Uint64
	last    atomic.Pointer[Request]
	started time.Time

	inflight, running, waiting     atomic.Int64
	streamsAborted, streamsDone    atomic.Int64
	streamsCut, clientAborts       atomic.Int64
	errorsInjected, connsDropped   atomic.Int64
	promptTokens, completionTokens atomic.Int64
}

// Request is the last inference request a server received.
type Request struct {
	Method string
	Path   string
	Header http.Header // do not modify
	Body   []byte      // nil for multipart uploads
}

// Stats are a server's cumulative counters.
type Stats struct {
	Requests map[string]int64 // by path; unknown paths under "other"
	Total    int64
	InFlight int64 // inference requests being handled (queued included)
	Running  int64 // holding a generation slot
	Waiting  int64 // queued for a slot
	// StreamsAborted counts streams the client abandoned before the end
	// (disconnect or cancel): proof that cancellation reached the upstream.
	StreamsAborted   int64
	StreamsCompleted int64
	StreamsCut       int64 // cut by FailAfterChunks
	// ClientAborts counts inference requests (streaming or not) whose
	// client went away before the answer was complete.
	ClientAborts     int64
	ErrorsInjected   int64 // 500s from ErrorRate
	ConnsDropped     int64 // FailBeforeFirstByte closes
	PromptTokens     int64
	CompletionTokens int64
}

type modelEntry struct {
	Model
	loaded   atomic.Bool
	created  int64
	digest   string
	nameJSON []byte // JSON string literal of the name, quotes included
}

type modelTable struct {
	list   []*modelEntry
	byName map[string]*modelEntry
}

var knownPaths = []string{
	"/", "/health", "/metrics",
	"/v1/models", "/v1/chat/completions", "/v1/embeddings", "/v1/audio/transcriptions",
	"/v1/audio/speech", "/v1/images/generations",
	"/api/tags", "/api/ps", "/api/version",
}

// Start validates cfg and serves it on cfg.Addr (default 127.0.0.1:0).
//
// # Errors
// An invalid config, or a listen failure.
func Start(cfg Config) (*Server, error) {
	cfg.Models = append([]Model(nil), cfg.Models...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, started: time.Now(), paths: map[string]*atomic.Int64{}}
	for _, p := range knownPaths {
		s.paths[p] = new(atomic.Int64)
	}
	b := cfg.Behavior
	s.beh.Store(&b)
	s.SetModels(cfg.Models)
	if cfg.Slots > 0 {
		s.slots = make(chan struct{}, cfg.Slots)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	host := ln.Addr().(*net.TCPAddr)
	ip := host.IP.String()
	if host.IP.IsUnspecified() {
		ip = "127.0.0.1"
	}
	s.url = "http://" + net.JoinHostPort(ip, strconv.Itoa(host.Port))
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// URL is the base URL, e.g. "http://127.0.0.1:41234" (no trailing slash).
func (s *Server) URL() string { return s.url }

// Addr is the listening host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Flavor returns the server's flavor.
func (s *Server) Flavor() Flavor { return s.cfg.Flavor }

// Close stops the server at once, cutting open connections.
func (s *Server) Close() error { return s.http.Close() }

// Shutdown stops accepting and waits for open requests to finish.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Behavior returns the current behavior.
func (s *Server) Behavior() Behavior { return *s.beh.Load() }

// SetBehavior replaces the behavior (defaults filled).
func (s *Server) SetBehavior(b Behavior) {
	b.defaults()
	s.beh.Store(&b)
}

// Update changes the behavior with f, atomically with respect to requests
// (concurrent Updates race: the last one wins).
func (s *Server) Update(f func(*Behavior)) {
	b := *s.beh.Load()
	f(&b)
	s.SetBehavior(b)
}

// SetModels replaces the model list (defaults filled; invalid kinds become chat).
func (s *Server) SetModels(models []Model) {
	t := &modelTable{byName: make(map[string]*modelEntry, len(models))}
	base := s.started.Add(-72 * time.Hour).Unix()
	for i, m := range models {
		m.fill(s.cfg.Flavor)
		sum := sha256.Sum256([]byte(m.Name))
		e := &modelEntry{Model: m, created: base + int64(i), digest: hex.EncodeToString(sum[:])}
		e.nameJSON = jsonw.AppendString(nil, m.Name)
		e.loaded.Store(m.Loaded)
		t.list = append(t.list, e)
		t.byName[m.Name] = e
	}
	s.models.Store(t)
}

// Models returns the current models with their loaded state.
func (s *Server) Models() []Model {
	t := s.models.Load()
	out := make([]Model, len(t.list))
	for i, e := range t.list {
		out[i] = e.Model
		out[i].Loaded = e.loaded.Load()
	}
	return out
}

// SetLoaded marks a model loaded or unloaded (Ollama /api/ps); false when
// there is no such model.
func (s *Server) SetLoaded(name string, loaded bool) bool {
	e, ok := s.models.Load().byName[name]
	if ok {
		e.loaded.Store(loaded)
	}
	return ok
}

// LastRequest returns the last inference request received, or nil.
func (s *Server) LastRequest() *Request { return s.last.Load() }

// Requests returns how many requests hit path.
func (s *Server) Requests(path string) int64 {
	if c, ok := s.paths[path]; ok {
		return c.Load()
	}
	return 0
}

// StreamsAborted is the number of streams the client abandoned mid-answer.
func (s *Server) StreamsAborted() int64 { return s.streamsAborted.Load() }

// InFlight is the number of inference requests being handled now.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

// Stats returns a copy of every counter.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:         make(map[string]int64, len(s.paths)+1),
		Total:            s.total.Load(),
		InFlight:         s.inflight.Load(),
		Running:          s.running.Load(),
		Waiting:          s.waiting.Load(),
		StreamsAborted:   s.streamsAborted.Load(),
		StreamsCompleted: s.streamsDone.Load(),
		StreamsCut:       s.streamsCut.Load(),
		ClientAborts:     s.clientAborts.Load(),
		ErrorsInjected:   s.errorsInjected.Load(),
		ConnsDropped:     s.connsDropped.Load(),
		PromptTokens:     s.promptTokens.Load(),
		CompletionTokens: s.completionTokens.Load(),
	}
	for p, c := range s.paths {
		if n := c.Load(); n > 0 {
			st.Requests[p] = n
		}
	}
	if n := s.other.Load(); n > 0 {
		st.Requests["other"] = n
	}
	return st
}

// ServeHTTP routes one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.total.Add(1)
	path := r.URL.Path
	if c, ok := s.paths[path]; ok {
		c.Add(1)
	} else {
		s.other.Add(1)
	}
	b := s.beh.Load()
	if b.FailBeforeFirstByte {
		s.connsDropped.Add(1)
		dropConn(w)
		return
	}
	fl := s.cfg.Flavor
	switch path {
	case "/v1/chat/completions":
		if fl == FlavorWhisper {
			break
		}
		if !method(w, r, http.MethodPost) {
			return
		}
		s.chat(w, r, b)
		return
	case "/v1/embeddings":
		if fl == FlavorWhisper {
			break
		}
		if !method(w, r, http.MethodPost) {
			return
		}
		s.embeddings(w, r, b)
		return
	case "/v1/audio/transcriptions":
		if !method(w, r, http.MethodPost) {
			return
		}
		s.transcription(w, r, b)
		return
	case "/v1/audio/speech":
		if fl == FlavorOllama {
			break
		}
		if !method(w, r, http.MethodPost) {
			return
		}
		s.speech(w, r, b)
		return
	case "/v1/images/generations":
		if fl == FlavorOllama || fl == FlavorWhisper {
			break
		}
		if !method(w, r, http.MethodPost) {
			return
		}
		s.images(w, r, b)
		return
	case "/v1/models":
		if !method(w, r, http.MethodGet) {
			return
		}
		s.listModels(w)
		return
	case "/health":
		if !method(w, r, http.MethodGet) {
			return
		}
		s.health(w, b)
		return
	case "/metrics":
		if fl != FlavorLlamaCPP && fl != FlavorVLLM {
			break
		}
		if !method(w, r, http.MethodGet) {
			return
		}
		s.metrics(w, b)
		return
	case "/api/tags", "/api/ps", "/api/version", "/":
		if fl != FlavorOllama {
			break
		}
		if !method(w, r, http.MethodGet) {
			return
		}
		s.ollama(w, path)
		return
	}
	if strings.HasPrefix(path, imageFilesPrefix) && fl != FlavorOllama && fl != FlavorWhisper {
		if method(w, r, http.MethodGet) {
			s.imageFile(w, r)
		}
		return
	}
	writeError(w, http.StatusNotFound, "invalid_request_error", "not_found", "", "Unknown request URL: "+r.Method+" "+path)
}

func method(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", m)
	writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "", "Method "+r.Method+" not allowed; use "+m)
	return false
}

// dropConn closes the connection without writing a byte.
func dropConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	c, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST, like a crashed process
	}
	_ = c.Close()
}

// gate takes a generation slot (queueing when Slots are all busy).
func (s *Server) gate(ctx context.Context) (release func(), ok bool) {
	if s.slots == nil {
		s.running.Add(1)
		return func() { s.running.Add(-1) }, true
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.waiting.Add(1)
		select {
		case s.slots <- struct{}{}:
			s.waiting.Add(-1)
		case <-ctx.Done():
			s.waiting.Add(-1)
			return nil, false
		}
	}
	s.running.Add(1)
	return func() { s.running.Add(-1); <-s.slots }, true
}

// pause waits d on t (reused), returning false when ctx ends first.
func pause(ctx context.Context, t **time.Timer, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-(*t).C:
		return true
	case <-ctx.Done():
		(*t).Stop()
		return false
	}
}

// inject applies ErrorRate; true when the request was failed.
func (s *Server) inject(w http.ResponseWriter, b *Behavior) bool {
	if b.ErrorRate > 0 && randFloat() < b.ErrorRate {
		s.errorsInjected.Add(1)
		writeError(w, http.StatusInternalServerError, "server_error", "simulated_failure", "", "simulated upstream failure")
		return true
	}
	return false
}

// Config returns the server's configuration with its actual listen address,
// current behavior and current models, so that
//
//	s.Close(); s2, err := sim.Start(s.Config())
//
// brings "the same host" back on the same address after a simulated outage.
func (s *Server) Config() Config {
	c := s.cfg
	c.Addr = s.Addr()
	c.Behavior = s.Behavior()
	c.Models = s.Models()
	return c
}
