package wasm

import (
	"encoding/json"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policies/policytest"
	"github.com/geniehive/geniehive/policy"
)

// Benchmarks evaluate the shipped policy over the decision table's requests
// against the shared fleet data, input and output JSON included, from 2
// goroutines; p50/p99 are per-evaluation latencies.
//
//	go test -run '^$' -bench . -benchtime 20000x ./wasm

func fleetInputs(tb testing.TB) []*policy.Input {
	var ins []*policy.Input
	for _, c := range policytest.Cases() {
		if c.Data == policytest.FleetData() {
			ins = append(ins, c.Input)
		}
	}
	if len(ins) == 0 {
		tb.Fatal("no fleet cases")
	}
	return ins
}

func benchEngine(b *testing.B, e policy.Engine) {
	b.Helper()
	if err := e.SetData(bg, policytest.FleetData()); err != nil {
		b.Fatal(err)
	}
	ins := fleetInputs(b)
	var d policy.Decision
	for _, in := range ins { // warm every instance path once
		if err := e.Eval(bg, in, &d); err != nil {
			b.Fatal(err)
		}
	}
	const G = 2
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Value
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d policy.Decision
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				in := ins[i%len(ins)]
				t0 := time.Now()
				err := e.Eval(bg, in, &d)
				lat[i] = time.Since(t0)
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// benchOpts: the machine running benchmarks may be shared; a generous
// deadline keeps a descheduled evaluation from failing the run.
var benchOpts = Options{EvalTimeout: 5 * time.Second}

func BenchmarkEngines(b *testing.B) {
	b.Run("wasm", func(b *testing.B) {
		e, err := NewOPA(bg, policies.ShippedPolicy(), benchOpts)
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		benchEngine(b, e)
	})
	b.Run("wasm-json", func(b *testing.B) {
		// The fallback path: the guest serialises the result (opa_eval +
		// opa_json_dump), the host parses the JSON.
		e, err := newOPA(bg, policies.ShippedPolicy(), config{Options: benchOpts, noDirect: true})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		benchEngine(b, e)
	})
	b.Run("rego-sdk", func(b *testing.B) {
		e, err := opa.NewRego(policies.ShippedPolicy(), opa.RegoOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		benchEngine(b, e)
	})
	b.Run("go", func(b *testing.B) {
		e := policies.NewGo()
		defer e.Close()
		benchEngine(b, e)
	})
	for _, v := range []struct{ name, tag string }{{"module", ""}, {"module-stdjson", "stdjson"}} {
		b.Run(v.name, func(b *testing.B) {
			var tags []string
			if v.tag != "" {
				tags = []string{v.tag}
			}
			e, err := NewModule(bg, exampleWasm(b, "simple", tags...), benchOpts)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			benchEngine(b, e)
		})
	}
}

func BenchmarkParseDecision(b *testing.B) {
	var docs [][]byte
	for _, c := range policytest.Cases() {
		bs, _ := json.Marshal(c.Want)
		docs = append(docs, bs)
	}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		var d policy.Decision
		for i := 0; i < b.N; i++ {
			if err := parseDecision(docs[i%len(docs)], &d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var d policy.Decision
			if err := json.Unmarshal(docs[i%len(docs)], &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendInput(b *testing.B) {
	ins := fleetInputs(b)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for i := 0; i < b.N; i++ {
			buf = appendInput(buf[:0], ins[i%len(ins)])
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			json.Marshal(ins[i%len(ins)])
		}
	})
}
