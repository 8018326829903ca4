package clusterapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/fleet"
)

// GET /v1/cluster/events: a server-sent event stream of the edge's view of
// the fleet, for the console (edge/console) and anything else that wants
// to watch rather than poll.
//
// One hub per API computes a compact summary of the snapshot (hosts and
// their liveness, services with health, cooldown, probe, loaded models and
// reported load, the pushed bundle, this edge's policy and why it is
// degraded) and publishes it
// as an event when it differs from the last one. It recomputes on every
// snapshot change, at the next entry deadline or cooldown end in the
// snapshot (expiry announces nothing, so a host whose heartbeat stopped
// turns down at its deadline, not at the next resync), and once a second
// while a stream is open (this edge's policy reloads).
//
// A stream costs one goroutine — the connection's own: the body is written
// by WriteTo from fasthttp's connection goroutine — and no buffer of its
// own: every stream writes the hub's latest event (one shared immutable
// slice), so a slow reader skips the states it was too slow for (coalesced)
// and one that stops reading is dropped when a write passes WriteTimeout.
// A client that hangs up frees its slot within eventsGoneCheck: the
// stream peeks at its connection (edge.ClientGone, no goroutine, no read)
// rather than wait for a write to fail, which on a quiet fleet is the
// keepalive's, up to eventsKeepalive later; a console reloaded a few times
// would otherwise hold every slot. Where peeking is not possible (TLS,
// non-unix) the next write notices.
// At most MaxEventStreams streams are open per edge (503 beyond). Streams
// end when the edge starts to stop (Deps.Stopping) with a final "shutdown"
// event, so the graceful drain never waits for them.

// Event stream defaults.
const (
	// DefaultMaxEventStreams caps the open event streams per edge.
	DefaultMaxEventStreams = 64
	// eventsKeepalive is the interval of the comment line that keeps idle
	// proxies from closing a quiet stream; it is also how long a client
	// that left may hold its slot where eventsGoneCheck cannot see it
	// (a write notices it).
	eventsKeepalive = 15 * time.Second
	// eventsGoneCheck is how often a stream peeks at its client's
	// connection for a hang-up (edge.ClientGone), to free its slot.
	eventsGoneCheck = time.Second
	// eventsWriteTimeout bounds each write to a stream's client.
	eventsWriteTimeout = 10 * time.Second
	// eventsTick is how often the summary is recomputed while a stream is
	// open, for what no snapshot change announces (this edge's policy).
	eventsTick = time.Second
)

// eventHost is a host in the summary.
type eventHost struct {
	ID   string      `json:"id"`
	Live bool        `json:"live"`
	GPUs []fleet.GPU `json:"gpus,omitempty"`
}

// eventService is a service in the summary.
type eventService struct {
	ID         string   `json:"id"`
	Host       string   `json:"host"`
	Live       bool     `json:"live"`
	Healthy    bool     `json:"healthy"`
	Routable   bool     `json:"routable"`
	Cooldown   bool     `json:"cooldown,omitempty"`
	ProbeOK    *bool    `json:"probe_ok,omitempty"`
	Loaded     []string `json:"loaded"`
	QueueDepth int      `json:"queue_depth"`
	InFlight   int      `json:"in_flight"`
}

// eventSummary is the data of a "snapshot" event.
type eventSummary struct {
	Edge           string         `json:"edge,omitempty"`
	Degraded       []edge.Problem `json:"degraded,omitempty"` // why this edge is degraded (health's edge.degraded)
	RedisOK        bool           `json:"redis_ok"`
	CatalogVersion string         `json:"catalog_version,omitempty"`
	Hosts          []eventHost    `json:"hosts"`
	Services       []eventService `json:"services"`
	Bundle         string         `json:"bundle_version,omitempty"`
	Policy         *PolicyStatus  `json:"policy,omitempty"`
}

// hub publishes the latest summary event to the streams.
type hub struct {
	max     int
	wt      time.Duration // per-write deadline (eventsWriteTimeout)
	ka      time.Duration // keepalive interval (eventsKeepalive)
	gc      time.Duration // hang-up check interval (eventsGoneCheck)
	open    atomic.Int64
	started atomic.Bool // RunEvents is running: streams may open

	mu     sync.Mutex
	seq    uint64
	data   []byte        // the latest summary JSON (without the seq)
	event  []byte        // the latest event, framed; never mutated once published
	notify chan struct{} // closed and replaced when event changes
	done   chan struct{} // closed when Run returns
}

func newHub(max int) *hub {
	return &hub{max: max, wt: eventsWriteTimeout, ka: eventsKeepalive, gc: eventsGoneCheck, notify: make(chan struct{}), done: make(chan struct{})}
}

// latest returns the current event, its sequence number and the channel
// closed when it is replaced.
func (h *hub) latest() ([]byte, uint64, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.event, h.seq, h.notify
}

// publish frames data as the next event when it differs from the last.
func (h *hub) publish(data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.event != nil && bytes.Equal(data, h.data) {
		return
	}
	h.seq++
	ev := make([]byte, 0, len(data)+48)
	ev = append(ev, "id: "...)
	ev = strconv.AppendUint(ev, h.seq, 10)
	ev = append(ev, "\nevent: snapshot\ndata: "...)
	ev = append(ev, data...) // encoding/json output has no raw newline
	ev = append(ev, "\n\n"...)
	h.data, h.event = data, ev
	close(h.notify)
	h.notify = make(chan struct{})
}

// summary is the event data for snap at now.
func (a *API) summary(snap *fleet.Snapshot, now time.Time) []byte {
	s := eventSummary{RedisOK: snap.RedisOK, CatalogVersion: snap.CatalogVersion,
		Hosts: make([]eventHost, 0, len(snap.Hosts)), Services: make([]eventService, 0, len(snap.Services))}
	if a.d.Health != nil {
		h := a.d.Health()
		s.Edge, s.Degraded = h.ID, h.Degraded
	}
	for _, h := range snap.Hosts {
		s.Hosts = append(s.Hosts, eventHost{ID: h.ID, Live: now.Before(h.Expiry()), GPUs: h.GPUs()})
	}
	sort.Slice(s.Hosts, func(i, j int) bool { return s.Hosts[i].ID < s.Hosts[j].ID })
	for _, se := range snap.Services {
		m := se.Metrics() // one load: one report's figures
		v := eventService{ID: se.ID, Host: se.HostID, Live: se.Live(now), Healthy: se.IsHealthy(), Routable: se.Routable(now),
			Cooldown: se.InCooldown(now), Loaded: []string{}, QueueDepth: m.QueueDepth, InFlight: m.InFlight}
		if se.Probe != nil {
			ok := se.Probe.Healthy
			v.ProbeOK = &ok
		}
		for _, as := range se.Assets {
			if as.Loaded {
				v.Loaded = append(v.Loaded, as.Name)
			}
		}
		s.Services = append(s.Services, v)
	}
	sort.Slice(s.Services, func(i, j int) bool { return s.Services[i].ID < s.Services[j].ID })
	if snap.Policy != nil {
		s.Bundle = snap.Policy.Version
	}
	if a.d.Policy != nil {
		p := a.d.Policy()
		p.LoadedAt = time.Time{} // the version says it changed; the time would not change alone
		s.Policy = &p
	}
	b, _ := json.Marshal(s) // plain values: cannot fail
	return b
}

// nextDeadline is the first instant after now at which an entry of snap
// turns non-live or a cooldown ends (zero when none).
func nextDeadline(snap *fleet.Snapshot, now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, h := range snap.Hosts {
		consider(h.Expiry())
	}
	for _, se := range snap.Services {
		consider(se.Expiry())
		consider(se.CooldownUntil)
	}
	return next
}

// RunEvents keeps the event stream hub current until ctx ends: call it
// once, beside the edge (edge/replica does). Until it runs,
// /v1/cluster/events answers 503.
func (a *API) RunEvents(ctx context.Context) {
	h := a.ev
	h.started.Store(true)
	defer close(h.done)
	var changes <-chan *fleet.Snapshot
	if a.d.Changes != nil {
		changes = a.d.Changes
	}
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	tick := time.NewTicker(eventsTick)
	defer tick.Stop()
	for {
		now := time.Now()
		snap := a.d.Snapshot()
		listening := h.open.Load() > 0
		if ev, _, _ := h.latest(); listening || ev == nil {
			// Nobody listening: nothing to keep fresh (a stream that
			// opens publishes the current state itself).
			h.publish(a.summary(snap, now))
		}
		deadline.Stop()
		// Only while a stream is open: the scan visits every host and
		// service, and snapshots change with every heartbeat (it was a
		// third of an idle edge's CPU under a 1,000-node fleet's churn,
		// docs/CAPACITY.md). A stream that opens is covered from the
		// next change or tick (eventsTick) on.
		if listening {
			if next := nextDeadline(snap, now); !next.IsZero() {
				// A hair past the deadline: Live is now.Before(deadline).
				deadline.Reset(next.Sub(now) + time.Millisecond)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-deadline.C:
		case <-tick.C:
		}
	}
}

// events serves GET /v1/cluster/events.
func (a *API) events(ctx *fasthttp.RequestCtx) {
	h := a.ev
	if a.stopping() || !h.started.Load() {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server_error", "shutting_down", "",
			"this edge is not serving event streams now (starting or stopping); retry on another replica")
		return
	}
	if h.open.Add(1) > int64(h.max) {
		h.open.Add(-1)
		ctx.Response.Header.Set("Retry-After", "5")
		writeError(ctx, fasthttp.StatusServiceUnavailable, "server_error", "too_many_streams", "",
			"this edge serves at most "+strconv.Itoa(h.max)+" event streams; retry later or on another replica")
		return
	}
	// The stream starts from the state as of now, not as of the last
	// publication (the hub does not recompute while nobody listens).
	h.publish(a.summary(a.d.Snapshot(), time.Now()))
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	// The stream holds the connection until it ends; never reuse it after.
	ctx.SetConnectionClose()
	ctx.SetBodyStream(&eventStream{h: h, conn: ctx.Conn(), stop: a.d.Stopping}, -1)
}

func (a *API) stopping() bool {
	if a.d.Stopping == nil {
		return false
	}
	select {
	case <-a.d.Stopping:
		return true
	default:
		return false
	}
}

// eventStream is one open event stream: fasthttp writes it with WriteTo
// from the connection's goroutine. Close (called by fasthttp when the
// response ends, written or not) frees its slot.
type eventStream struct {
	h      *hub
	conn   net.Conn
	stop   <-chan struct{}
	closed atomic.Bool
}

// SupportsBodyWriteTo makes fasthttp call WriteTo, each Write one flushed
// chunk.
func (e *eventStream) SupportsBodyWriteTo() bool { return true }

// Read is never used (fasthttp writes the stream with WriteTo).
func (e *eventStream) Read([]byte) (int, error) {
	return 0, errors.New("clusterapi: the event stream is written with WriteTo")
}

// Close frees the stream's slot; idempotent.
func (e *eventStream) Close() error {
	if e.closed.CompareAndSwap(false, true) {
		e.h.open.Add(-1)
	}
	return nil
}

// retryLine tells EventSource clients to reconnect after 2s.
var retryLine = []byte("retry: 2000\n\n")
var keepaliveLine = []byte(": keepalive\n\n")
var shutdownEvent = []byte("event: shutdown\ndata: {\"reason\":\"edge stopping\"}\n\n")

// errStreamClientGone ends a stream whose client hung up. It wraps
// io.ErrUnexpectedEOF because fasthttp's server logs every error of a
// connection except those whose text names a hang-up ("broken pipe",
// "reset by peer", "unexpected EOF", workerpool.go), and a console
// reloaded is no error worth a log line.
var errStreamClientGone = fmt.Errorf("clusterapi: event stream client hung up: %w", io.ErrUnexpectedEOF)

// WriteTo writes the current event, then each newer one, until the edge
// stops, the hub stops, the client hangs up (seen by a peek every
// eventsGoneCheck) or a write fails (the client left, or did not read for
// eventsWriteTimeout).
func (e *eventStream) WriteTo(w io.Writer) (int64, error) {
	defer e.Close()
	var n int64
	write := func(b []byte) error {
		if e.conn != nil {
			_ = e.conn.SetWriteDeadline(time.Now().Add(e.h.wt))
		}
		m, err := w.Write(b)
		n += int64(m)
		return err
	}
	ev, seq, notify := e.h.latest()
	first := append(append([]byte(nil), retryLine...), ev...)
	if err := write(first); err != nil {
		return n, err
	}
	keep := time.NewTicker(e.h.ka)
	defer keep.Stop()
	var check <-chan time.Time
	if e.conn != nil {
		gc := time.NewTicker(e.h.gc)
		defer gc.Stop()
		check = gc.C
	}
	for {
		select {
		case <-e.stop:
			return n, write(shutdownEvent)
		case <-e.h.done:
			return n, write(shutdownEvent)
		case <-check:
			if edge.ClientGone(e.conn) {
				return n, errStreamClientGone
			}
		case <-keep.C:
			if err := write(keepaliveLine); err != nil {
				return n, err
			}
		case <-notify:
			var s uint64
			ev, s, notify = e.h.latest()
			if s == seq {
				continue
			}
			seq = s
			if err := write(ev); err != nil {
				return n, err
			}
		}
	}
}
