package tracing

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Provider is a span recorder behind the OpenTelemetry trace API
// (trace.TracerProvider) that hands its ended spans, in batches, to an
// OpenTelemetry SDK exporter (sdktrace.SpanExporter: the OTLP ones in
// production, tracetest's in-memory one in tests).
//
// # Why not the SDK's TracerProvider
// The SDK's recording span costs the edge about 1.3 µs per span, some
// 7 µs per request (server span and four children) at 32 clients, 12-20%
// of its throughput with a zero-latency upstream (BenchmarkTracingOverhead):
// a heap snapshot of every span at its end, an attribute map per span,
// a channel send per span into the batch processor's single queue, a
// locked math/rand for every ID. Provider records a span once, in one
// object that is itself the sdktrace.ReadOnlySpan the exporter reads (no
// snapshot), draws IDs from math/rand/v2's per-thread generator, and
// queues ended spans in sharded, mutex-guarded buffers (no channel send,
// little contention) that one goroutine drains into export batches. A
// caller that knows its spans' shape records them cheaper still, as one
// Request (request.go), which the export goroutine expands into spans.
//
// # What it keeps of the SDK
// The samplers (any sdktrace.Sampler; FromEnv reads OTEL_TRACES_SAMPLER
// as the SDK does), the exporters, the resource, span limits of 128
// attributes, events and links per span (the SDK's defaults; past them
// attributes are dropped and counted, the oldest events and links
// evicted), the batch processor's semantics (a bounded queue: spans past
// it are dropped, never waited for; a batch is exported when full or
// ScheduleDelay after the last export; ForceFlush and Shutdown export
// what is queued) and its OTEL_BSP_* variables.
type Provider struct {
	embedded.TracerProvider

	sampler  sdktrace.Sampler
	sampling int // alwaysOn, parentOrOn: sampler is one of those, decided without a call
	res      *resource.Resource
	exp      sdktrace.SpanExporter
	recycle  bool // the exporter keeps nothing of a span after ExportSpans
	timeout  time.Duration
	delay    time.Duration
	batch    int

	shards  []shard
	mask    uint64
	wakeAt  int // spans in a shard that wake the export goroutine: its share of a batch
	kick    chan struct{}
	flush   chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	stopped atomic.Bool
	dropped atomic.Uint64
	once    sync.Once

	tracers sync.Map // scope key -> *tracer

	// The export goroutine's: a shard's items while it exports them, and
	// the records Requests are expanded into (xrecs[:xn] in the batch
	// under way; reused after its export when recycle).
	taken []item
	xrecs []*record
	xn    int
}

// Options configures a Provider; zero fields take the SDK's defaults.
type Options struct {
	// Sampler decides which spans are recorded and exported
	// (default sdktrace.ParentBased(sdktrace.AlwaysSample())).
	Sampler sdktrace.Sampler
	// Resource describes the process (default resource.Default()).
	Resource *resource.Resource
	// MaxQueueSize bounds the spans waiting for export (2048); past it
	// spans are dropped.
	MaxQueueSize int
	// MaxExportBatchSize bounds one export (512).
	MaxExportBatchSize int
	// ScheduleDelay is the longest a queued span waits for export (5 s).
	ScheduleDelay time.Duration
	// ExportTimeout bounds one export call (30 s).
	ExportTimeout time.Duration
}

// The SDK's span limits (sdktrace.NewSpanLimits' defaults).
const (
	attrLimit  = 128
	eventLimit = 128
	linkLimit  = 128
)

// shard is one of the queue's buffers; padded so two shards' locks do
// not share a cache line.
type shard struct {
	mu    sync.Mutex
	items []item // cap: the shard's share of MaxQueueSize, in spans
	spans int    // the spans of items (a Request's count as many as it has)
	_     [64]byte
}

// item is an ended span (r) or an ended Request (q) waiting for export.
type item struct {
	r *record
	q *Request
}

// The samplers Provider decides for itself, as they would (the default
// one and always_on: the SDK's ShouldSample looks the parent up in the
// context again).
const (
	otherSampler = iota
	alwaysOn
	parentOrOn
)

func samplingOf(s sdktrace.Sampler) int {
	switch s.Description() {
	case sdktrace.AlwaysSample().Description():
		return alwaysOn
	case sdktrace.ParentBased(sdktrace.AlwaysSample()).Description():
		return parentOrOn
	}
	return otherSampler
}

// SpanCopier is an exporter that says whether it keeps nothing of the
// spans ExportSpans is given once it returns (so that their memory can
// be reused). The OTLP exporters need not say: they copy every span into
// its protobuf message before sending (otlptrace.Exporter.ExportSpans,
// tracetransform.Spans). Others that do not say are taken to keep them
// (tracetest.InMemoryExporter keeps their attribute slices).
type SpanCopier interface {
	CopiesSpans() bool
}

func keepsNothing(exp sdktrace.SpanExporter) bool {
	if _, ok := exp.(*otlptrace.Exporter); ok {
		return true
	}
	c, ok := exp.(SpanCopier)
	return ok && c.CopiesSpans()
}

// NewProvider returns a Provider exporting to exp, and starts its export
// goroutine (Shutdown stops it).
func NewProvider(exp sdktrace.SpanExporter, o Options) *Provider {
	if o.Sampler == nil {
		o.Sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	if o.Resource == nil {
		o.Resource = resource.Default()
	}
	if o.MaxQueueSize <= 0 {
		o.MaxQueueSize = 2048
	}
	if o.MaxExportBatchSize <= 0 {
		o.MaxExportBatchSize = 512
	}
	o.MaxExportBatchSize = min(o.MaxExportBatchSize, o.MaxQueueSize)
	if o.ScheduleDelay <= 0 {
		o.ScheduleDelay = 5 * time.Second
	}
	if o.ExportTimeout <= 0 {
		o.ExportTimeout = 30 * time.Second
	}
	// A power of two of shards, about four per P, each holding its share
	// of the queue (at least 8 spans).
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && n < 64 {
		n <<= 1
	}
	per := max(o.MaxQueueSize/n, 8)
	p := &Provider{
		sampler: o.Sampler, sampling: samplingOf(o.Sampler), res: o.Resource, exp: exp, recycle: keepsNothing(exp),
		timeout: o.ExportTimeout, delay: o.ScheduleDelay, batch: o.MaxExportBatchSize,
		shards: make([]shard, n), mask: uint64(n - 1),
		kick: make(chan struct{}, 1), flush: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for i := range p.shards {
		p.shards[i].items = make([]item, 0, per)
	}
	p.taken = make([]item, 0, per)
	// The export goroutine is woken when a shard holds its share of a
	// batch (the shards fill evenly: about a batch is queued then), as the
	// SDK's batch processor exports once a batch is queued; at most half
	// a shard, so that a burst into one shard is exported before the
	// shard is full.
	p.wakeAt = max(1, min(per/2, o.MaxExportBatchSize/n))
	go p.run()
	return p
}

// Tracer returns the tracer of an instrumentation scope.
func (p *Provider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	c := trace.NewTracerConfig(opts...)
	key := name + "\x00" + c.InstrumentationVersion() + "\x00" + c.SchemaURL()
	if t, ok := p.tracers.Load(key); ok {
		return t.(*tracer)
	}
	t, _ := p.tracers.LoadOrStore(key, &tracer{p: p, scope: instrumentation.Scope{
		Name: name, Version: c.InstrumentationVersion(), SchemaURL: c.SchemaURL(), Attributes: c.InstrumentationAttributes()}})
	return t.(*tracer)
}

// Dropped is how many ended, sampled spans were not exported: turned away
// by the full queue, or ended after Shutdown began.
func (p *Provider) Dropped() uint64 { return p.dropped.Load() }

// enqueue queues an ended, sampled span for export, or drops it (and
// counts it) when its shard is full or the provider shut down.
func (p *Provider) enqueue(r *record) {
	if !p.queue(item{r: r}, uint64(r.sc.SpanID()[7]), 1) && p.recycle {
		r.release()
	}
}

// enqueueRequest queues an ended, sampled Request for export, or drops
// its spans (and counts them) and gives it back to its owner.
func (p *Provider) enqueueRequest(r *Request) {
	if !p.queue(item{q: r}, uint64(r.spans[0].id[7]), len(r.spans)) {
		r.owner.Release()
	}
}

// queue puts it, n spans, in the shard key picks when the shard has room
// for them, and reports whether it did; else the spans are counted
// dropped. stopped is read under the shard's lock: Shutdown sets it
// before the last drain locks each shard, so a span is either queued
// before that drain takes its shard (and exported) or sees stopped (and
// is counted dropped), never queued after it and lost.
func (p *Provider) queue(it item, key uint64, n int) bool {
	sh := &p.shards[key&p.mask]
	sh.mu.Lock()
	stopped, had, room := p.stopped.Load(), sh.spans, cap(sh.items)
	ok := !stopped && had+n <= room
	if ok {
		sh.items = append(sh.items, it)
		sh.spans += n
	}
	sh.mu.Unlock()
	if !ok {
		p.dropped.Add(uint64(n))
	}
	// A shard's share of a batch queued (or a full shard): time to export.
	if (ok && had < p.wakeAt && had+n >= p.wakeAt) || (!ok && !stopped) {
		p.wake()
	}
	return ok
}

func (p *Provider) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run exports the queue when told (a shard holding its share of a batch, ForceFlush,
// Shutdown) or ScheduleDelay after its last export.
func (p *Provider) run() {
	defer close(p.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, p.batch)
	t := time.NewTimer(p.delay)
	defer t.Stop()
	for {
		select {
		case <-p.kick:
		case <-t.C:
		case reply := <-p.flush:
			batch = p.drain(batch)
			close(reply)
			continue
		case <-p.stop:
			p.drain(batch)
			return
		}
		batch = p.drain(batch)
		t.Reset(p.delay)
	}
}

// drain exports every queued span in batches of at most
// MaxExportBatchSize: each shard's items taken at once (the shard's lock
// held for a copy), Requests expanded into spans as they come.
func (p *Provider) drain(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		p.taken = append(p.taken[:0], sh.items...)
		clear(sh.items)
		sh.items, sh.spans = sh.items[:0], 0
		sh.mu.Unlock()
		for _, it := range p.taken {
			if it.q != nil {
				batch = p.expand(it.q, batch)
				continue
			}
			batch = append(batch, it.r)
			if len(batch) == cap(batch) {
				batch = p.export(batch)
			}
		}
		clear(p.taken)
	}
	if len(batch) > 0 {
		batch = p.export(batch)
	}
	return batch
}

// export hands batch to the exporter, then lets go of its spans: the API's
// records back to their pool, the expanded ones to be reused (when the
// exporter keeps nothing of them).
func (p *Provider) export(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	if err := p.exp.ExportSpans(ctx, batch); err != nil {
		otel.Handle(err)
	}
	cancel()
	if p.recycle {
		for _, r := range batch {
			if r := r.(*record); !r.expanded {
				r.release()
			}
		}
		p.xn = 0
	}
	clear(batch)
	return batch[:0]
}

// ForceFlush exports every span (and Request) ended before it was called.
func (p *Provider) ForceFlush(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case p.flush <- reply:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, stops the export goroutine and shuts
// the exporter down; a span that ends while it runs is either exported
// or counted in Dropped, and spans that end after it are counted there.
func (p *Provider) Shutdown(ctx context.Context) error {
	var err error
	p.once.Do(func() {
		p.stopped.Store(true) // before the last drain: see enqueue
		close(p.stop)
		select {
		case <-p.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if e := p.exp.Shutdown(ctx); err == nil {
			err = e
		}
	})
	return err
}

// tracer is one instrumentation scope's tracer.
type tracer struct {
	embedded.Tracer
	p     *Provider
	scope instrumentation.Scope
}

// newIDs returns a random, non-zero span ID, and a random, non-zero trace
// ID when the parent has none (W3C Trace Context: both random, neither
// all zeroes). math/rand/v2's top-level functions use the runtime's
// per-thread ChaCha8 generator, seeded by the runtime: no lock.
func newIDs(tid trace.TraceID) (trace.TraceID, trace.SpanID) {
	var sid trace.SpanID
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
	}
	for !sid.IsValid() {
		sid = newSpanID()
	}
	return tid, sid
}

// newSpanID returns a random span ID (zero once in 2^64: callers loop).
func newSpanID() (sid trace.SpanID) {
	binary.BigEndian.PutUint64(sid[:], rand.Uint64()) // one store, not eight
	return sid
}

// Start opens a span, the child of ctx's span when it has one, as the
// SDK's tracer does (tracer.newSpan): the parent's trace ID or a new one,
// always a new span ID, the sampler's decision in the flags.
func (t *tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	c := trace.NewSpanStartConfig(opts...)
	if c.NewRoot() {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	}
	sp := t.start(ctx, name, &c)
	return trace.ContextWithSpan(ctx, sp), sp
}

func (t *tracer) start(ctx context.Context, name string, c *trace.SpanConfig) trace.Span {
	ps := trace.SpanFromContext(ctx)
	psc := ps.SpanContext()
	tid, sid := newIDs(psc.TraceID())
	sr, flags := t.p.decide(ctx, psc, sdktrace.SamplingParameters{TraceID: tid, Name: name,
		Kind: c.SpanKind(), Attributes: c.Attributes(), Links: c.Links()})
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: sr.Tracestate})
	if sr.Decision == sdktrace.Drop {
		return &nonRecording{sc: sc, p: t.p}
	}
	start := c.Timestamp()
	if start.IsZero() {
		start = time.Now()
	}
	s, r := new(span), newRecord()
	r.t, r.name, r.sc, r.parent, r.kind, r.start = t, name, sc, psc, trace.ValidateSpanKind(c.SpanKind()), start
	if parent, ok := ps.(*span); ok {
		parent.children.Add(1)
	}
	for _, l := range c.Links() {
		r.addLink(l)
	}
	r.setAttributes(sr.Attributes)
	r.setAttributes(c.Attributes())
	s.sc, s.p, s.r = sc, t.p, r
	return s
}

// decide is the sampler's decision for a span whose parent is psc, and
// the span's trace flags (psc's, sampled or not as decided). The default
// sampler and always_on are decided in place, as they would decide (the
// SDK's ShouldSample looks the parent up in the context again); another
// sampler is asked with sp, its ParentContext ctx, or, when ctx is nil, a
// context of psc as a remote parent (built only then).
func (p *Provider) decide(ctx context.Context, psc trace.SpanContext, sp sdktrace.SamplingParameters) (sdktrace.SamplingResult, trace.TraceFlags) {
	sr := sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample, Tracestate: psc.TraceState()}
	switch p.sampling {
	case alwaysOn: // what AlwaysSample().ShouldSample returns
	case parentOrOn: // ParentBased(AlwaysSample())'s
		if psc.IsValid() && !psc.IsSampled() {
			sr.Decision = sdktrace.Drop
		}
	default:
		if ctx == nil {
			ctx = context.Background()
			if psc.IsValid() {
				ctx = trace.ContextWithRemoteSpanContext(ctx, psc)
			}
		}
		sp.ParentContext = ctx
		sr = p.sampler.ShouldSample(sp)
	}
	flags := psc.TraceFlags() &^ trace.FlagsSampled
	if sr.Decision == sdktrace.RecordAndSample {
		flags |= trace.FlagsSampled
	}
	return sr, flags
}

// span is the recording span a caller holds: its span context and, until
// it ends, the record its calls write to. At End the record goes to the
// export queue and the span lets go of it, so whatever a caller does with
// the span afterwards (the API allows any call; they do nothing) never
// touches a record that was exported and perhaps recycled.
type span struct {
	embedded.Span
	sc       trace.SpanContext
	p        *Provider
	children atomic.Int32 // for ChildSpanCount, set at End
	mu       sync.Mutex
	r        *record // nil once ended
}

var _ trace.Span = (*span)(nil)

// record is what a span records, and once ended the sdktrace.ReadOnlySpan
// the exporter reads (the embedded ReadOnlySpan is nil: it only supplies
// the interface's unexported method; record defines every exported one).
// Records come from a pool and go back to it after their export when the
// exporter keeps nothing of them (Provider.recycle).
type record struct {
	sdktrace.ReadOnlySpan

	t            *tracer
	sc, parent   trace.SpanContext
	kind         trace.SpanKind
	name         string
	start, end   time.Time
	attrs        []attribute.KeyValue // attrBuf's until past it
	attrBuf      [8]attribute.KeyValue
	droppedAttrs int
	events       []sdktrace.Event
	droppedEvs   int
	links        []sdktrace.Link
	droppedLinks int
	children     int
	status       sdktrace.Status
	expanded     bool // a Request's span (Provider.expand): the export goroutine's, not the pool's
}

var _ sdktrace.ReadOnlySpan = (*record)(nil)

var records = sync.Pool{New: func() any {
	r := new(record)
	r.attrs = r.attrBuf[:0]
	return r
}}

// newRecord returns a record to fill: start sets every field it does not
// zero itself.
func newRecord() *record {
	return records.Get().(*record)
}

// free returns r to the pool, zeroed but for attrBuf past the attributes
// r used (already zero: zeroing all of it is what costs).
func (r *record) free() {
	if len(r.attrs) > len(r.attrBuf) {
		clear(r.attrBuf[:]) // spilled to the heap: attrBuf was full
	} else {
		clear(r.attrs)
	}
	r.ReadOnlySpan, r.t, r.sc, r.parent, r.kind, r.name = nil, nil, trace.SpanContext{}, trace.SpanContext{}, 0, ""
	r.start, r.end, r.attrs, r.droppedAttrs = time.Time{}, time.Time{}, r.attrBuf[:0], 0
	r.events, r.droppedEvs, r.links, r.droppedLinks, r.children, r.status = nil, 0, nil, 0, 0, sdktrace.Status{}
	records.Put(r)
}

// release lets go of an exported (or dropped, or unsampled) record,
// cleared into the record pool.
func (r *record) release() { r.free() }

// SetAttributes adds kv, replacing an attribute of the same key (the
// last value wins, as in the SDK); invalid ones and those past the limit
// are dropped and counted.
func (s *span) SetAttributes(kv ...attribute.KeyValue) {
	if len(kv) == 0 {
		return
	}
	s.mu.Lock()
	if s.r != nil {
		s.r.setAttributes(kv)
	}
	s.mu.Unlock()
}

func (r *record) setAttributes(kv []attribute.KeyValue) {
	if len(r.attrs) == 0 && len(kv) <= attrLimit && distinctValid(kv) {
		// The common case (the edge's spans get all their attributes in
		// one call): one bulk copy, not one per attribute.
		r.attrs = append(r.attrs, kv...)
		return
	}
next:
	for _, a := range kv {
		if !a.Valid() {
			r.droppedAttrs++
			continue
		}
		for i := range r.attrs {
			if r.attrs[i].Key == a.Key {
				r.attrs[i] = a
				continue next
			}
		}
		if len(r.attrs) == attrLimit {
			r.droppedAttrs++
			continue
		}
		r.attrs = append(r.attrs, a)
	}
}

// distinctValid reports whether every attribute of kv is valid and of a
// key no other has.
func distinctValid(kv []attribute.KeyValue) bool {
	for i := range kv {
		if !kv[i].Valid() {
			return false
		}
		for j := range i {
			if kv[j].Key == kv[i].Key {
				return false
			}
		}
	}
	return true
}

// SetStatus sets the status as the SDK does: Ok is final, Error replaces
// Unset, a description is kept for Error only.
func (s *span) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	if s.r != nil {
		s.r.setStatus(code, description)
	}
	s.mu.Unlock()
}

func (r *record) setStatus(code codes.Code, description string) {
	if r.status.Code > code {
		return
	}
	st := sdktrace.Status{Code: code}
	if code == codes.Error {
		st.Description = description
	}
	r.status = st
}

func (s *span) SetName(name string) {
	s.mu.Lock()
	if s.r != nil {
		s.r.name = name
	}
	s.mu.Unlock()
}

func (s *span) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r != nil
}

func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	c := trace.NewEventConfig(opts...)
	ts := c.Timestamp()
	if ts.IsZero() {
		ts = time.Now()
	}
	attrs := c.Attributes()
	dropped := 0
	if len(attrs) > attrLimit {
		dropped, attrs = len(attrs)-attrLimit, attrs[:attrLimit]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.r
	if r == nil {
		return
	}
	if len(r.events) == eventLimit {
		r.events = append(r.events[:0], r.events[1:]...)
		r.droppedEvs++
	}
	r.events = append(r.events, sdktrace.Event{Name: name, Attributes: attrs, DroppedAttributeCount: dropped, Time: ts})
}

func (s *span) AddLink(l trace.Link) {
	s.mu.Lock()
	if s.r != nil {
		s.r.addLink(l)
	}
	s.mu.Unlock()
}

func (r *record) addLink(l trace.Link) {
	if !l.SpanContext.IsValid() && len(l.Attributes) == 0 {
		return
	}
	attrs, dropped := l.Attributes, 0
	if len(attrs) > attrLimit {
		dropped, attrs = len(attrs)-attrLimit, attrs[:attrLimit]
	}
	if len(r.links) == linkLimit {
		r.links = append(r.links[:0], r.links[1:]...)
		r.droppedLinks++
	}
	r.links = append(r.links, sdktrace.Link{SpanContext: l.SpanContext, Attributes: attrs, DroppedAttributeCount: dropped})
}

// RecordError adds the "exception" event the SDK adds for err.
func (s *span) RecordError(err error, opts ...trace.EventOption) {
	if err == nil || !s.IsRecording() {
		return
	}
	opts = append(opts, trace.WithAttributes(attribute.String("exception.type", typeStr(err)),
		attribute.String("exception.message", err.Error())))
	if c := trace.NewEventConfig(opts...); c.StackTrace() {
		opts = append(opts, trace.WithAttributes(attribute.String("exception.stacktrace", string(debug.Stack()))))
	}
	s.AddEvent("exception", opts...)
}

func typeStr(i any) string {
	t := reflect.TypeOf(i)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// End ends the span (once; later calls do nothing) and queues its record
// for export when sampled. Deferred, it records a panic under way as an
// "exception" event, as the SDK's does, and lets the panic go on.
func (s *span) End(opts ...trace.SpanEndOption) {
	if recovered := recover(); recovered != nil {
		defer panic(recovered)
		s.endPanic(recovered, opts)
		return
	}
	s.endWith(time.Time{}, opts)
}

// endPanic ends s while recovered is under way, with its "exception" event.
func (s *span) endPanic(recovered any, opts []trace.SpanEndOption) {
	et := time.Now() // the end, before the event
	s.AddEvent("exception", trace.WithAttributes(attribute.String("exception.type", typeStr(recovered)),
		attribute.String("exception.message", fmt.Sprint(recovered))))
	s.endWith(et, opts)
}

// endWith ends s at et (zero: now), or at opts' timestamp when it has one.
func (s *span) endWith(et time.Time, opts []trace.SpanEndOption) {
	if len(opts) > 0 {
		if c := trace.NewSpanEndConfig(opts...); !c.Timestamp().IsZero() {
			et = c.Timestamp()
		}
	}
	s.end(et)
}

// end ends the span at et (zero: now; once).
func (s *span) end(et time.Time) {
	s.mu.Lock()
	r := s.r
	s.r = nil
	s.mu.Unlock()
	if r != nil {
		s.finish(r, et)
	}
}

// finish ends s, whose record r it has just let go of, at et (zero: now).
func (s *span) finish(r *record, et time.Time) {
	if et.IsZero() {
		et = time.Now()
	}
	r.end, r.children = et, int(s.children.Load())
	if s.sc.IsSampled() {
		s.p.enqueue(r)
	} else if s.p.recycle {
		r.release()
	}
}

func (s *span) SpanContext() trace.SpanContext       { return s.sc }
func (s *span) TracerProvider() trace.TracerProvider { return s.p }

// The sdktrace.ReadOnlySpan the exporter reads, after End (no lock: the
// record no longer changes, and the queue's lock orders End before export).

func (r *record) Name() string                                { return r.name }
func (r *record) SpanContext() trace.SpanContext              { return r.sc }
func (r *record) Parent() trace.SpanContext                   { return r.parent }
func (r *record) SpanKind() trace.SpanKind                    { return r.kind }
func (r *record) StartTime() time.Time                        { return r.start }
func (r *record) EndTime() time.Time                          { return r.end }
func (r *record) Attributes() []attribute.KeyValue            { return r.attrs }
func (r *record) Links() []sdktrace.Link                      { return r.links }
func (r *record) Events() []sdktrace.Event                    { return r.events }
func (r *record) Status() sdktrace.Status                     { return r.status }
func (r *record) InstrumentationScope() instrumentation.Scope { return r.t.scope }
func (r *record) Resource() *resource.Resource                { return r.t.p.res }
func (r *record) DroppedAttributes() int                      { return r.droppedAttrs }
func (r *record) DroppedLinks() int                           { return r.droppedLinks }
func (r *record) DroppedEvents() int                          { return r.droppedEvs }
func (r *record) ChildSpanCount() int                         { return r.children }

//nolint:staticcheck // part of ReadOnlySpan
func (r *record) InstrumentationLibrary() instrumentation.Library { return r.t.scope }

// nonRecording is a span the sampler dropped: it carries its span context
// (propagated to children and upstreams) and records nothing.
type nonRecording struct {
	embedded.Span
	sc trace.SpanContext
	p  *Provider
}

func (n *nonRecording) End(...trace.SpanEndOption)              {}
func (n *nonRecording) AddEvent(string, ...trace.EventOption)   {}
func (n *nonRecording) AddLink(trace.Link)                      {}
func (n *nonRecording) IsRecording() bool                       { return false }
func (n *nonRecording) RecordError(error, ...trace.EventOption) {}
func (n *nonRecording) SpanContext() trace.SpanContext          { return n.sc }
func (n *nonRecording) SetStatus(codes.Code, string)            {}
func (n *nonRecording) SetName(string)                          {}
func (n *nonRecording) SetAttributes(...attribute.KeyValue)     {}
func (n *nonRecording) TracerProvider() trace.TracerProvider    { return n.p }
