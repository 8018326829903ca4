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
	cfg    Config // static part; Behavior lives in beh
	feat   features
	router bool     // llama.cpp router mode
	rkeys  []string // the chat answers' reasoning field(s), `"key":`
	res    *residency
	routes map[string]route
	ln     net.Listener
	http   *http.Server
	url    string

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
	loads, unloads                 atomic.Int64
}

// Request is the last request with a body a server received.
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
	// Loads and Unloads count model loads and unloads (servers that load
	// on demand); VRAMUsed is the memory taken now and VRAMPeak the most
	// taken at once.
	Loads, Unloads     int64
	VRAMUsed, VRAMPeak int64
}

type modelEntry struct {
	Model
	loaded   atomic.Bool
	created  int64
	digest   string
	nameJSON []byte // JSON string literal of the name, quotes included
	display  string // Ollama: the name with its tag ("x" is "x:latest")
	// blob is the entry whose runner this one shares: itself, or the
	// source of an `ollama cp` (Model.CopyOf).
	blob *modelEntry
}

// key is the entry the residency model keys runners and the loaded state
// by: the blob's (server/sched.go schedulerModelKey uses ModelPath).
func (e *modelEntry) key() *modelEntry {
	if e.blob != nil {
		return e.blob
	}
	return e
}

type modelTable struct {
	list   []*modelEntry
	byName map[string]*modelEntry
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
	s.feat = newFeatures(&s.cfg)
	s.router = cfg.Flavor == FlavorLlamaCPP && cfg.Router.resolve(len(cfg.Models) > 1)
	s.res = newResidency(s)
	s.rkeys = s.reasoningKeys()
	s.routes = s.routeTable()
	for p := range s.routes {
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

// Version returns the simulated server's version.
func (s *Server) Version() string { return s.cfg.Version }

// Close stops the server at once, cutting open connections.
func (s *Server) Close() error {
	s.res.reset()
	return s.http.Close()
}

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

// SetModels replaces the model list (defaults filled; invalid kinds become
// chat); models marked Loaded are resident at once, the others are not.
func (s *Server) SetModels(models []Model) {
	t := &modelTable{byName: make(map[string]*modelEntry, 2*len(models))}
	base := s.started.Add(-72 * time.Hour).Unix()
	for i, m := range models {
		m.fill(s.cfg.Flavor)
		sum := sha256.Sum256([]byte(m.Name))
		e := &modelEntry{Model: m, created: base + int64(i), digest: hex.EncodeToString(sum[:]), display: m.Name}
		if src, ok := t.find(m.CopyOf, s.cfg.Flavor); ok && m.CopyOf != "" && s.cfg.Flavor == FlavorOllama {
			// ollama cp: the same manifest (digest, metadata) and blob.
			e.Model = src.Model
			e.Name, e.Loaded, e.CopyOf = m.Name, m.Loaded, m.CopyOf
			e.digest, e.blob = src.digest, src.key()
		}
		e.nameJSON = jsonw.AppendString(nil, m.Name)
		t.list = append(t.list, e)
		t.byName[m.Name] = e
		if s.cfg.Flavor == FlavorOllama {
			// Ollama names carry a tag; "x" means "x:latest" (types/model/name.go).
			e.display = ollamaDisplay(m.Name)
			t.byName[e.display] = e
			t.byName[strings.ToLower(e.display)] = e
		}
	}
	s.res.reset()
	s.models.Store(t)
	for _, e := range t.list {
		s.res.set(e, e.Model.Loaded)
	}
}

// Models returns the current models with their loaded state.
func (s *Server) Models() []Model {
	t := s.models.Load()
	out := make([]Model, len(t.list))
	for i, e := range t.list {
		out[i] = e.Model
		out[i].Loaded = e.key().loaded.Load()
	}
	return out
}

// Resident lists the models loaded now (servers that load on demand),
// longest remaining keep-alive first.
func (s *Server) Resident() []Resident { return s.res.snapshot() }

// SetLoaded marks a model loaded or unloaded at once (no load time, no
// eviction); false when there is no such model.
func (s *Server) SetLoaded(name string, loaded bool) bool {
	e, ok := s.lookup(name)
	if ok {
		s.res.set(e, loaded)
	}
	return ok
}

// lookup finds a model by the name a request gives.
func (s *Server) lookup(name string) (*modelEntry, bool) {
	return s.models.Load().find(name, s.cfg.Flavor)
}

func (t *modelTable) find(name string, f Flavor) (*modelEntry, bool) {
	e, ok := t.byName[name]
	if ok || f != FlavorOllama || name == "" {
		return e, ok
	}
	// getExistingName: case-insensitive, tag defaulting to latest.
	e, ok = t.byName[strings.ToLower(ollamaDisplay(name))]
	return e, ok
}

// LastRequest returns the last request with a body received, or nil.
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
		Loads:            s.loads.Load(),
		Unloads:          s.unloads.Load(),
	}
	st.VRAMUsed, st.VRAMPeak = s.res.vramUsed()
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
	rt, ok := s.routes[path]
	if !ok {
		rt, ok = s.prefixRoute(path)
	}
	if !ok {
		s.notFound(w, r)
		return
	}
	if r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead && rt.head) {
		s.methodNotAllowed(w, r, rt.method)
		return
	}
	rt.h(w, r, b)
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

// inject applies ErrorRate; true when the request was failed (a 500 in
// the dialect's error shape).
func (s *Server) inject(w http.ResponseWriter, a api, b *Behavior) bool {
	if b.ErrorRate > 0 && randFloat() < b.ErrorRate {
		s.errorsInjected.Add(1)
		s.fail(w, a, apiErr{status: http.StatusInternalServerError, code: "simulated_failure", msg: "simulated upstream failure"})
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
