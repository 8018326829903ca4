package tracing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// script is a sequence of trace API calls, run against the SDK's
// provider and against Provider, whose exported spans must agree.
func script(tp trace.TracerProvider) {
	tr := tp.Tracer("scope", trace.WithInstrumentationVersion("1.2.3"))
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	t0 := time.Unix(1700000000, 0)
	ctx, root := tr.Start(ctx, "root", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0),
		trace.WithAttributes(attribute.String("a", "1")))
	_, c1 := tr.Start(ctx, "child1", trace.WithTimestamp(t0))
	c1.SetAttributes(attribute.Int("n", 1), attribute.String("", "invalid"), attribute.Int("n", 2), attribute.Bool("b", true))
	c1.SetStatus(codes.Error, "boom")
	c1.SetStatus(codes.Unset, "ignored")
	c1.AddEvent("ev", trace.WithTimestamp(t0), trace.WithAttributes(attribute.String("k", "v")))
	c1.RecordError(errors.New("bad"), trace.WithTimestamp(t0))
	c1.AddLink(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.String("l", "x")}})
	c1.SetName("child1-renamed")
	c1.End(trace.WithTimestamp(t0.Add(time.Second)))
	c1.SetAttributes(attribute.String("after", "end")) // no effect
	c1.SetStatus(codes.Ok, "")                         // no effect
	c1.End()                                           // no effect
	_, c2 := tr.Start(ctx, "child2", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(t0))
	c2.SetStatus(codes.Ok, "dropped description")
	c2.SetStatus(codes.Error, "too late")
	c2.End(trace.WithTimestamp(t0.Add(2 * time.Second)))
	many := make([]attribute.KeyValue, 0, 130)
	for i := range 130 {
		many = append(many, attribute.Int(fmt.Sprint("k", i), i))
	}
	_, c3 := tr.Start(ctx, "many", trace.WithTimestamp(t0))
	c3.SetAttributes(many...)
	c3.End(trace.WithTimestamp(t0))
	// A remote parent that is not sampled: parentbased drops the child.
	unsampled := trace.ContextWithRemoteSpanContext(context.Background(), remote.WithTraceFlags(0))
	_, c4 := tr.Start(unsampled, "unsampled", trace.WithTimestamp(t0))
	c4.End(trace.WithTimestamp(t0))
	// Finish: SetAttributes, SetStatus and End in one call (Provider's
	// spans under one lock; the SDK's through the API).
	_, c5 := tr.Start(ctx, "finished", trace.WithTimestamp(t0))
	Finish(c5, []attribute.KeyValue{attribute.Int("n", 1), attribute.String("", "invalid"), attribute.Int("n", 2)},
		codes.Error, "failed", t0.Add(time.Second))
	Finish(c5, []attribute.KeyValue{attribute.Int("late", 1)}, codes.Ok, "", t0) // ended: no effect
	root.End(trace.WithTimestamp(t0.Add(3 * time.Second)))
}

// Provider exports what the SDK's provider exports for the same calls
// (names, kinds, parents, trace IDs, times, attributes with the last value
// of a key kept and invalid ones dropped and counted, the attribute limit,
// statuses, events, RecordError's event, links, child counts, the scope),
// except the random span IDs.
func TestProviderMatchesSDK(t *testing.T) {
	for _, smp := range []sdktrace.Sampler{
		sdktrace.ParentBased(sdktrace.AlwaysSample()),       // the default, decided by Provider itself
		sdktrace.AlwaysSample(),                             // decided by Provider itself
		sdktrace.ParentBased(sdktrace.TraceIDRatioBased(1)), // asked of the sampler
	} {
		t.Run(smp.Description(), func(t *testing.T) { matchSDK(t, smp) })
	}
}

func matchSDK(t *testing.T, smp sdktrace.Sampler) {
	sdkExp := tracetest.NewInMemoryExporter()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(sdkExp), sdktrace.WithSampler(smp))
	script(sdk)
	ourExp := tracetest.NewInMemoryExporter()
	ours := NewProvider(ourExp, Options{Sampler: smp})
	script(ours)
	defer ours.Shutdown(context.Background())
	if err := ours.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, got := sdkExp.GetSpans(), ourExp.GetSpans()
	if len(got) != len(want) || len(want) < 4 {
		t.Fatalf("%d spans exported, the SDK %d (want 4 or 5)", len(got), len(want))
	}
	byName := map[string]tracetest.SpanStub{}
	for _, s := range got {
		byName[s.Name] = s
	}
	ids := func(ss tracetest.SpanStubs) map[trace.SpanID]string {
		m := map[trace.SpanID]string{}
		for _, s := range ss {
			m[s.SpanContext.SpanID()] = s.Name
		}
		return m
	}
	wantIDs, gotIDs := ids(want), ids(got)
	for _, w := range want {
		g, ok := byName[w.Name]
		if !ok {
			t.Errorf("span %q not exported", w.Name)
			continue
		}
		if g.SpanKind != w.SpanKind || !g.StartTime.Equal(w.StartTime) || !g.EndTime.Equal(w.EndTime) ||
			g.SpanContext.TraceID() != w.SpanContext.TraceID() || g.SpanContext.TraceFlags() != w.SpanContext.TraceFlags() ||
			g.Parent.IsRemote() != w.Parent.IsRemote() || g.Parent.TraceID() != w.Parent.TraceID() {
			t.Errorf("%s: got %+v\nwant %+v", w.Name, g, w)
		}
		// The parent: the same remote one, or the same span by name.
		if w.Parent.IsRemote() {
			if g.Parent.SpanID() != w.Parent.SpanID() {
				t.Errorf("%s: parent %v, want %v", w.Name, g.Parent.SpanID(), w.Parent.SpanID())
			}
		} else if gotIDs[g.Parent.SpanID()] != wantIDs[w.Parent.SpanID()] {
			t.Errorf("%s: parent %q, want %q", w.Name, gotIDs[g.Parent.SpanID()], wantIDs[w.Parent.SpanID()])
		}
		if fmt.Sprint(g.Attributes) != fmt.Sprint(w.Attributes) || g.DroppedAttributes != w.DroppedAttributes {
			t.Errorf("%s: attributes %v (dropped %d), want %v (dropped %d)", w.Name, g.Attributes, g.DroppedAttributes, w.Attributes, w.DroppedAttributes)
		}
		if g.Status != w.Status || g.ChildSpanCount != w.ChildSpanCount {
			t.Errorf("%s: status %v children %d, want %v %d", w.Name, g.Status, g.ChildSpanCount, w.Status, w.ChildSpanCount)
		}
		if fmt.Sprint(g.Events) != fmt.Sprint(w.Events) || fmt.Sprint(g.Links) != fmt.Sprint(w.Links) {
			t.Errorf("%s: events %v links %v, want %v %v", w.Name, g.Events, g.Links, w.Events, w.Links)
		}
		if g.InstrumentationScope.Name != w.InstrumentationScope.Name || g.InstrumentationScope.Version != w.InstrumentationScope.Version {
			t.Errorf("%s: scope %v, want %v", w.Name, g.InstrumentationScope, w.InstrumentationScope)
		}
	}
}

// Trace and span IDs are random and never zero (W3C Trace Context), and
// an unsampled span still has a valid context to propagate.
func TestIDs(t *testing.T) {
	tp := NewProvider(tracetest.NewInMemoryExporter(), Options{Sampler: sdktrace.NeverSample()})
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("t")
	traces, spans := map[trace.TraceID]bool{}, map[trace.SpanID]bool{}
	for range 10000 {
		_, sp := tr.Start(context.Background(), "x")
		sc := sp.SpanContext()
		if !sc.IsValid() || sc.IsSampled() || sp.IsRecording() {
			t.Fatalf("span context %v valid %v sampled %v recording %v", sc, sc.IsValid(), sc.IsSampled(), sp.IsRecording())
		}
		traces[sc.TraceID()], spans[sc.SpanID()] = true, true
		sp.End()
	}
	if len(traces) != 10000 || len(spans) != 10000 {
		t.Fatalf("%d distinct trace IDs, %d span IDs of 10000", len(traces), len(spans))
	}
}

// blockingExporter holds ExportSpans until released, counting spans.
type blockingExporter struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (e *blockingExporter) ExportSpans(ctx context.Context, ss []sdktrace.ReadOnlySpan) error {
	<-e.release
	e.mu.Lock()
	e.n += len(ss)
	e.mu.Unlock()
	return nil
}
func (e *blockingExporter) Shutdown(context.Context) error { return nil }

// A stuck exporter never blocks End: past the queue, spans are dropped
// and counted; what was queued is exported once the exporter moves.
func TestQueueDropsNotBlocks(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{})}
	tp := NewProvider(exp, Options{MaxQueueSize: 256, MaxExportBatchSize: 16})
	tr := tp.Tracer("t")
	const n = 5000
	for range n {
		_, sp := tr.Start(context.Background(), "x")
		sp.End()
	}
	if tp.Dropped() == 0 {
		t.Fatalf("%d spans into a queue of 256 with a stuck exporter: none dropped", n)
	}
	close(exp.release)
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exp.n+int(tp.Dropped()) != n {
		t.Fatalf("exported %d + dropped %d != %d ended", exp.n, tp.Dropped(), n)
	}
}

// copyingExporter keeps its own copy of what it is given (as the OTLP
// exporters do), so the provider reuses records.
type copyingExporter struct {
	mu  sync.Mutex
	got map[string]string // span name -> its attributes, at export
}

func (e *copyingExporter) CopiesSpans() bool { return true }
func (e *copyingExporter) ExportSpans(ctx context.Context, ss []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range ss {
		e.got[s.Name()] = fmt.Sprint(s.Attributes())
	}
	return nil
}
func (e *copyingExporter) Shutdown(context.Context) error { return nil }

// Records are reused once exported; a span used after its End (which
// the API allows, to no effect) never writes into a record that now
// belongs to another span. Run with -race.
func TestRecordReuse(t *testing.T) {
	exp := &copyingExporter{got: map[string]string{}}
	tp := NewProvider(exp, Options{MaxQueueSize: 64, MaxExportBatchSize: 8})
	if !tp.recycle {
		t.Fatal("an exporter that copies spans: records not reused")
	}
	tr := tp.Tracer("t")
	var wg sync.WaitGroup
	const workers, per = 4, 500
	for w := range workers {
		wg.Go(func() {
			var prev trace.Span
			for i := range per {
				name := fmt.Sprint(w, "/", i)
				_, sp := tr.Start(context.Background(), name)
				sp.SetAttributes(attribute.String("name", name))
				if prev != nil {
					prev.SetAttributes(attribute.String("late", name)) // after its End: no effect
					prev.SetName("renamed")
				}
				sp.End()
				prev = sp
				if i%50 == 0 {
					tp.ForceFlush(context.Background())
				}
			}
		})
	}
	wg.Wait()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(exp.got)+int(tp.Dropped()) != workers*per {
		t.Fatalf("exported %d + dropped %d != %d", len(exp.got), tp.Dropped(), workers*per)
	}
	for name, attrs := range exp.got {
		if want := fmt.Sprint([]attribute.KeyValue{attribute.String("name", name)}); attrs != want {
			t.Fatalf("span %q exported with %s, want %s", name, attrs, want)
		}
	}
}

// OTEL_TRACES_SAMPLER and _ARG are read as the SDK reads them; what it
// would only log is refused.
func TestSamplerFromEnv(t *testing.T) {
	for _, c := range []struct {
		name, arg, want string
		bad             bool
	}{
		{"", "", "", false},
		{"always_on", "", "AlwaysOnSampler", false},
		{"always_off", "", "AlwaysOffSampler", false},
		{"traceidratio", "0.25", "TraceIDRatioBased{0.25}", false},
		{"traceidratio", "", "TraceIDRatioBased{1}", false},
		{"parentbased_always_on", "", "ParentBased{root:AlwaysOnSampler", false},
		{"parentbased_traceidratio", "0.5", "ParentBased{root:TraceIDRatioBased{0.5}", false},
		{"traceidratio", "1.5", "", true},
		{"traceidratio", "x", "", true},
		{"jaeger_remote", "", "", true},
	} {
		t.Setenv("OTEL_TRACES_SAMPLER", c.name)
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", c.arg)
		s, err := samplerFromEnv()
		if (err != nil) != c.bad {
			t.Fatalf("%s=%s: err %v, want error %v", c.name, c.arg, err, c.bad)
		}
		desc := ""
		if s != nil {
			desc = s.Description()
		}
		if len(desc) < len(c.want) || desc[:len(c.want)] != c.want {
			t.Fatalf("%s=%s: sampler %q, want %q", c.name, c.arg, desc, c.want)
		}
	}
}

// countingExporter counts the spans it is given.
type countingExporter struct {
	mu sync.Mutex
	n  int
}

func (e *countingExporter) CopiesSpans() bool { return true }
func (e *countingExporter) ExportSpans(_ context.Context, ss []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	e.n += len(ss)
	e.mu.Unlock()
	return nil
}
func (e *countingExporter) Shutdown(context.Context) error { return nil }

// Every span that ends while Shutdown runs, or after it, is either
// exported or counted dropped: none is lost between the last drain and
// the provider's stop. Run with -race.
func TestShutdownLosesNoSpan(t *testing.T) {
	shutdownLosesNothing(t, func(tp *Provider, ended *int, started chan<- struct{}) {
		tr := tp.Tracer("t")
		for i := range 3000 {
			_, sp := tr.Start(context.Background(), "x")
			sp.End()
			*ended++
			if i == 100 {
				started <- struct{}{}
			}
		}
	})
}

// shutdownLosesNothing runs 20 rounds of four workers ending spans (work:
// it counts them in *ended and signals started once under way) while the
// provider shuts down, and checks exported + dropped == ended.
func shutdownLosesNothing(t *testing.T, work func(tp *Provider, ended *int, started chan<- struct{})) {
	t.Helper()
	for round := range 20 {
		exp := &countingExporter{}
		tp := NewProvider(exp, Options{MaxQueueSize: 1 << 16})
		var wg sync.WaitGroup
		var ended [4]int
		started := make(chan struct{}, len(ended))
		for w := range ended {
			wg.Go(func() { work(tp, &ended[w], started) })
		}
		for range ended {
			<-started
		}
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		total := 0
		for _, n := range ended {
			total += n
		}
		exp.mu.Lock()
		got := exp.n
		exp.mu.Unlock()
		if got+int(tp.Dropped()) != total {
			t.Fatalf("round %d: exported %d + dropped %d != %d ended", round, got, tp.Dropped(), total)
		}
	}
}

// A Spans block hands out its handles without allocating (records reused
// as with an OTLP exporter), builds the same tree as Start (parents,
// child counts, one trace), times spans by the block's clock (each end at
// or after its start), and a call on an ended span writes nothing.
func TestSpansBlock(t *testing.T) {
	exp := &copyingExporter{got: map[string]string{}}
	tp := NewProvider(exp, Options{})
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("t").(*tracer)
	var b Spans
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2},
		TraceFlags: trace.FlagsSampled, Remote: true})
	pctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	req := func() (root, c1, c2 trace.Span) {
		b.Reset()
		root = tr.StartIn(&b, pctx, nil, "root", time.Time{}, &cfg0)
		c1 = tr.StartIn(&b, context.Background(), root, "c1", time.Time{}, &cfg0)
		c1.SetAttributes(nameAttr...)
		c1.End()
		c1.SetAttributes(lateAttr...) // ended: no effect
		c2 = tr.StartIn(&b, context.Background(), root, "c2", time.Time{}, &cfg0)
		now := b.Now()
		EndAt(c2, now)
		EndAt(root, now)
		return root, c1, c2
	}
	for range 1000 { // warm the record pool
		req()
	}
	tp.ForceFlush(context.Background())
	if n := testing.AllocsPerRun(200, func() { req() }); n != 0 && !raceEnabled {
		t.Fatalf("a request of three spans in a block allocates %v", n)
	}
	root, c1, c2 := req()
	rs, r1, r2 := spanOf(root), spanOf(c1), spanOf(c2)
	if rs == nil || r1 == nil || r2 == nil || rs.b != &b || r1.b != &b || r2.b != &b {
		t.Fatal("handles not from the block")
	}
	if r1.r != nil || c1.IsRecording() {
		t.Fatal("an ended span still holds its record")
	}
	tp.ForceFlush(context.Background())
	exp.mu.Lock()
	got := exp.got["c1"]
	exp.mu.Unlock()
	if want := fmt.Sprint(nameAttr); got != want {
		t.Fatalf("c1 exported with %s, want %s (a call after End wrote into its record)", got, want)
	}
	// The tree, as exported.
	mem := tracetestExporter()
	tp2 := NewProvider(mem, Options{})
	tr2 := tp2.Tracer("t").(*tracer)
	var b2 Spans
	root = tr2.StartIn(&b2, pctx, nil, "root", time.Time{}, &cfg0)
	c1 = tr2.StartIn(&b2, context.Background(), root, "c1", time.Time{}, &cfg0)
	c1.End()
	c2 = tr2.StartIn(&b2, context.Background(), root, "c2", time.Time{}, &cfg0)
	now := b2.Now()
	EndAt(c2, now)
	EndAt(root, now)
	defer tp2.Shutdown(context.Background())
	if err := tp2.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := mem.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans exported, want 3", len(spans))
	}
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
		if s.SpanContext.TraceID() != remote.TraceID() {
			t.Fatalf("%s: trace %s, want the remote parent's", s.Name, s.SpanContext.TraceID())
		}
		if s.EndTime.Before(s.StartTime) {
			t.Fatalf("%s ends %v before its start %v", s.Name, s.EndTime, s.StartTime)
		}
	}
	if byName["root"].Parent.SpanID() != remote.SpanID() || byName["root"].ChildSpanCount != 2 {
		t.Fatalf("root: parent %s, %d children", byName["root"].Parent.SpanID(), byName["root"].ChildSpanCount)
	}
	for _, n := range []string{"c1", "c2"} {
		if byName[n].Parent.SpanID() != byName["root"].SpanContext.SpanID() {
			t.Fatalf("%s: parent %s, want root", n, byName[n].Parent.SpanID())
		}
	}
	if !byName["c2"].EndTime.Equal(byName["root"].EndTime) || byName["root"].StartTime.After(byName["c1"].StartTime) {
		t.Fatal("EndAt: c2 and root do not end at the same time, or root starts after its child")
	}
}

func tracetestExporter() *tracetest.InMemoryExporter { return tracetest.NewInMemoryExporter() }

// Built once: a variadic argument built per call is an allocation.
var (
	nameAttr = []attribute.KeyValue{attribute.String("name", "c1")}
	lateAttr = []attribute.KeyValue{attribute.String("late", "x")}
)

var cfg0 = trace.NewSpanStartConfig()

// A block's spans that end before its first span wait for it and are
// queued with it (ForceFlush does not see them before); a span ending
// after its first span, and spans still waiting at Reset, are queued
// then.
func TestSpansBlockQueuesWithFirst(t *testing.T) {
	mem := tracetestExporter()
	tp := NewProvider(mem, Options{})
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("t").(*tracer)
	flushed := func() map[string]bool {
		t.Helper()
		if err := tp.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, s := range mem.GetSpans() {
			got[s.Name] = true
		}
		mem.Reset()
		return got
	}
	var b Spans
	root := tr.StartIn(&b, context.Background(), nil, "root", time.Time{}, &cfg0)
	c1 := tr.StartIn(&b, context.Background(), root, "c1", time.Time{}, &cfg0)
	c1.End()
	if got := flushed(); len(got) != 0 {
		t.Fatalf("exported %v before the block's first span ended", got)
	}
	c2 := tr.StartIn(&b, context.Background(), root, "c2", time.Time{}, &cfg0)
	root.End()
	if got := flushed(); !got["root"] || !got["c1"] || len(got) != 2 {
		t.Fatalf("exported %v at the first span's end, want root and c1", got)
	}
	c2.End() // after its root: queued at once
	if got := flushed(); !got["c2"] || len(got) != 1 {
		t.Fatalf("exported %v, want c2", got)
	}
	b.Reset()
	root = tr.StartIn(&b, context.Background(), nil, "root2", time.Time{}, &cfg0)
	c3 := tr.StartIn(&b, context.Background(), root, "c3", time.Time{}, &cfg0)
	c3.End()
	b.Reset() // root2 never ended: not exported; c3 ended: exported
	if got := flushed(); !got["c3"] || len(got) != 1 {
		t.Fatalf("exported %v after Reset, want c3", got)
	}
	if tp.Dropped() != 0 {
		t.Fatalf("%d dropped", tp.Dropped())
	}
}

// Spans of blocks that end while Shutdown runs, or after it, are either
// exported or counted dropped, those that waited for their block's first
// span included. Run with -race.
func TestShutdownLosesNoBlockSpan(t *testing.T) {
	shutdownLosesNothing(t, func(tp *Provider, ended *int, started chan<- struct{}) {
		tr := tp.Tracer("t").(*tracer)
		for i := range 600 {
			var b Spans
			root := tr.StartIn(&b, context.Background(), nil, "root", time.Time{}, &cfg0)
			for range 3 {
				tr.StartIn(&b, context.Background(), root, "c", time.Time{}, &cfg0).End()
			}
			root.End()
			*ended += 4
			if i == 20 {
				started <- struct{}{}
			}
		}
	})
}

// A pooled block (NewSpans) goes back to its pool once released and its
// spans exported, records and all: a request of spans from it allocates
// nothing; its spans export as a heap block's do; and a handle kept past
// its request does nothing once its slot serves the next one.
func TestSpansPooled(t *testing.T) {
	exp := &copyingExporter{got: map[string]string{}}
	tp := NewProvider(exp, Options{})
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("t").(*tracer)
	req := func() (*Spans, trace.Span) {
		b := tr.NewSpans()
		root := tr.StartIn(b, context.Background(), nil, "root", time.Time{}, &cfg0)
		c1 := tr.StartIn(b, context.Background(), root, "c1", time.Time{}, &cfg0)
		c1.SetAttributes(nameAttr...)
		c1.End()
		EndAt(root, b.Now())
		b.Release()
		return b, c1
	}
	for range 1000 {
		req()
	}
	tp.ForceFlush(context.Background())
	if n := testing.AllocsPerRun(100, func() { req() }); n != 0 && !raceEnabled {
		t.Fatalf("a request of two spans of a pooled block allocates %v", n)
	}
	tp.ForceFlush(context.Background())
	exp.mu.Lock()
	got := exp.got["c1"]
	exp.mu.Unlock()
	if want := fmt.Sprint(nameAttr); got != want {
		t.Fatalf("c1 exported with %s, want %s", got, want)
	}

	// A stale handle: its slot used again (a pooled block taken again, or
	// here, deterministically, a caller's own block Reset).
	var b Spans
	root := tr.StartIn(&b, context.Background(), nil, "root1", time.Time{}, &cfg0)
	stale := tr.StartIn(&b, context.Background(), root, "c1", time.Time{}, &cfg0)
	stale.End()
	root.End()
	b.Reset()
	root = tr.StartIn(&b, context.Background(), nil, "root2", time.Time{}, &cfg0)
	c := tr.StartIn(&b, context.Background(), root, "c2", time.Time{}, &cfg0)
	if spanOf(c) != &b.h[1].span {
		t.Fatal("the next request's span is not in the stale handle's slot")
	}
	if stale.SpanContext().IsValid() || stale.IsRecording() {
		t.Fatal("a stale handle reads its slot's next span")
	}
	stale.SetName("stale")
	stale.SetAttributes(lateAttr...)
	stale.End()
	Finish(stale, lateAttr, codes.Error, "stale", time.Time{})
	EndAt(stale, time.Time{})
	if !c.IsRecording() {
		t.Fatal("a stale handle's End ended its slot's next span")
	}
	c.End()
	root.End()
	tp.ForceFlush(context.Background())
	exp.mu.Lock()
	_, renamed := exp.got["stale"]
	got = exp.got["c2"]
	exp.mu.Unlock()
	if renamed || got != "[]" {
		t.Fatalf("a stale handle wrote into its slot's next span: renamed %v, c2's attributes %s", renamed, got)
	}
}

// A released block whose spans wait for export is not handed out again
// (its records are what the exporter will read), and its records keep
// their spans until exported.
func TestSpansPooledWaitsForExport(t *testing.T) {
	exp := &copyingExporter{got: map[string]string{}}
	tp := NewProvider(exp, Options{})
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("t").(*tracer)
	b := tr.NewSpans()
	root := tr.StartIn(b, context.Background(), nil, "root", time.Time{}, &cfg0)
	c := tr.StartIn(b, context.Background(), root, "c1", time.Time{}, &cfg0)
	Finish(c, nameAttr, codes.Unset, "", time.Time{})
	root.End()
	b.Release() // queued, not exported: the export goroutine waits for a fuller queue or 5 s
	var taken []*Spans
	for range 50 {
		b2 := tr.NewSpans()
		if b2 == b {
			t.Fatal("a released block was handed out again before its spans were exported")
		}
		r := tr.StartIn(b2, context.Background(), nil, "other", time.Time{}, &cfg0)
		Finish(tr.StartIn(b2, context.Background(), r, "c1", time.Time{}, &cfg0), lateAttr, codes.Unset, "", time.Time{})
		taken = append(taken, b2)
	}
	tp.ForceFlush(context.Background()) // b's spans first: the others' roots are open
	exp.mu.Lock()
	got := exp.got["c1"]
	exp.mu.Unlock()
	if want := fmt.Sprint(nameAttr); got != want {
		t.Fatalf("c1 exported with %s, want %s", got, want)
	}
	for _, b2 := range taken {
		b2.Release()
	}
}
