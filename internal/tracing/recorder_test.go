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
