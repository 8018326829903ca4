package tracing

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// testOwner owns a Request the way the edge's reqTrace does: the
// attributes of span i are attrs[i], built at export.
type testOwner struct {
	Request
	attrs    [][]attribute.KeyValue
	released atomic.Int32
	onRel    func(*testOwner)
}

func (o *testOwner) AppendAttributes(r *Request, i int, dst []attribute.KeyValue) []attribute.KeyValue {
	if r != &o.Request {
		panic("AppendAttributes given another Request")
	}
	return append(dst, o.attrs[i]...)
}

func (o *testOwner) Release() {
	o.released.Add(1)
	if o.onRel != nil {
		o.onRel(o)
	}
}

// reqScript records, through the trace API (tp's), a server span under
// remote and its children as the edge's are, and returns the same
// request as a Request of p's: the two must export the same spans.
func reqScript(tp trace.TracerProvider, p *Provider, remote trace.SpanContext) *testOwner {
	t0 := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type child struct {
		name       string
		kind       trace.SpanKind
		start, end int
		code       codes.Code
		desc       string
		attrs      []attribute.KeyValue
	}
	children := []child{
		{"policy.evaluate", trace.SpanKindInternal, 1, 2, codes.Unset, "", []attribute.KeyValue{attribute.String("geniehive.policy.engine", "go")}},
		{"routing.plan", trace.SpanKindInternal, 2, 3, codes.Unset, "", []attribute.KeyValue{attribute.Bool("gen_ai.request.stream", false),
			attribute.String("geniehive.strategy", "balanced"), attribute.Int("geniehive.candidates", 2)}},
		{"upstream.attempt", trace.SpanKindClient, 3, 5, codes.Error, "upstream_unavailable", []attribute.KeyValue{attribute.Int("geniehive.attempt", 1),
			attribute.String("error.type", "upstream_unavailable")}},
		{"upstream.attempt", trace.SpanKindClient, 5, 9, codes.Unset, "", []attribute.KeyValue{attribute.Int("geniehive.attempt", 2)}},
		{"stream.relay", trace.SpanKindInternal, 9, 12, codes.Unset, "", nil},
	}
	rootAttrs := []attribute.KeyValue{attribute.String("http.route", "/v1/chat/completions"), attribute.Int("http.response.status_code", 502)}

	tr := tp.Tracer("scope")
	ctx := context.Background()
	if remote.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, remote)
	}
	ctx, root := tr.Start(ctx, "POST /v1/chat/completions", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0))
	for _, c := range children {
		_, sp := tr.Start(ctx, c.name, trace.WithSpanKind(c.kind), trace.WithTimestamp(at(c.start)))
		sp.SetAttributes(c.attrs...)
		if c.code != codes.Unset {
			sp.SetStatus(c.code, c.desc)
		}
		sp.End(trace.WithTimestamp(at(c.end)))
	}
	root.SetAttributes(rootAttrs...)
	root.SetStatus(codes.Error, "upstream_unavailable")
	root.End(trace.WithTimestamp(at(12)))

	o := &testOwner{attrs: [][]attribute.KeyValue{rootAttrs}}
	p.Requests("scope").Begin(&o.Request, o, remote, "POST /v1/chat/completions", trace.SpanKindServer, t0)
	for _, c := range children {
		i := o.Open(c.name, c.kind, 0, at(c.start))
		o.attrs = append(o.attrs, c.attrs)
		o.Close(i, c.code, c.desc, at(c.end))
	}
	return o
}

// A Request exports what the SDK exports for the same spans recorded
// through the trace API (names, kinds, the tree, trace ID, flags, times,
// attributes, statuses, child counts, scope), but for the random span
// IDs; a remote parent's trace and sampled flag are kept; an unsampled
// remote parent (parent-based samplers) exports nothing, and the
// Request goes back to its owner at End.
func TestRequestMatchesSDK(t *testing.T) {
	sampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled | trace.FlagsRandom, Remote: true})
	for _, smp := range []sdktrace.Sampler{
		sdktrace.ParentBased(sdktrace.AlwaysSample()),       // the default, decided in place
		sdktrace.AlwaysSample(),                             // decided in place
		sdktrace.ParentBased(sdktrace.TraceIDRatioBased(1)), // asked of the sampler
	} {
		for _, remote := range []trace.SpanContext{{}, sampled, sampled.WithTraceFlags(0)} {
			t.Run(fmt.Sprintf("%s/parent=%v,sampled=%v", smp.Description(), remote.IsValid(), remote.IsSampled()), func(t *testing.T) {
				sdkExp := tracetest.NewInMemoryExporter()
				sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(sdkExp), sdktrace.WithSampler(smp))
				ourExp := tracetest.NewInMemoryExporter()
				ours := NewProvider(ourExp, Options{Sampler: smp})
				defer ours.Shutdown(context.Background())
				o := reqScript(sdk, ours, remote)
				o.End(codes.Error, "upstream_unavailable", time.Unix(1700000000, 0).Add(12*time.Millisecond))
				if err := ours.ForceFlush(context.Background()); err != nil {
					t.Fatal(err)
				}
				if o.released.Load() != 1 {
					t.Fatalf("released %d times after export, want 1", o.released.Load())
				}
				matchStubs(t, sdkExp.GetSpans(), ourExp.GetSpans())
			})
		}
	}
}

// matchStubs compares two exports of one request's spans, in order.
func matchStubs(t *testing.T, want, got tracetest.SpanStubs) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d spans exported, the SDK %d", len(got), len(want))
	}
	idx := func(ss tracetest.SpanStubs) map[trace.SpanID]int {
		m := map[trace.SpanID]int{}
		for i, s := range ss {
			m[s.SpanContext.SpanID()] = i
		}
		return m
	}
	wantIdx, gotIdx := idx(want), idx(got)
	// The SDK exports children first (they end first); a Request exports
	// in its spans' order: match by name and start.
	key := func(s tracetest.SpanStub) string { return s.Name + s.StartTime.String() }
	byKey := map[string]int{}
	for i, g := range got {
		byKey[key(g)] = i
	}
	for _, w := range want {
		gi, ok := byKey[key(w)]
		if !ok {
			t.Errorf("span %q at %v not exported", w.Name, w.StartTime)
			continue
		}
		g := got[gi]
		sameTrace := g.SpanContext.TraceID() == got[0].SpanContext.TraceID() // a new trace: its random ID, one for all
		if w.Parent.IsRemote() {
			sameTrace = g.SpanContext.TraceID() == w.SpanContext.TraceID()
		}
		if g.SpanKind != w.SpanKind || !g.EndTime.Equal(w.EndTime) || !sameTrace ||
			g.SpanContext.TraceFlags() != w.SpanContext.TraceFlags() || !g.SpanContext.IsValid() ||
			g.Parent.IsRemote() != w.Parent.IsRemote() || g.Parent.IsValid() != w.Parent.IsValid() ||
			(w.Parent.IsValid() && g.Parent.TraceID() != g.SpanContext.TraceID()) || g.Parent.TraceFlags() != w.Parent.TraceFlags() {
			t.Errorf("%s: got kind %v end %v context %v parent %v\nwant kind %v end %v context %v parent %v", w.Name,
				g.SpanKind, g.EndTime, g.SpanContext, g.Parent, w.SpanKind, w.EndTime, w.SpanContext, w.Parent)
		}
		if w.Parent.IsRemote() || !w.Parent.IsValid() {
			if g.Parent.SpanID() != w.Parent.SpanID() {
				t.Errorf("%s: parent %v, want %v", w.Name, g.Parent.SpanID(), w.Parent.SpanID())
			}
		} else if key(got[gotIdx[g.Parent.SpanID()]]) != key(want[wantIdx[w.Parent.SpanID()]]) {
			t.Errorf("%s: parent is not the SDK's", w.Name)
		}
		if fmt.Sprint(g.Attributes) != fmt.Sprint(w.Attributes) || g.DroppedAttributes != w.DroppedAttributes {
			t.Errorf("%s: attributes %v, want %v", w.Name, g.Attributes, w.Attributes)
		}
		if g.Status != w.Status || g.ChildSpanCount != w.ChildSpanCount {
			t.Errorf("%s: status %v children %d, want %v %d", w.Name, g.Status, g.ChildSpanCount, w.Status, w.ChildSpanCount)
		}
		if g.InstrumentationScope.Name != w.InstrumentationScope.Name || len(g.Events) != 0 || len(g.Links) != 0 {
			t.Errorf("%s: scope %v events %v links %v", w.Name, g.InstrumentationScope, g.Events, g.Links)
		}
	}
}

// A Request's span context is what its upstream's traceparent carries:
// span 0's trace and flags with each span's own ID, distinct and valid;
// not sampled (NeverSample) it still has them, exports nothing and goes
// back to its owner at End; a span never closed is not exported.
func TestRequestSpanContexts(t *testing.T) {
	for _, smp := range []sdktrace.Sampler{sdktrace.AlwaysSample(), sdktrace.NeverSample()} {
		exp := tracetest.NewInMemoryExporter()
		p := NewProvider(exp, Options{Sampler: smp})
		o := &testOwner{attrs: make([][]attribute.KeyValue, 4)}
		p.Requests("s").Begin(&o.Request, o, trace.SpanContext{}, "root", trace.SpanKindServer, time.Time{})
		a := o.Open("a", trace.SpanKindClient, 0, time.Time{})
		b := o.Open("b", trace.SpanKindInternal, 0, time.Time{}) // never closed
		o.Close(a, codes.Unset, "", time.Time{})
		sc0, sca, scb := o.SpanContext(0), o.SpanContext(a), o.SpanContext(b)
		for _, sc := range []trace.SpanContext{sca, scb} {
			if !sc.IsValid() || sc.TraceID() != sc0.TraceID() || sc.TraceFlags() != sc0.TraceFlags() || sc.SpanID() == sc0.SpanID() {
				t.Fatalf("%s: child span context %v, span 0's %v", smp.Description(), sc, sc0)
			}
		}
		if sca.SpanID() == scb.SpanID() || sc0.IsSampled() != (smp == sdktrace.AlwaysSample()) {
			t.Fatalf("%s: span contexts %v %v %v", smp.Description(), sc0, sca, scb)
		}
		o.End(codes.Unset, "", time.Time{})
		if err := p.ForceFlush(context.Background()); err != nil { // Shutdown would empty the in-memory exporter
			t.Fatal(err)
		}
		defer p.Shutdown(context.Background())
		names := []string{}
		for _, s := range exp.GetSpans() {
			names = append(names, s.Name)
		}
		want := "[]"
		if o.Sampled() {
			want = "[root a]"
		}
		if fmt.Sprint(names) != want || o.released.Load() != 1 {
			t.Fatalf("%s: exported %v (want %s), released %d times", smp.Description(), names, want, o.released.Load())
		}
	}
}

// The export goroutine is done with a Request when it calls Release: an
// owner that reuses it at once (here: overwrites every span) changes
// nothing that is exported, with an exporter that copies the spans at
// export (as the OTLP ones do; records then reused). Run with -race.
func TestRequestReusedAfterRelease(t *testing.T) {
	exp := &copyingExporter{got: map[string]string{}}
	p := NewProvider(exp, Options{MaxQueueSize: 1 << 14, MaxExportBatchSize: 16})
	if !p.recycle {
		t.Fatal("records not reused")
	}
	var wg sync.WaitGroup
	const workers, per = 4, 300
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				name := fmt.Sprint(w, "/", i)
				o := &testOwner{attrs: [][]attribute.KeyValue{{attribute.String("name", name)}, {attribute.String("name", name+"c")}}}
				o.onRel = func(o *testOwner) {
					for j := range o.spans {
						o.spans[j] = RequestSpan{Name: "overwritten"}
					}
					o.attrs = nil
				}
				p.Requests("s").Begin(&o.Request, o, trace.SpanContext{}, name, trace.SpanKindServer, time.Time{})
				c := o.Open(name+"c", trace.SpanKindInternal, 0, time.Time{})
				o.Close(c, codes.Unset, "", time.Time{})
				o.End(codes.Unset, "", time.Time{})
				if i%50 == 0 {
					p.ForceFlush(context.Background())
				}
			}
		})
	}
	wg.Wait()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(exp.got)+int(p.Dropped()) != 2*workers*per || len(exp.got) == 0 {
		t.Fatalf("exported %d + dropped %d != %d", len(exp.got), p.Dropped(), 2*workers*per)
	}
	for name, attrs := range exp.got {
		if want := fmt.Sprint([]attribute.KeyValue{attribute.String("name", name)}); attrs != want {
			t.Fatalf("span %q exported with %s, want %s", name, attrs, want)
		}
	}
}

// A stuck exporter never blocks End: past the queue a Request's spans are
// dropped (counted, all of them) and the Request goes back to its owner;
// what was queued is exported once the exporter moves.
func TestRequestQueueDropsNotBlocks(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{})}
	p := NewProvider(exp, Options{MaxQueueSize: 256, MaxExportBatchSize: 16})
	const n = 2000
	owners := make([]*testOwner, n)
	for i := range owners {
		o := &testOwner{attrs: make([][]attribute.KeyValue, 3)}
		p.Requests("s").Begin(&o.Request, o, trace.SpanContext{}, "r", trace.SpanKindServer, time.Time{})
		for range 2 {
			o.Close(o.Open("c", trace.SpanKindInternal, 0, time.Time{}), codes.Unset, "", time.Time{})
		}
		o.End(codes.Unset, "", time.Time{})
		owners[i] = o
	}
	if p.Dropped() == 0 || p.Dropped()%3 != 0 {
		t.Fatalf("%d requests of 3 spans into a queue of 256 with a stuck exporter: %d spans dropped", n, p.Dropped())
	}
	close(exp.release)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exp.n+int(p.Dropped()) != 3*n {
		t.Fatalf("exported %d + dropped %d != %d ended", exp.n, p.Dropped(), 3*n)
	}
	for i, o := range owners {
		if o.released.Load() != 1 {
			t.Fatalf("request %d released %d times", i, o.released.Load())
		}
	}
}

// Every Request that ends while Shutdown runs, or after it, is exported
// or counted dropped (all its spans): none is lost between the last drain
// and the provider's stop. Run with -race.
func TestShutdownLosesNoRequest(t *testing.T) {
	shutdownLosesNothing(t, func(tp *Provider, ended *int, started chan<- struct{}) {
		q := tp.Requests("t")
		for i := range 1000 {
			o := &testOwner{attrs: make([][]attribute.KeyValue, 2)}
			q.Begin(&o.Request, o, trace.SpanContext{}, "r", trace.SpanKindServer, time.Time{})
			o.Close(o.Open("c", trace.SpanKindInternal, 0, time.Time{}), codes.Unset, "", time.Time{})
			o.End(codes.Unset, "", time.Time{})
			*ended += 2
			if i == 50 {
				started <- struct{}{}
			}
		}
	})
}

// A request of more spans than it holds in place (a long failover) keeps
// them all: the further ones go to the heap.
func TestRequestPastItsSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p := NewProvider(exp, Options{})
	o := &testOwner{}
	p.Requests("s").Begin(&o.Request, o, trace.SpanContext{}, "root", trace.SpanKindServer, time.Time{})
	o.attrs = append(o.attrs, nil)
	const children = 2 * requestSpans
	for i := range children {
		o.attrs = append(o.attrs, []attribute.KeyValue{attribute.Int("i", i)})
		o.Close(o.Open("c", trace.SpanKindClient, 0, time.Time{}), codes.Unset, "", time.Time{})
	}
	o.End(codes.Unset, "", time.Time{})
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	got := exp.GetSpans()
	if len(got) != children+1 || got[0].ChildSpanCount != children {
		t.Fatalf("%d spans exported, root's children %d; want %d, %d", len(got), got[0].ChildSpanCount, children+1, children)
	}
	for i, s := range got[1:] {
		if fmt.Sprint(s.Attributes) != fmt.Sprint([]attribute.KeyValue{attribute.Int("i", i)}) || s.Parent.SpanID() != got[0].SpanContext.SpanID() {
			t.Fatalf("child %d: attributes %v parent %v", i, s.Attributes, s.Parent.SpanID())
		}
	}
}

// signalExporter counts what it is given and signals each export.
type signalExporter struct {
	n    atomic.Int64
	sent chan struct{}
}

func (e *signalExporter) CopiesSpans() bool { return true }
func (e *signalExporter) ExportSpans(_ context.Context, ss []sdktrace.ReadOnlySpan) error {
	e.n.Add(int64(len(ss)))
	select {
	case e.sent <- struct{}{}:
	default:
	}
	return nil
}
func (e *signalExporter) Shutdown(context.Context) error { return nil }

// Once about a batch of spans is queued the export goroutine exports it,
// without waiting for ScheduleDelay (here an hour): 600 spans over the
// shards put at least 600/shards, more than a shard's share of a
// 512-span batch, in one of them (by pigeonhole). Woken only at half a
// shard (its 256 spans' 128, the earlier rule) they would wait the hour.
func TestBatchExportedOnceQueued(t *testing.T) {
	exp := &signalExporter{sent: make(chan struct{}, 1)}
	p := NewProvider(exp, Options{ScheduleDelay: time.Hour})
	defer p.Shutdown(context.Background())
	if len(p.shards)*(512/len(p.shards)) != 512 || 600/len(p.shards) < p.wakeAt {
		t.Fatalf("%d shards, woken at %d spans: the pigeonhole does not hold", len(p.shards), p.wakeAt)
	}
	q := p.Requests("s")
	for range 300 { // 600 spans
		o := &testOwner{attrs: make([][]attribute.KeyValue, 2)}
		q.Begin(&o.Request, o, trace.SpanContext{}, "r", trace.SpanKindServer, time.Time{})
		o.Close(o.Open("c", trace.SpanKindInternal, 0, time.Time{}), codes.Unset, "", time.Time{})
		o.End(codes.Unset, "", time.Time{})
	}
	select {
	case <-exp.sent:
	case <-time.After(30 * time.Second):
		t.Fatalf("600 spans queued, ScheduleDelay an hour: nothing exported after 30 s (%d shards, woken at %d)", len(p.shards), p.wakeAt)
	}
}
