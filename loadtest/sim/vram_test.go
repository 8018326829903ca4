package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const gb = 1_000_000_000

func psNames(t testing.TB, s *Server) []string {
	t.Helper()
	var names []string
	for _, r := range s.Resident() {
		if !r.Loading {
			names = append(names, r.Name)
		}
	}
	return names
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func nativeChat(t testing.TB, s *Server, model, extra string) map[string]any {
	t.Helper()
	status, _, body := post(t, s, "/api/chat", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}],"stream":false`+extra+`}`)
	if status != 200 {
		t.Fatalf("%s: %d %s", model, status, body)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A request for a model that is not loaded waits while it loads, and
// reports the wait as load_duration.
func TestOllamaLoadOnFirstUse(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, Models: []Model{{Name: "a"}},
		Behavior: Behavior{Chunks: 2, LoadTime: 300 * time.Millisecond}})
	done := make(chan map[string]any, 1)
	go func() { done <- nativeChat(t, s, "a", "") }()
	waitUntil(t, "the load to start", func() bool {
		r := s.Resident()
		return len(r) == 1 && r[0].Loading
	})
	select {
	case v := <-done:
		t.Fatalf("answered while the model was loading: %v", v)
	default:
	}
	v := <-done
	if ld := time.Duration(v["load_duration"].(float64)); ld < 300*time.Millisecond {
		t.Fatalf("load_duration %v, want at least the load time", ld)
	}
	if names := psNames(t, s); len(names) != 1 || names[0] != "a" {
		t.Fatalf("ps %v", names)
	}
	// Loaded now: no second load.
	v = nativeChat(t, s, "a", "")
	if ld := time.Duration(v["load_duration"].(float64)); ld >= 300*time.Millisecond || s.Stats().Loads != 1 {
		t.Fatalf("second request loaded again: %v, %d loads", ld, s.Stats().Loads)
	}
}

// A model that does not fit evicts an idle one (server/sched.go), and the
// budget is never exceeded.
func TestOllamaEvictsIdleToFit(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, VRAMTotal: 10 * gb, Models: []Model{
		{Name: "a", SizeVRAM: 6 * gb, Loaded: true}, {Name: "b", SizeVRAM: 6 * gb}, {Name: "c", SizeVRAM: 3 * gb},
	}})
	nativeChat(t, s, "b", "")
	if names := psNames(t, s); len(names) != 1 || names[0] != "b" {
		t.Fatalf("ps %v, want only b", names)
	}
	nativeChat(t, s, "c", "") // fits beside b
	if n := len(psNames(t, s)); n != 2 {
		t.Fatalf("ps %v", psNames(t, s))
	}
	st := s.Stats()
	if st.VRAMPeak > 10*gb || st.Unloads != 1 || st.Loads != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// When every loaded model is busy, the new one waits for the victim's
// requests to finish; a busy model is never pulled from under a request.
func TestOllamaWaitsForBusyVictim(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, VRAMTotal: 10 * gb, Models: []Model{
		{Name: "a", SizeVRAM: 6 * gb, Loaded: true}, {Name: "b", SizeVRAM: 6 * gb},
	}, Behavior: Behavior{Chunks: 20, ChunkInterval: 10 * time.Millisecond}})
	resp, err := http.Post(s.URL()+"/api/chat", "application/json", strings.NewReader(`{"model":"a","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil { // a is streaming now
		t.Fatal(err)
	}
	bDone := make(chan int64, 1)
	go func() {
		nativeChat(t, s, "b", "")
		bDone <- s.Stats().StreamsCompleted
	}()
	for { // drain a's stream
		if _, err := rd.ReadString('\n'); err != nil {
			break
		}
	}
	if completed := <-bDone; completed != 1 {
		t.Fatalf("b answered while a was still streaming (%d streams completed)", completed)
	}
	if names := psNames(t, s); len(names) != 1 || names[0] != "b" {
		t.Fatalf("ps %v", names)
	}
}

// keep_alive: the request's own, 0 to unload, negative for ever.
func TestOllamaKeepAlive(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, Models: []Model{{Name: "a"}, {Name: "b"}, {Name: "c"}}})
	nativeChat(t, s, "a", `,"keep_alive":"50ms"`)
	nativeChat(t, s, "b", `,"keep_alive":-1`)
	nativeChat(t, s, "c", "")
	waitUntil(t, "a to expire", func() bool { return len(psNames(t, s)) == 2 })
	for _, r := range s.Resident() {
		if r.Name == "b" && r.ExpiresAt.Year() < 2200 {
			t.Fatalf("keep_alive -1 expires at %v", r.ExpiresAt)
		}
		if r.Name == "c" && (r.ExpiresAt.Before(time.Now().Add(4*time.Minute)) || r.ExpiresAt.After(time.Now().Add(6*time.Minute))) {
			t.Fatalf("default keep-alive: expires at %v", r.ExpiresAt)
		}
	}
	// An empty prompt with keep_alive 0 unloads at once (done_reason unload).
	status, _, body := post(t, s, "/api/generate", `{"model":"c","keep_alive":0}`)
	if status != 200 || !strings.Contains(body, `"done_reason":"unload"`) {
		t.Fatalf("%d %s", status, body)
	}
	if names := psNames(t, s); len(names) != 1 || names[0] != "b" {
		t.Fatalf("ps %v", names)
	}
	// An empty prompt loads (done_reason load), keeping the keep_alive.
	status, _, body = post(t, s, "/api/generate", `{"model":"c","prompt":"","keep_alive":"10m"}`)
	if status != 200 || !strings.Contains(body, `"done_reason":"load"`) || len(psNames(t, s)) != 2 {
		t.Fatalf("%d %s %v", status, body, psNames(t, s))
	}
}

// At OLLAMA_MAX_LOADED_MODELS the runner with the shortest keep-alive goes
// first (ByDurationAndName), then by name.
func TestOllamaEvictionOrder(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, MaxLoaded: 2, Models: []Model{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}})
	nativeChat(t, s, "a", `,"keep_alive":"10m"`)
	nativeChat(t, s, "b", `,"keep_alive":"1m"`)
	nativeChat(t, s, "c", "")
	got := psNames(t, s)
	if len(got) != 2 || !contains(got, "a") || !contains(got, "c") {
		t.Fatalf("ps %v, want a and c (b had the shortest keep-alive)", got)
	}
	nativeChat(t, s, "d", `,"keep_alive":"10m"`) // a (10m) and c (5m): c goes
	if got := psNames(t, s); !contains(got, "a") || !contains(got, "d") {
		t.Fatalf("ps %v, want a and d", got)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// The first model always loads, partly offloaded when it does not fit.
func TestOllamaPartialOffload(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, VRAMTotal: 4 * gb, Models: []Model{{Name: "big", SizeVRAM: 6 * gb}}})
	nativeChat(t, s, "big", "")
	status, _, body := post(t, s, "/api/ps", "")
	if status != 405 {
		t.Fatalf("POST /api/ps: %d", status)
	}
	resp, err := http.Get(s.URL() + "/api/ps")
	if err != nil {
		t.Fatal(err)
	}
	var ps struct {
		Models []struct {
			Size     int64 `json:"size"`
			SizeVRAM int64 `json:"size_vram"`
		}
	}
	_ = json.NewDecoder(resp.Body).Decode(&ps)
	resp.Body.Close()
	r := s.Resident()
	if len(r) != 1 || r[0].Size != 6*gb || r[0].SizeVRAM != 4*gb || len(ps.Models) != 1 || ps.Models[0].SizeVRAM != 4*gb || ps.Models[0].Size != 6*gb {
		t.Fatalf("resident %+v ps %+v (%s)", r, ps, body)
	}
}

// Many clients on more models than fit: every request is answered and the
// budget holds (a hammer test of the residency model).
func TestOllamaResidencyHammer(t *testing.T) {
	models := []Model{{Name: "m0", SizeVRAM: 4 * gb}, {Name: "m1", SizeVRAM: 4 * gb}, {Name: "m2", SizeVRAM: 4 * gb}, {Name: "m3", SizeVRAM: 4 * gb}}
	s := start(t, Config{Flavor: FlavorOllama, VRAMTotal: 9 * gb, Models: models,
		Behavior: Behavior{Chunks: 2, LoadTime: time.Millisecond, UnloadTime: time.Millisecond}})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 12; i++ {
				m := fmt.Sprintf("m%d", (g+i)%4)
				resp, err := http.Post(s.URL()+"/api/chat", "application/json",
					strings.NewReader(`{"model":"`+m+`","messages":[{"role":"user","content":"x"}],"stream":false}`))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("%s: %d", m, resp.StatusCode)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.VRAMPeak > 9*gb || st.Loads < 4 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// llama.cpp router mode: autoload on use, unload_lru at --models-max, and
// the /models load and unload endpoints with their errors.
func TestLlamaRouter(t *testing.T) {
	s := start(t, Config{Flavor: FlavorLlamaCPP, MaxLoaded: 1, Models: []Model{{Name: "a"}, {Name: "b"}}})
	chat := func(m string) {
		status, _, body := post(t, s, "/v1/chat/completions", `{"model":"`+m+`","messages":[{"role":"user","content":"x"}]}`)
		if status != 200 {
			t.Fatalf("%s: %d %s", m, status, body)
		}
	}
	chat("a")
	if got := psNames(t, s); len(got) != 1 || got[0] != "a" {
		t.Fatalf("after a: %v", got)
	}
	chat("b")
	if got := psNames(t, s); len(got) != 1 || got[0] != "b" {
		t.Fatalf("after b: %v", got)
	}
	resp, err := http.Get(s.URL() + "/models")
	if err != nil {
		t.Fatal(err)
	}
	var list modelList
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Data) != 2 || list.Data[0].Status == nil || list.Data[0].Status.Value != "unloaded" || list.Data[1].Status.Value != "loaded" {
		t.Fatalf("/models %+v", list)
	}
	for _, c := range []struct{ path, body, want string }{
		{"/models/load", `{"model":"a"}`, `{"success":true}`},
		{"/models/load", `{"model":"nope"}`, `{"error":{"code":404,"message":"model is not found","type":"not_found_error"}}`},
		{"/models/unload", `{"model":"nope"}`, `{"error":{"code":400,"message":"model is not found","type":"invalid_request_error"}}`},
	} {
		if _, _, body := post(t, s, c.path, c.body); body != c.want {
			t.Fatalf("%s %s: %s", c.path, c.body, body)
		}
	}
	waitUntil(t, "a to load", func() bool { got := psNames(t, s); return len(got) == 1 && got[0] == "a" })
	if _, _, body := post(t, s, "/models/unload", `{"model":"a"}`); body != `{"success":true}` {
		t.Fatal(body)
	}
	if _, _, body := post(t, s, "/models/unload", `{"model":"a"}`); !strings.Contains(body, "model is not loaded") {
		t.Fatal(body)
	}
	status, _, body := post(t, s, "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`)
	if status != 400 || !strings.Contains(body, `"model not found"`) {
		t.Fatalf("unknown model: %d %s", status, body)
	}
}

// An `ollama cp` alias (Model.CopyOf) has its source's digest in /api/tags
// and shares its runner: a request for either name uses the loaded one (no
// second load), /api/ps lists it once under the name that loaded it
// (server/sched.go keys runners by ModelPath; PsHandler reports the
// runner's model), and keep_alive 0 through the alias unloads it.
func TestOllamaCopySharesRunner(t *testing.T) {
	s := start(t, Config{Flavor: FlavorOllama, VRAMTotal: 10 * gb, Models: []Model{
		{Name: "llama3.2:1b", SizeVRAM: 2 * gb, ParameterSize: "1.2B"}, {Name: "mine", CopyOf: "llama3.2:1b"}, {Name: "other:latest", SizeVRAM: 2 * gb},
	}, Behavior: Behavior{Chunks: 2}})
	type entry struct {
		Name, Digest string
		Details      struct {
			ParameterSize string `json:"parameter_size"`
		}
	}
	list := func(path string) map[string]entry {
		status, _, body := request(t, s, http.MethodGet, path, "")
		var v struct{ Models []entry }
		if err := json.Unmarshal([]byte(body), &v); err != nil || status != 200 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
		out := map[string]entry{}
		for _, m := range v.Models {
			out[m.Name] = m
		}
		return out
	}
	tags := list("/api/tags")
	src, alias := tags["llama3.2:1b"], tags["mine:latest"]
	if src.Digest == "" || alias.Digest != src.Digest || alias.Details.ParameterSize != "1.2B" || tags["other:latest"].Digest == src.Digest {
		t.Fatalf("tags %+v: want the alias with its source's digest and details", tags)
	}

	nativeChat(t, s, "llama3.2:1b", "")
	nativeChat(t, s, "mine", "")
	if st := s.Stats(); st.Loads != 1 || st.VRAMUsed != 2*gb {
		t.Fatalf("stats %+v: want one load for the two names", st)
	}
	ps := list("/api/ps")
	if len(ps) != 1 || ps["llama3.2:1b"].Digest != src.Digest {
		t.Fatalf("ps %+v: want one runner, under the name that loaded it", ps)
	}
	for _, m := range s.Models() {
		if m.Loaded != (m.Name != "other:latest") {
			t.Fatalf("models %+v: both names share the loaded runner", s.Models())
		}
	}

	status, _, body := post(t, s, "/api/generate", `{"model":"mine","keep_alive":0}`)
	if status != 200 || !strings.Contains(body, `"done_reason":"unload"`) {
		t.Fatalf("unload through the alias: %d %s", status, body)
	}
	if ps := list("/api/ps"); len(ps) != 0 {
		t.Fatalf("ps %+v after unloading the alias: the shared runner is gone", ps)
	}

	// Loaded first through the alias, it is listed under the alias.
	nativeChat(t, s, "mine", "")
	if ps := list("/api/ps"); len(ps) != 1 || ps["mine:latest"].Digest != src.Digest {
		t.Fatalf("ps %+v: want the runner under the alias that loaded it", ps)
	}
}
