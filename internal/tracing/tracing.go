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
//	                              read by the SDK (default parentbased_always_on)
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
//	                              the resource (service.name defaults to
//	                              the name FromEnv is given)
//	OTEL_BSP_*                    the batch span processor's queue and delays
//
// Spans are exported in batches off the request path (the SDK's batch span
// processor: a bounded queue; spans past it are dropped, not waited for).
package tracing

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// FromEnv returns the tracer provider the environment asks for, and the
// function that flushes and stops it; both nil when tracing is off.
//
// # Errors
// An unknown exporter or protocol, or an exporter that cannot be built
// (a malformed endpoint): the caller refuses to start rather than run
// without the traces it was told to send.
func FromEnv(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
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
	res, err := resource.Merge(resource.NewSchemaless(attribute.String("service.name", service)), resource.Environment())
	if err != nil {
		res = resource.Environment()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(ex), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}
