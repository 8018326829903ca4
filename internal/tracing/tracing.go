// Package tracing builds the OpenTelemetry tracer provider an edge exports
// its request traces with, from the standard OTEL_* environment variables.
//
// Tracing is off unless OTEL_TRACES_EXPORTER names an exporter (the
// OpenTelemetry default is "otlp"; GenieHive's is off, so an edge never
// sends anything anywhere unless told to):
//
//	OTEL_TRACES_EXPORTER          otlp (on) | none or unset (off)
//	OTEL_SDK_DISABLED             true: off whatever else is set
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL
//	                              http/protobuf (default) | grpc
//	OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
//	OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, ..._INSECURE,
//	..._CERTIFICATE, ..._COMPRESSION
//	                              read by the OTLP exporters themselves
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
//	                              the SDK's samplers (default parentbased_always_on)
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
//	                              the resource (service.name defaults to
//	                              the name FromEnv is given)
//	OTEL_BSP_*                    the batch span processor's queue and delays
//
// Spans are recorded by Provider (recorder.go), an in-house recorder
// behind the OpenTelemetry trace API (a span costs about 2.5 times less
// CPU and 7 times fewer bytes than the SDK's), or, for a caller that
// knows its spans' shape (the edge), as one Request per request
// (request.go: no lock, no handle, ~1 KB), and exported in batches off
// the request path by the SDK's OTLP exporter (a bounded queue; spans
// past it are dropped, not waited for). OTEL_TRACES_SAMPLER may name always_on, always_off,
// traceidratio and their parentbased_ forms (an unknown one is refused);
// OTEL_BSP_MAX_QUEUE_SIZE, _MAX_EXPORT_BATCH_SIZE, _SCHEDULE_DELAY and
// _EXPORT_TIMEOUT are read as the SDK reads them; span limits are the
// SDK's defaults (128 attributes, events, links; the OTEL_SPAN_*_LIMIT
// variables are not read).
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// FromEnv returns the tracer provider the environment asks for, and the
// function that flushes and stops it; both nil when tracing is off.
//
// # Errors
// An unknown exporter or protocol, or an exporter that cannot be built
// (a malformed endpoint): the caller refuses to start rather than run
// without the traces it was told to send.
func FromEnv(ctx context.Context, service string) (*Provider, func(context.Context) error, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, nil, nil
	}
	exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	switch strings.ToLower(exp) {
	case "", "none":
		return nil, nil, nil
	case "otlp":
	default:
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: supported are otlp and none", exp)
	}
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if err := checkEndpoint(); err != nil {
		return nil, nil, err
	}
	var (
		ex  sdktrace.SpanExporter
		err error
	)
	switch proto {
	case "", "http/protobuf":
		ex, err = otlptracehttp.New(ctx)
	case "grpc":
		ex, err = otlptracegrpc.New(ctx)
	default:
		return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: supported are http/protobuf and grpc", proto)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	tp, err := New(service, ex)
	if err != nil {
		return nil, nil, err
	}
	return tp, tp.Shutdown, nil
}

// checkEndpoint refuses an OTLP endpoint the exporters would take and then
// fail on at every export (they log "parse url" once, through their own
// logger, and the edge would run without the traces it was told to send):
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and OTEL_EXPORTER_OTLP_ENDPOINT must be
// http:// or https:// URLs with a host, as the OpenTelemetry specification
// has them for both protocols.
func checkEndpoint() error {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s=%q: want an http:// or https:// URL with a host, e.g. http://collector:4318", name, v)
		}
	}
	return nil
}

// New returns the Provider FromEnv builds, exporting to exp: the sampler
// (OTEL_TRACES_SAMPLER, _ARG), the batching (OTEL_BSP_*) and the resource
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES; service.name defaults to
// service) as the environment says. Benchmarks and tests build theirs
// here with their own exporter, so they measure what an edge runs.
//
// # Errors
// An unknown sampler or a malformed sampler argument.
func New(service string, exp sdktrace.SpanExporter) (*Provider, error) {
	smp, err := samplerFromEnv()
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.NewSchemaless(attribute.String("service.name", service)), resource.Environment())
	if err != nil {
		res = resource.Environment()
	}
	return NewProvider(exp, Options{Sampler: smp, Resource: res,
		MaxQueueSize: envInt("OTEL_BSP_MAX_QUEUE_SIZE"), MaxExportBatchSize: envInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
		ScheduleDelay: time.Duration(envInt("OTEL_BSP_SCHEDULE_DELAY")) * time.Millisecond,
		ExportTimeout: time.Duration(envInt("OTEL_BSP_EXPORT_TIMEOUT")) * time.Millisecond}), nil
}

// envInt is a positive integer variable's value; 0 when unset or not one
// (the default then applies, as in the SDK).
func envInt(k string) int {
	n, err := strconv.Atoi(strings.TrimSpace(os.Getenv(k)))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, read as the SDK reads them
// (sdk/trace/sampler_env.go); nil (the default, parentbased_always_on)
// when unset.
func samplerFromEnv() (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1", arg)
		}
		return sdktrace.TraceIDRatioBased(v), nil
	}
	switch name {
	case "":
		return nil, nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return ratio()
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(r), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: supported are always_on, always_off, traceidratio and their parentbased_ forms", name)
}
