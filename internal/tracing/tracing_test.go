package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// clearEnv unsets every variable FromEnv or the SDK reads, for the test.
func clearEnv(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

// Off unless OTEL_TRACES_EXPORTER says otlp; OTEL_SDK_DISABLED wins;
// unknown exporters and protocols are refused, not ignored.
func TestFromEnvSwitches(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		env     map[string]string
		on, bad bool
	}{
		{"unset", nil, false, false},
		{"none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false, false},
		{"disabled", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, false, false},
		{"otlp http", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true, false},
		{"otlp grpc", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true, false},
		{"zipkin", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, true},
		{"http/json", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, false, true},
		{"endpoint not a URL", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "::not a url"}, false, true},
		{"endpoint without scheme", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, false, true},
		{"traces endpoint ftp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"}, false, true},
		{"grpc endpoint without host", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://"}, false, true},
		{"traces endpoint https", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://127.0.0.1:1/v1/traces"}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			tp, stop, err := FromEnv(ctx, "test")
			if (err != nil) != c.bad {
				t.Fatalf("err %v, want error %v", err, c.bad)
			}
			if (tp != nil) != c.on || (stop != nil) != c.on {
				t.Fatalf("provider %v, stop %v: want on=%v", tp != nil, stop != nil, c.on)
			}
			if stop != nil {
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				_ = stop(sctx) // nothing listens on :1; the flush may fail
			}
		})
	}
}

// OTEL_TRACES_EXPORTER=otlp with OTEL_EXPORTER_OTLP_ENDPOINT: spans reach
// an OTLP/HTTP receiver (POST /v1/traces, protobuf, as the OpenTelemetry
// Collector's otlpreceiver takes it: receiver/otlpreceiver/otlphttp.go),
// with the service name from OTEL_SERVICE_NAME and the sampler from
// OTEL_TRACES_SAMPLER (always_off: nothing sent).
func TestOTLPHTTPExportFromEnv(t *testing.T) {
	var mu sync.Mutex
	var got []*coltrace.ExportTraceServiceRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "unexpected", 400)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		got = append(got, &req)
		mu.Unlock()
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	defer srv.Close()
	for _, sampler := range []string{"always_on", "always_off"} {
		clearEnv(t)
		mu.Lock()
		got = nil
		mu.Unlock()
		t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
		t.Setenv("OTEL_SERVICE_NAME", "edge-under-test")
		t.Setenv("OTEL_TRACES_SAMPLER", sampler)
		tp, stop, err := FromEnv(context.Background(), "geniehive-edge")
		if err != nil || tp == nil {
			t.Fatalf("FromEnv: %v", err)
		}
		_, sp := tp.Tracer("t").Start(context.Background(), "POST /v1/chat/completions")
		sp.End()
		if err := stop(context.Background()); err != nil {
			t.Fatalf("flush: %v", err)
		}
		mu.Lock()
		n, name, service := 0, "", ""
		for _, req := range got {
			for _, rs := range req.ResourceSpans {
				for _, a := range rs.Resource.Attributes {
					if a.Key == "service.name" {
						service = a.Value.GetStringValue()
					}
				}
				for _, ss := range rs.ScopeSpans {
					for _, s := range ss.Spans {
						n++
						name = s.Name
					}
				}
			}
		}
		mu.Unlock()
		switch sampler {
		case "always_on":
			if n != 1 || name != "POST /v1/chat/completions" || service != "edge-under-test" {
				t.Fatalf("received %d spans (%q) from service %q", n, name, service)
			}
		case "always_off":
			if n != 0 {
				t.Fatalf("always_off: %d spans exported", n)
			}
		}
	}
}
