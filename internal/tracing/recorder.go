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
	"go.opentelemetry.io/otel/trace/noop"
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
// little contention; a request's spans, from one Spans block, in one
// lock) that one goroutine drains into export batches.
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
	kick    chan struct{}
	flush   chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	stopped atomic.Bool
	dropped atomic.Uint64
	once    sync.Once

	tracers sync.Map // scope key -> *tracer

	blocks sync.Pool // *Spans, NewSpans's, back when released and exported
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
	spans []sdktrace.ReadOnlySpan // cap: the shard's share of MaxQueueSize
	_     [64]byte
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
		p.shards[i].spans = make([]sdktrace.ReadOnlySpan, 0, per)
	}
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
	rs := [1]*record{r}
	p.enqueueAll(rs[:])
}

// enqueueAll queues ended, sampled spans (a request's, one lock for all)
// in one shard, as many as it has room for, and drops the rest (counted).
// stopped is read under the shard's lock: Shutdown sets it before the
// last drain locks each shard, so a span is either queued before that
// drain takes its shard (and exported) or sees stopped (and is counted
// dropped), never queued after it and lost.
func (p *Provider) enqueueAll(rs []*record) {
	sh := &p.shards[uint64(rs[len(rs)-1].sc.SpanID()[7])&p.mask]
	sh.mu.Lock()
	stopped, n, k := p.stopped.Load(), len(sh.spans), 0
	if !stopped {
		k = min(len(rs), cap(sh.spans)-n)
	}
	for _, r := range rs[:k] {
		sh.spans = append(sh.spans, r)
	}
	half := n < cap(sh.spans)/2 && n+k >= cap(sh.spans)/2
	full := k < len(rs) && !stopped
	sh.mu.Unlock()
	if k < len(rs) {
		p.dropped.Add(uint64(len(rs) - k))
		for _, r := range rs[k:] {
			p.drop(r)
		}
	}
	// Half a shard queued: time to export, before spans are dropped.
	if half || full {
		p.wake()
	}
}

// drop lets go of a record the queue did not take.
func (p *Provider) drop(r *record) {
	if p.recycle {
		r.release()
	}
}

func (p *Provider) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run exports the queue when told (a shard half full, ForceFlush,
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

// drain exports every queued span in batches of at most MaxExportBatchSize.
func (p *Provider) drain(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	for more := true; more; {
		more = false
		for i := range p.shards {
			sh := &p.shards[i]
			sh.mu.Lock()
			k := copy(batch[len(batch):cap(batch)], sh.spans)
			batch = batch[:len(batch)+k]
			rest := copy(sh.spans, sh.spans[k:])
			clear(sh.spans[rest:])
			sh.spans = sh.spans[:rest]
			sh.mu.Unlock()
			if len(batch) == cap(batch) {
				batch = p.export(batch)
				more = more || rest > 0
			}
		}
	}
	if len(batch) > 0 {
		batch = p.export(batch)
	}
	return batch
}

func (p *Provider) export(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	if err := p.exp.ExportSpans(ctx, batch); err != nil {
		otel.Handle(err)
	}
	cancel()
	if p.recycle {
		for _, r := range batch {
			r.(*record).release()
		}
	}
	clear(batch)
	return batch[:0]
}

// ForceFlush exports every span ended before it was called, but for a
// Spans block's spans still waiting for the block's first span to end
// (see Spans).
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
		binary.BigEndian.PutUint64(sid[:], rand.Uint64()) // one store, not eight
	}
	return tid, sid
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

// StartSpan is Start without the returned context, for a span that has
// no children: the context costs an allocation per span.
func (t *tracer) StartSpan(ctx context.Context, name string, opts ...trace.SpanStartOption) trace.Span {
	c := trace.NewSpanStartConfig(opts...)
	if c.NewRoot() {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
	}
	return t.start(ctx, name, &c)
}

// SpanStarter is a tracer that can open a span without returning its
// context, and with its handle from a caller's Spans block (Provider's
// tracers are; the edge uses StartIn when its provider has it).
type SpanStarter interface {
	StartSpan(ctx context.Context, name string, opts ...trace.SpanStartOption) trace.Span
	StartIn(b *Spans, ctx context.Context, parent trace.Span, name string, at time.Time, c *trace.SpanConfig) trace.Span
	NewSpans() *Spans
}

// Spans is a block of span handles for one request, so that a span costs
// no handle allocation: StartIn takes its handles from the block (past
// its size, from the heap). The block also keeps the first span's start
// (with its monotonic reading): every later timestamp of the request is
// that start plus the monotonic time elapsed, one clock read where
// time.Now takes two (wall and monotonic), the same meaning (what the SDK
// reports is the wall clock; a duration is the monotonic one either way).
//
// A block comes either from a provider's pool (NewSpans; the edge takes
// one per traced request and Releases it with its exchange) or is the
// caller's own (a zero Spans, readied for another request by Reset). A
// pooled block also holds its spans' records: they are exported from the
// block, and the block goes back to the pool once it is released and
// every record of it is exported (or dropped), so a traced request
// allocates nothing, and the export goroutine writes one counter per
// record instead of clearing and pooling each record (whose cache lines
// the request's core then had to fetch back).
//
// A handle is a pointer to one of its slot's generation tags (*tag), not
// to the slot: a slot hands out the next tag each time it is used, and a
// call through a tag other than the slot's current one does nothing, so a
// handle kept past its request by mistake (a goroutine outliving it) does
// not write into a later request's span, unless the slot has been used a
// multiple of genWindow times since. A handle lets go of its record at
// End, as a heap one does, so a late call on an ended span writes nothing.
//
// The block queues a request's spans for export together: a span of the
// block that ends while the block's first span (the request's root) is
// still open waits in the block, and goes to the export queue with the
// first span when it ends (or at Reset or Release), under one lock
// instead of one per span. So ForceFlush does not export such a span
// before its root ends; a root never ended takes its waiting children
// with it, as an unended span is never exported.
type Spans struct {
	base   time.Time
	n      int
	pool   *Provider // the provider whose pool the block is from; nil: the caller's own
	made   int32     // records of the block handed out since NewSpans
	refs   atomic.Int32
	remote nonRecording // Remote's

	mu   sync.Mutex
	open *Provider // h[0]'s while it is open (ended spans of its wait); nil once ended
	held *record   // the ended, sampled spans waiting for h[0]'s end, linked by next

	h   [SpansPerBlock]slot
	rec [SpansPerBlock]record // h[i]'s records, when pooled
}

// genWindow is how many generations a slot's handles tell apart.
const genWindow = 32

// slot is a block's span and its generation tags: tags[gen] is the
// handle of its current span.
type slot struct {
	span
	gen  uint8
	tags [genWindow]tag
}

// tag is a block span's handle: its embedded value is its slot (so the
// handle is one pointer, as trace.Span's interface holds without an
// allocation), and it is the slot's current span's only while it is
// the slot's tags[gen].
type tag struct {
	embedded.Span // *slot
}

// live returns the span t is the handle of, nil when the slot has been
// used again since.
func (t *tag) live() *span {
	sl := t.Span.(*slot)
	if t != &sl.tags[sl.gen] {
		return nil
	}
	return &sl.span
}

// spanOf returns the recording span sp is a handle of: nil when sp is
// another implementation's, a non-recording span, or a stale handle.
func spanOf(sp trace.Span) *span {
	switch s := sp.(type) {
	case *span:
		return s
	case *tag:
		return s.live()
	}
	return nil
}

func (t *tag) SetAttributes(kv ...attribute.KeyValue) {
	if s := t.live(); s != nil {
		s.SetAttributes(kv...)
	}
}
func (t *tag) SetStatus(code codes.Code, description string) {
	if s := t.live(); s != nil {
		s.SetStatus(code, description)
	}
}
func (t *tag) SetName(name string) {
	if s := t.live(); s != nil {
		s.SetName(name)
	}
}
func (t *tag) IsRecording() bool {
	s := t.live()
	return s != nil && s.IsRecording()
}
func (t *tag) AddEvent(name string, opts ...trace.EventOption) {
	if s := t.live(); s != nil {
		s.AddEvent(name, opts...)
	}
}
func (t *tag) AddLink(l trace.Link) {
	if s := t.live(); s != nil {
		s.AddLink(l)
	}
}
func (t *tag) RecordError(err error, opts ...trace.EventOption) {
	if s := t.live(); s != nil {
		s.RecordError(err, opts...)
	}
}

// End is span.End's (recover must be called by the deferred method itself).
func (t *tag) End(opts ...trace.SpanEndOption) {
	s := t.live()
	if recovered := recover(); recovered != nil {
		defer panic(recovered)
		if s != nil {
			s.endPanic(recovered, opts)
		}
		return
	}
	if s != nil {
		s.endWith(time.Time{}, opts)
	}
}
func (t *tag) SpanContext() trace.SpanContext {
	if s := t.live(); s != nil {
		return s.sc
	}
	return trace.SpanContext{}
}
func (t *tag) TracerProvider() trace.TracerProvider {
	if s := t.live(); s != nil {
		return s.p
	}
	return noopProvider{}
}

// Remote returns a span standing for a remote parent, sc (a client's
// traceparent), to pass StartIn as parent: what
// trace.ContextWithRemoteSpanContext would carry, without the context
// (two allocations). It is b's until the next Remote or Reset.
func (b *Spans) Remote(sc trace.SpanContext) trace.Span {
	b.remote = nonRecording{sc: sc.WithRemote(true)}
	return &b.remote
}

// SpansPerBlock is how many spans a Spans block holds: the edge's five
// (four for an answer not streamed) and one failover attempt; a further
// attempt's handle comes from the heap.
const SpansPerBlock = 6

// NewSpans returns a block from the provider's pool, for one request,
// to give back with Release. When the exporter keeps the spans it is
// given (not Provider's recycling), the block is a new one, never reused.
func (t *tracer) NewSpans() *Spans { return t.p.NewSpans() }

// NewSpans: see tracer.NewSpans.
func (p *Provider) NewSpans() *Spans {
	if !p.recycle {
		return new(Spans)
	}
	b, _ := p.blocks.Get().(*Spans)
	if b == nil {
		return &Spans{pool: p}
	}
	b.n, b.made, b.base, b.remote = 0, 0, time.Time{}, nonRecording{}
	return b
}

// Release gives a block from NewSpans back: queued, its spans still
// waiting for its first one (as Reset does), and back in the pool once
// every record of it is exported. The caller's handles of it do nothing
// once their slots are used again.
func (b *Spans) Release() {
	b.mu.Lock()
	r, p := b.held, b.open
	b.held, b.open = nil, nil
	b.mu.Unlock()
	if r != nil {
		var rs [SpansPerBlock]*record
		p.enqueueAll(r.list(rs[:0]))
	}
	if b.pool != nil && b.refs.Add(b.made) == 0 {
		b.pool.blocks.Put(b)
	}
}

// done counts a record of b exported, dropped or not sampled: the last
// one of a released block puts it back in the pool (refs: minus the
// records done until Release adds those made).
func (b *Spans) done() {
	if b.refs.Add(-1) == 0 {
		b.pool.blocks.Put(b)
	}
}

// Reset readies a caller's own block (not NewSpans's) for another
// request. A span of b not ended by then is never exported (as a span
// never ended is not).
func (b *Spans) Reset() {
	for i := range b.h[:b.n] {
		s := &b.h[i].span
		s.mu.Lock()
		s.r, s.p, s.sc, s.b = nil, nil, trace.SpanContext{}, nil
		s.children.Store(0)
		s.mu.Unlock()
	}
	b.n, b.base, b.remote = 0, time.Time{}, nonRecording{}
	b.mu.Lock()
	r, p := b.held, b.open
	b.held, b.open = nil, nil
	b.mu.Unlock()
	if r != nil { // ended: queued, though their first span was not
		var rs [SpansPerBlock]*record
		p.enqueueAll(r.list(rs[:0]))
	}
}

// list appends r and the records linked after it to rs, unlinking them
// (past cap(rs), each further record is queued alone).
func (r *record) list(rs []*record) []*record {
	for r != nil {
		next := r.next
		r.next = nil
		if len(rs) == cap(rs) {
			r.t.p.enqueue(r)
		} else {
			rs = append(rs, r)
		}
		r = next
	}
	return rs
}

// Now returns the current time for a span of b: its first span's start
// plus the monotonic time elapsed (time.Now for the first).
func (b *Spans) Now() time.Time {
	if b.base.IsZero() {
		b.base = time.Now()
		return b.base
	}
	return b.base.Add(time.Since(b.base))
}

// take returns a span for p to record into, its handle, and its record:
// from b while it has room (the record too when b is pooled), else from
// the heap (and the record pool).
func (b *Spans) take(p *Provider) (*span, trace.Span, *record) {
	if b == nil || b.n == len(b.h) {
		s := new(span)
		return s, s, newRecord()
	}
	i := b.n
	sl := &b.h[i]
	if i == 0 {
		b.mu.Lock()
		b.open = p
		b.mu.Unlock()
	}
	b.n++
	if sl.tags[0].Span == nil { // the slot's first use
		for g := range sl.tags {
			sl.tags[g].Span = sl
		}
	}
	sl.b = b
	sl.children.Store(0)
	sl.gen = (sl.gen + 1) % genWindow
	var r *record
	if b.pool != nil {
		r = &b.rec[i]
		r.reuse()
		r.blk = b
		b.made++
	} else {
		r = newRecord()
	}
	return &sl.span, &sl.tags[sl.gen], r
}

// queue queues r, s's record, ended, when s is of a block: held in it
// while the block's first span is open, or with the spans held when s is
// the first; false when s is not of a block, or the block's first span
// has ended (or is another provider's): the caller queues r.
func (s *span) queue(r *record) bool {
	b := s.b
	if b == nil {
		return false
	}
	b.mu.Lock()
	if s == &b.h[0].span && b.open != nil {
		held := b.held
		b.held, b.open = nil, nil
		b.mu.Unlock()
		var rs [SpansPerBlock]*record
		q := held.list(rs[:0])
		if s.sc.IsSampled() {
			q = append(q, r) // at most SpansPerBlock-1 held (h[1:]): no growth; the last: its shard takes them all
		} else if s.p.recycle {
			r.release()
		}
		if len(q) > 0 {
			s.p.enqueueAll(q)
		}
		return true
	}
	if b.open == s.p && s.sc.IsSampled() {
		r.next, b.held = b.held, r
		b.mu.Unlock()
		return true
	}
	b.mu.Unlock()
	return false
}

// EndAt ends sp at t: for spans ending at the same moment (one clock
// read for both), without an end option's allocation when sp is one of
// Provider's.
func EndAt(sp trace.Span, t time.Time) {
	if s := spanOf(sp); s != nil {
		s.end(t)
		return
	}
	if _, ok := sp.(*tag); ok { // stale
		return
	}
	sp.End(trace.WithTimestamp(t))
}

// StartIn opens a span as StartSpan does, its handle from b (nil: from
// the heap), the child of parent when it is not nil (else of ctx's span:
// then a child needs no context of its parent's), starting at at (zero:
// now, by b's clock), configured by c (trace.NewSpanStartConfig's, built
// once by the caller: applying options per span is a tenth of a span's
// cost).
func (t *tracer) StartIn(b *Spans, ctx context.Context, parent trace.Span, name string, at time.Time, c *trace.SpanConfig) trace.Span {
	if c.NewRoot() {
		ctx, parent = trace.ContextWithSpanContext(ctx, trace.SpanContext{}), nil
	}
	if parent == nil {
		parent = trace.SpanFromContext(ctx)
	} else if t.p.sampling == otherSampler {
		ctx = trace.ContextWithSpan(ctx, parent) // the sampler reads the parent from ctx
	}
	start := c.Timestamp()
	if start.IsZero() {
		start = at
	}
	if b != nil {
		if start.IsZero() {
			start = b.Now()
		} else if b.base.IsZero() {
			b.base = start
		}
	}
	return t.startAt(ctx, parent, b, name, c, start)
}

func (t *tracer) start(ctx context.Context, name string, c *trace.SpanConfig) trace.Span {
	return t.startAt(ctx, trace.SpanFromContext(ctx), nil, name, c, c.Timestamp())
}

func (t *tracer) startAt(ctx context.Context, ps trace.Span, b *Spans, name string, c *trace.SpanConfig, start time.Time) trace.Span {
	psc := ps.SpanContext()
	tid, sid := newIDs(psc.TraceID())
	var sr sdktrace.SamplingResult
	switch t.p.sampling {
	case alwaysOn: // what AlwaysSample().ShouldSample returns
		sr = sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample, Tracestate: psc.TraceState()}
	case parentOrOn: // ParentBased(AlwaysSample())'s
		sr = sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample, Tracestate: psc.TraceState()}
		if psc.IsValid() && !psc.IsSampled() {
			sr.Decision = sdktrace.Drop
		}
	default:
		sr = t.p.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: name,
			Kind: c.SpanKind(), Attributes: c.Attributes(), Links: c.Links()})
	}
	scc := trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceState: sr.Tracestate}
	if sr.Decision == sdktrace.RecordAndSample {
		scc.TraceFlags = psc.TraceFlags() | trace.FlagsSampled
	} else {
		scc.TraceFlags = psc.TraceFlags() &^ trace.FlagsSampled
	}
	sc := trace.NewSpanContext(scc)
	if sr.Decision == sdktrace.Drop {
		return &nonRecording{sc: sc, p: t.p}
	}
	if start.IsZero() {
		start = time.Now()
	}
	s, h, r := b.take(t.p)
	r.t, r.name, r.sc, r.parent, r.kind, r.start = t, name, sc, psc, trace.ValidateSpanKind(c.SpanKind()), start
	if parent := spanOf(ps); parent != nil {
		parent.children.Add(1)
	}
	for _, l := range c.Links() {
		r.addLink(l)
	}
	r.setAttributes(sr.Attributes)
	r.setAttributes(c.Attributes())
	s.sc, s.p, s.r = sc, t.p, r
	return h
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
	b        *Spans  // the block the handle is in; nil: from the heap
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
	next         *record // the next of a block's waiting spans (Spans.held)
	blk          *Spans  // the pooled block the record is in; nil: the record pool's
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
	r.next = nil
	records.Put(r)
}

// reuse readies a pooled block's record for its next span (start sets
// what it does not), on the request's goroutine, not the export one. The
// previous span's attributes are not cleared, only overwritten by the
// next span's (clearing them is a write barrier per pointer while the GC
// marks): those past the next span's count stay reachable while the block
// is pooled, which sync.Pool bounds to two GC cycles.
func (r *record) reuse() {
	r.attrs, r.droppedAttrs = r.attrBuf[:0], 0
	if r.events != nil || r.links != nil {
		r.events, r.links = nil, nil
	}
	r.droppedEvs, r.droppedLinks, r.status = 0, 0, sdktrace.Status{}
}

// release lets go of an exported (or dropped, or unsampled) record: back
// to its pooled block, or cleared into the record pool.
func (r *record) release() {
	if r.blk != nil {
		r.blk.done()
		return
	}
	r.free()
}

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

// Finish does what sp.SetAttributes(kv...), sp.SetStatus(code, desc)
// (when code is not Unset) and an End at t (zero: now) do, for
// Provider's spans under one lock instead of three, with no end option.
func Finish(sp trace.Span, kv []attribute.KeyValue, code codes.Code, desc string, t time.Time) {
	s := spanOf(sp)
	if s == nil {
		if _, ok := sp.(*tag); ok { // stale: does nothing
			return
		}
		// A copy: kv stays the caller's (it may be on its stack).
		sp.SetAttributes(append([]attribute.KeyValue(nil), kv...)...)
		if code != codes.Unset {
			sp.SetStatus(code, desc)
		}
		if t.IsZero() {
			sp.End()
		} else {
			sp.End(trace.WithTimestamp(t))
		}
		return
	}
	s.mu.Lock()
	r := s.r
	s.r = nil
	if r != nil {
		r.setAttributes(kv)
		if code != codes.Unset {
			r.setStatus(code, desc)
		}
	}
	s.mu.Unlock()
	if r != nil {
		s.finish(r, t)
	}
}

// finish ends s, whose record r it has just let go of, at et (zero: now).
func (s *span) finish(r *record, et time.Time) {
	if et.IsZero() {
		if s.b != nil {
			et = s.b.Now()
		} else {
			et = time.Now()
		}
	}
	r.end, r.children = et, int(s.children.Load())
	if s.queue(r) {
		return
	}
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

// noopProvider is a stale handle's TracerProvider.
type noopProvider = noop.TracerProvider

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
