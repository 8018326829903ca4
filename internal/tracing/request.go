package tracing

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Request records one request's spans in place, for a caller that knows
// their shape: a server span (span 0) and its children (the edge's
// policy.evaluate, routing.plan, upstream.attempt and stream.relay).
//
// # Why not the trace API
// A span of the API is a handle, a lock and a record of its own
// (attributes as attribute.KeyValue, 64 bytes each); the edge's five were
// some 9 KB of memory per request that the request's core wrote and the
// export goroutine's core then read, most of a traced request's cost
// (docs/CAPACITY.md, tracing, seventh pass). A Request is one object of
// ~1 KB the caller keeps in its own pool: per span a name, an ID, two
// offsets from one clock reading, a status and a few of the caller's
// values (S1, S2, I1, I2). No lock: a Request is written by one goroutine
// at a time (the caller's request, handed between goroutines with the
// request), and read by the export goroutine only after End.
//
// The attributes are the caller's to build, at export, on the export
// goroutine (RequestOwner.AppendAttributes), into records the export
// goroutine owns: each becomes the sdktrace.ReadOnlySpan the exporter
// reads, as the API's spans do, so an exporter sees the same spans either
// way (TestRequestMatchesSDK: the same spans through the SDK's own
// provider and as a Request export the same).
//
// # Sampling
// The request's spans follow span 0's decision, taken at Begin as the
// provider's sampler takes it for a root or the child of a remote parent:
// what every sampler OTEL_TRACES_SAMPLER can name decides for a child of
// a local parent too (the parent-based ones follow it; traceidratio sees
// the same trace ID; always_on and always_off). A request not sampled
// still has its span IDs (an upstream gets its attempt's traceparent,
// flagged not sampled) and costs no export.
type Request struct {
	t      *tracer
	owner  RequestOwner
	base   time.Time         // span 0's start, wall and monotonic: the spans' times are offsets from it
	sc     trace.SpanContext // span 0's; span i's differs in its span ID only
	parent trace.SpanContext // span 0's parent: a client's traceparent, or none
	extra  []attribute.KeyValue
	spans  []RequestSpan // buf's until past it
	buf    [requestSpans]RequestSpan
}

// requestSpans is how many spans a Request holds in place: the edge's
// server span, policy.evaluate, routing.plan, three upstream attempts
// (failover's default) and stream.relay. Further ones go to the heap.
const requestSpans = 7

// RequestSpan is one span of a Request.
type RequestSpan struct {
	Name string
	// S1, S2, I1 and I2 are the owner's: what AppendAttributes makes the
	// span's attributes of.
	S1, S2     string
	I1, I2     int32
	Tag        uint8 // the owner's: which of its spans this is
	kind       uint8
	code       uint8
	closed     bool
	id         trace.SpanID
	desc       string        // the Error status' description
	start, end time.Duration // since the Request's base
}

// Description is the span's Error status description ("" for another
// status).
func (s *RequestSpan) Description() string { return s.desc }

// RequestOwner is what a Request is part of: its caller's object, which
// builds the spans' attributes at export and takes the Request back when
// the export goroutine is done with it.
type RequestOwner interface {
	// AppendAttributes appends span i's attributes to dst. It runs on the
	// export goroutine after End; it must not write to the Request.
	AppendAttributes(r *Request, i int, dst []attribute.KeyValue) []attribute.KeyValue
	// Release is called once the Request's spans are exported, dropped
	// (a full queue, a provider shut down) or not sampled: the owner may
	// reuse it from then on.
	Release()
}

// Requests begins Requests in one instrumentation scope (Provider.Requests).
type Requests struct{ t *tracer }

// Requests returns the Request starter of the named instrumentation scope
// (the scope a Tracer of that name has).
func (p *Provider) Requests(name string) Requests { return Requests{p.Tracer(name).(*tracer)} }

// Begin readies r (its owner's, reused) for a request: span 0, named
// name, of the kind given, starting at start (zero: now), the child of
// parent when it is valid (a client's traceparent, remote). Every field
// of r is set; nothing of an earlier request is kept.
func (q Requests) Begin(r *Request, owner RequestOwner, parent trace.SpanContext, name string, kind trace.SpanKind, start time.Time) {
	tid, sid := newIDs(parent.TraceID())
	sr, flags := q.t.p.decide(nil, parent, sdktrace.SamplingParameters{TraceID: tid, Name: name, Kind: kind})
	if start.IsZero() {
		start = time.Now()
	}
	r.t, r.owner, r.base, r.parent, r.extra = q.t, owner, start, parent, sr.Attributes
	r.sc = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: sr.Tracestate})
	r.spans = append(r.buf[:0], RequestSpan{Name: name, kind: uint8(trace.ValidateSpanKind(kind)), id: sid})
}

// Sampled reports whether r's spans are exported.
func (r *Request) Sampled() bool { return r.sc.IsSampled() }

// Now is the current time by r's clock: its start plus the monotonic time
// elapsed (one clock read; time.Now takes two).
func (r *Request) Now() time.Time { return r.base.Add(time.Since(r.base)) }

// since is at's offset from r's start (zero at: now).
func (r *Request) since(at time.Time) time.Duration {
	if at.IsZero() {
		return time.Since(r.base)
	}
	return at.Sub(r.base)
}

// Open starts a child of span 0, named name, of the kind given, tagged
// tag (the owner's), at at (zero: now), and returns its index.
func (r *Request) Open(name string, kind trace.SpanKind, tag uint8, at time.Time) int {
	var sid trace.SpanID
	for !sid.IsValid() {
		sid = newSpanID()
	}
	r.spans = append(r.spans, RequestSpan{Name: name, Tag: tag, kind: uint8(trace.ValidateSpanKind(kind)), id: sid, start: r.since(at)})
	return len(r.spans) - 1
}

// Span returns span i, for its owner's values.
func (r *Request) Span(i int) *RequestSpan { return &r.spans[i] }

// SpanContext is span i's span context (what an upstream's traceparent
// carries).
func (r *Request) SpanContext(i int) trace.SpanContext {
	if i == 0 {
		return r.sc
	}
	return r.sc.WithSpanID(r.spans[i].id)
}

// Close ends span i (not 0: End ends it) at at (zero: now), with status
// Error and its description when code is codes.Error (Ok and Unset as
// given). A span never closed is not exported, as a span never ended is
// not.
func (r *Request) Close(i int, code codes.Code, desc string, at time.Time) {
	s := &r.spans[i]
	s.end, s.code, s.closed = r.since(at), uint8(code), true
	if code == codes.Error {
		s.desc = desc
	} else {
		s.desc = ""
	}
}

// End ends span 0 at at (zero: now) with the status given, and hands r to
// the export queue (sampled) or back to its owner (not sampled, or
// dropped). The caller must not touch r afterwards: its owner gets it
// back through Release.
func (r *Request) End(code codes.Code, desc string, at time.Time) {
	r.Close(0, code, desc, at)
	if !r.Sampled() {
		r.owner.Release()
		return
	}
	r.t.p.enqueueRequest(r)
}

// expand appends r's closed spans to batch as records of the export
// goroutine's (next), exporting each time the batch fills, and lets r
// go: the records keep nothing of r but its strings and attributes.
func (p *Provider) expand(r *Request, batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	children := len(r.spans) - 1 // started under span 0, as the SDK counts
	for i := range r.spans {
		s := &r.spans[i]
		if !s.closed {
			continue
		}
		rec := p.nextRecord()
		rec.t, rec.name, rec.kind = r.t, s.Name, trace.SpanKind(s.kind)
		rec.start, rec.end = r.base.Add(s.start), r.base.Add(s.end)
		rec.status = sdktrace.Status{Code: codes.Code(s.code), Description: s.desc}
		rec.droppedAttrs, rec.attrs = 0, rec.attrBuf[:0] // events, links: never set on an expanded record
		if i == 0 {
			rec.sc, rec.parent, rec.children = r.sc, r.parent, children
			if len(r.extra) > 0 {
				rec.setAttributes(r.extra)
			}
		} else {
			rec.sc, rec.parent, rec.children = r.sc.WithSpanID(s.id), r.sc, 0
		}
		rec.attrs = r.owner.AppendAttributes(r, i, rec.attrs)
		if len(rec.attrs) > attrLimit {
			rec.droppedAttrs, rec.attrs = len(rec.attrs)-attrLimit, rec.attrs[:attrLimit]
		}
		batch = append(batch, rec)
		if len(batch) == cap(batch) {
			batch = p.export(batch)
		}
	}
	r.owner.Release()
	return batch
}

// nextRecord returns a record for an expanded span: the next of the
// export goroutine's own (reused once their batch is exported) when the
// exporter keeps nothing of the spans it is given; else a new one.
func (p *Provider) nextRecord() *record {
	if !p.recycle {
		return &record{expanded: true}
	}
	if p.xn == len(p.xrecs) {
		p.xrecs = append(p.xrecs, &record{expanded: true})
	}
	r := p.xrecs[p.xn]
	p.xn++
	return r
}
