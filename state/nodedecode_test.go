package state

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/geniehive/geniehive/fleet"
)

// fullNode is a state with every field of fleet.NodeState set, as a node
// agent writes it.
func fullNode() *fleet.NodeState {
	st := benchNode(3, 2)
	st.TTLSeconds = 15
	st.Shape = "9f2c41d07a3b5e68"
	st.Host.Labels = map[string]string{"rack": "a1", "zone": "eu"}
	st.Host.Agent = "v1.2.3 (abc)"
	st.Host.StartedAt = time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	st.Host.GPUs = []fleet.GPU{{Index: 0, Name: "RTX 4090", VRAMUsedBytes: 1 << 33, VRAMTotalBytes: 24 << 30, UtilPercent: 87}, {Index: 1}}
	sv := &st.Services[1]
	sv.HealthError = "dial tcp: refused"
	sv.Healthy = false
	sv.Labels = []string{"fast", "gpu"}
	sv.APIs = []string{fleet.APIResponses, fleet.APIMessages}
	sv.Swap = fleet.SwapOllama
	sv.Metrics = fleet.Metrics{LoadedModelCount: 2, VRAMUsedBytes: 5 << 30, VRAMTotalBytes: 24 << 30, QueueDepth: 3, InFlight: 1, LatencyMS: 12.625, TokensPerSecond: 41.3e-1}
	a := &sv.Assets[2]
	a.Size, a.Thinking = 4<<30, true
	a.Tags = []string{"latest"}
	a.Capabilities = []string{fleet.CapCompletion, fleet.CapTools}
	st.Services[2].Assets = []fleet.Asset{}
	return st
}

// sameState compares two decoded states exactly (nil and empty lists
// differ), times by instant and zone (a decoded zone is a new *Location
// each time, so reflect.DeepEqual alone would tell equal times apart).
func sameState(a, b fleet.NodeState) bool {
	for _, p := range [][2]*time.Time{{&a.Host.StartedAt, &b.Host.StartedAt}, {&a.Host.UpdatedAt, &b.Host.UpdatedAt}} {
		x, y := *p[0], *p[1]
		xn, xo := x.Zone()
		yn, yo := y.Zone()
		if !x.Equal(y) || xn != yn || xo != yo || x.IsZero() != y.IsZero() || x.Location() == time.UTC != (y.Location() == time.UTC) {
			return false
		}
		*p[0], *p[1] = time.Time{}, time.Time{}
	}
	return reflect.DeepEqual(a, b)
}

// checkDecode decodes b with decodeNodeState and encoding/json and fails
// t on any difference: the value, the error, and the edge's verdict.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	var want, got fleet.NodeState
	werr := json.Unmarshal(b, &want)
	gerr := decodeNodeState(string(b), &got)
	if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
		t.Fatalf("%q: error %v, encoding/json %v", b, gerr, werr)
	}
	if werr != nil {
		return
	}
	wr, gr := checkNodeState(want.Host.ID, &want), checkNodeState(want.Host.ID, &got)
	if (wr == nil) != (gr == nil) || wr != nil && wr.Reason != gr.Reason {
		t.Fatalf("%q: refusal %v, with encoding/json %v", b, gr, wr)
	}
	if !sameState(want, got) {
		t.Fatalf("%q:\n got %+v\nwant %+v", b, got, want)
	}
}

// nodeSeeds are the differential test's cases and the fuzz target's seeds:
// what node agents write, then hostile variants.
func nodeSeeds(t testing.TB) [][]byte {
	full, err := json.Marshal(fullNode())
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(benchNode(1, 0))
	indented, _ := json.MarshalIndent(fullNode(), "", "\t")
	fs := string(full)
	seeds := [][]byte{full, plain, indented}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `{"host":null}`, `{"services":null}`, `{"services":[]}`, ` {"ttl_s":5} `,
		`{"ttl_s":5}x`, `{"ttl_s":5`, `{"ttl_s":5,}`, `{,"ttl_s":5}`,
		`{"shape":"0123abcd"}`, `{"shape":null}`, `{"shape":""}`, `{"shape":"a","shape":"b"}`, `{"shape":7}`, `{"Shape":"x"}`, `{"shape":"\u0041"}`,
		// duplicate keys: encoding/json merges objects, replaces scalars
		`{"host":{"id":"a"},"host":{"agent":"x"}}`, `{"ttl_s":1,"ttl_s":2}`,
		`{"services":[{"id":"a","id":"b"}]}`, `{"host":{"labels":{"a":"1","a":"2"}}}`,
		`{"services":[{"metrics":{"queue_depth":1},"metrics":{"in_flight":2}}]}`,
		// case variants and unknown keys
		`{"HOST":{"ID":"a"}}`, `{"host":{"Id":"a"},"Services":[]}`, `{"Ttl_S":3,"extra":[1,{"x":null}]}`,
		`{"services":[{"Metrics":{"Queue_Depth":4}}]}`, `{"ho\u0073t":{"id":"a"}}`, "{\"ttl_\u017f\":1}",
		// numbers
		`{"ttl_s":9223372036854775807}`, `{"ttl_s":9223372036854775808}`, `{"ttl_s":-9223372036854775808}`,
		`{"ttl_s":123456789012345678}`, `{"ttl_s":1234567890123456789}`, `{"ttl_s":1e3}`, `{"ttl_s":1.0}`,
		`{"ttl_s":-0}`, `{"ttl_s":01}`, `{"ttl_s":-}`, `{"ttl_s":"5"}`, `{"ttl_s":true}`,
		`{"services":[{"metrics":{"latency_ms":1e400}}]}`, `{"services":[{"metrics":{"latency_ms":-0}}]}`,
		`{"services":[{"metrics":{"latency_ms":1E-5,"tokens_per_second":123456789012345678901234567890}}]}`,
		`{"services":[{"metrics":{"vram_used_bytes":-5}}]}`,
		// deep nesting
		`{"host":{"gpus":[` + strings.Repeat(`[`, 300) + strings.Repeat(`]`, 300) + `]}}`,
		`{"x":` + strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat(`}`, 20000) + `}`,
		// strings: escapes, invalid UTF-8, control characters
		`{"host":{"id":"a\u0062"}}`, `{"host":{"id":"\ud800"}}`, "{\"host\":{\"id\":\"\xff\xfe\"}}",
		"{\"host\":{\"id\":\"caf\xc3\xa9\"}}", "{\"host\":{\"id\":\"a\x01\"}}", "{\"host\":{\"id\":\"a\x7f\"}}",
		`{"host":{"id":"a\"b"}}`, `{"host":{"id":5}}`, `{"services":[{"kind":"chat","healthy":null}]}`,
		`{"services":[{"healthy":tru}]}`, `{"services":[{"healthy":truex}]}`, `{"services":[{"healthy":"true"}]}`,
		// times
		`{"host":{"started_at":"2026-11-30T12:00:00+02:00"}}`, `{"host":{"started_at":"2026-11-30T12:00:00Z","updated_at":"2026-11-30T12:00:00.5-07:30"}}`,
		`{"host":{"started_at":"2026-13-30T12:00:00Z"}}`, `{"host":{"started_at":"yesterday"}}`, `{"host":{"started_at":null}}`,
		`{"host":{"started_at":1}}`, `{"host":{"started_at":"2026-11-30T12:00:00+24:00"}}`,
		// lists and maps
		`{"host":{"gpus":[{}],"labels":{}}}`, `{"services":[{"assets":[{"tags":[],"capabilities":["a",null]}]}]}`,
		`{"services":[{"apis":["chat"],"labels":[1]}]}`, `{"host":{"labels":{"a":1}}}`, `{"services":{}}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	// the agent's own state, spoiled one way at a time
	for _, r := range [][2]string{
		{`"host":`, `"host":{"id":"x"},"host":`}, {`"queue_depth"`, `"Queue_depth"`}, {`"loaded":true`, `"loaded":true,"loaded":false`},
		{`"name":"svc-1"`, `"name":"svc-1","name":"svc-2"`}, {`"endpoint":"http://127.0.0.1:9"`, `"endpoint":"http://127.0.0.1:9\/"`},
		{`"context_length":32768`, `"context_length":32768.5`}, {`"ttl_s":15`, `"ttl_s":15,"unknown":{}`},
		{`"bn-00003"`, `"bn-0000\u0033"`}, {`"svc-0"`, "\"svc-\xc0\""}, {`"host_id":"bn-00003"`, `"host_id":"bn-00004"`},
	} {
		seeds = append(seeds, []byte(strings.Replace(fs, r[0], r[1], 1)))
	}
	return seeds
}

// TestDecodeNodeStateMatchesEncodingJSON: the hand decoder against
// encoding/json on the agent's states and hostile ones.
func TestDecodeNodeStateMatchesEncodingJSON(t *testing.T) {
	for _, b := range nodeSeeds(t) {
		checkDecode(t, b)
	}
}

// TestDecodeNodeStateFastPath: what node agents write is decoded by the
// hand decoder, not handed to encoding/json (else nothing was gained).
func TestDecodeNodeStateFastPath(t *testing.T) {
	for _, st := range []*fleet.NodeState{fullNode(), benchNode(9, 1), {Host: fleet.Host{ID: "h"}}} {
		for _, indent := range []bool{false, true} {
			b, _ := json.Marshal(st)
			if indent {
				b, _ = json.MarshalIndent(st, " ", "  ")
			}
			var got, want fleet.NodeState
			d := nodeDecoder{b: b, s: string(b)}
			if !d.nodeState(&got) {
				t.Fatalf("fast path refused %s at byte %d", b, d.i)
			}
			if err := json.Unmarshal(b, &want); err != nil || !sameState(want, got) {
				t.Fatalf("got %+v\nwant %+v (%v)", got, want, err)
			}
		}
	}
}

// FuzzDecodeNodeState: any input decodes (or fails, with the same error)
// exactly as with encoding/json, and gets the same verdict from the edge.
func FuzzDecodeNodeState(f *testing.F) {
	for _, b := range nodeSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

// BenchmarkDecodeNodeState: one agent-written state (5 services × 4
// assets) decoded by encoding/json and by decodeNodeState, same run.
func BenchmarkDecodeNodeState(b *testing.B) {
	raw, err := json.Marshal(benchNode(7, 1))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			var st fleet.NodeState
			if err := json.Unmarshal([]byte(s), &st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			var st fleet.NodeState
			if err := decodeNodeState(s, &st); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDecodeNodeStateCompactsStrings: a state the fast path decoded keeps
// none of the stored JSON (every string, found by reflection so a field
// added later is checked too, lies outside raw), its strings but the
// host's labels are one run of bytes and its lists of strings one array,
// each list capped to its own elements, and it still equals what
// encoding/json decodes.
func TestDecodeNodeStateCompactsStrings(t *testing.T) {
	b, _ := json.Marshal(fullNode())
	raw := string(b)
	var got, want fleet.NodeState
	if err := decodeNodeState(raw, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil || !sameState(want, got) {
		t.Fatalf("got %+v\nwant %+v (%v)", got, want, err)
	}
	lo := uintptr(unsafe.Pointer(unsafe.StringData(raw)))
	hi := lo + uintptr(len(raw))
	strs := 0
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			if v.Len() > 0 {
				strs++
				if p := uintptr(unsafe.Pointer(unsafe.StringData(v.String()))); p >= lo && p < hi {
					t.Errorf("string %q shares the stored JSON", v.String())
				}
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i))
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Map:
			for it := v.MapRange(); it.Next(); {
				walk(it.Key())
				walk(it.Value())
			}
		}
	}
	walk(reflect.ValueOf(got))
	if strs < 20 {
		t.Fatalf("walked %d strings: the state is not the full one", strs)
	}
	var next uintptr
	walkNodeStrings(&got, func(s *string) {
		if *s == "" {
			return
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(*s)))
		if next != 0 && p != next {
			t.Errorf("string %q is not next to the previous one", *s)
		}
		next = p + uintptr(len(*s))
	}, func(l *[]string) {
		for _, e := range *l {
			p := uintptr(unsafe.Pointer(unsafe.StringData(e)))
			if next != 0 && p != next {
				t.Errorf("list string %q is not next to the previous one", e)
			}
			next = p + uintptr(len(e))
		}
	})
	var end uintptr
	lists := 0
	walkNodeStrings(&got, func(*string) {}, func(l *[]string) {
		if len(*l) == 0 {
			if *l != nil && cap(*l) != 0 {
				t.Errorf("an empty list has room: an append would write the shared array")
			}
			return
		}
		lists++
		if cap(*l) != len(*l) {
			t.Errorf("list %q has capacity %d: an append would write the next list", *l, cap(*l))
		}
		p := uintptr(unsafe.Pointer(&(*l)[0]))
		if end != 0 && p != end {
			t.Errorf("list %q is not in the previous list's array", *l)
		}
		end = p + uintptr(len(*l))*unsafe.Sizeof("")
	})
	if lists < 3 {
		t.Fatalf("walked %d lists: the state is not the full one", lists)
	}
}
