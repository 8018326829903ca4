package sim

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// Embedding returns the vector the simulator answers for input with dims
// dimensions: deterministic (a hash of the input seeds it) and unit length.
func Embedding(input string, dims int) []float32 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, input)
	x := h.Sum64()
	v := make([]float32, dims)
	var norm float64
	for i := range v {
		// splitmix64
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		f := float64(z>>11)/float64(1<<53)*2 - 1
		v[i] = float32(f)
		norm += f * f
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, b *Behavior) {
	body, ok := s.readBody(w, r, apiEmbeddings)
	if !ok {
		return
	}
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil || v.Type() != fastjson.TypeObject {
		s.badJSON(w, apiEmbeddings, body)
		return
	}
	if s.cfg.Flavor == FlavorOllama {
		s.ollamaOpenAIEmbed(w, r, b, v)
		return
	}
	name := string(v.GetStringBytes("model"))
	e, ok := s.openAIModel(w, apiEmbeddings, name)
	if !ok || !s.kindCheck(w, apiEmbeddings, e, KindEmbeddings) {
		return
	}
	var inputs []string
	in := v.Get("input")
	switch {
	case in == nil:
	case in.Type() == fastjson.TypeString:
		inputs = append(inputs, string(in.GetStringBytes()))
	case in.Type() == fastjson.TypeArray:
		for _, it := range in.GetArray() {
			if it.Type() == fastjson.TypeString {
				inputs = append(inputs, string(it.GetStringBytes()))
			} else {
				inputs = append(inputs, it.String()) // token arrays: hash their JSON
			}
		}
		if len(inputs) > 0 && in.GetArray()[0].Type() == fastjson.TypeNumber {
			inputs = []string{in.String()} // one token array
		}
	}
	if len(inputs) == 0 {
		s.fail(w, apiEmbeddings, apiErr{status: 400, code: "invalid_value", param: "input", msg: "input must be a non-empty string or array"})
		return
	}
	res := embedResult{model: name, base64: string(v.GetStringBytes("encoding_format")) == "base64"}
	if res.model == "" {
		res.model = e.Name
	}
	dims := e.Dims
	if d := v.GetInt("dimensions"); d > 0 && d < dims {
		dims = d
	}
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if !s.hold(r.Context(), w, apiEmbeddings, b, b.Latency) {
		return
	}
	for _, in := range inputs {
		res.tokens += len(in)/4 + 1
		res.vecs = append(res.vecs, Embedding(in, e.Dims)[:dims])
	}
	s.promptTokens.Add(int64(res.tokens))
	writeRaw(w, http.StatusOK, ctJSON, res.appendOpenAI(make([]byte, 0, 64+len(inputs)*(dims*12+64))))
}

// appendBase64Floats writes v as base64 of its little-endian float32s (the
// OpenAI "base64" encoding_format).
func appendBase64Floats(b []byte, v []float32) []byte {
	raw := make([]byte, 4*len(v))
	for j, f := range v {
		binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '"')
}

// Transcript is the text the simulator transcribes an upload of size bytes to.
func Transcript(filename string, size int64) string {
	return "This is a simulated transcription of " + filename + " (" + strconv.FormatInt(size, 10) + " bytes)."
}

type segment struct {
	ID               int     `json:"id"`
	Seek             int     `json:"seek"`
	Start            float64 `json:"start"`
	End              float64 `json:"end"`
	Text             string  `json:"text"`
	Tokens           []int   `json:"tokens"`
	Temperature      float64 `json:"temperature"`
	AvgLogprob       float64 `json:"avg_logprob"`
	CompressionRatio float64 `json:"compression_ratio"`
	NoSpeechProb     float64 `json:"no_speech_prob"`
}

func (s *Server) transcription(w http.ResponseWriter, r *http.Request, b *Behavior) {
	s.last.Store(&Request{Method: r.Method, Path: r.URL.Path, Header: r.Header})
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		s.fail(w, apiOther, apiErr{status: 400, code: "invalid_body", msg: "expected a multipart/form-data body: " + err.Error()})
		return
	}
	defer r.MultipartForm.RemoveAll()
	name := r.FormValue("model")
	f, fh, err := r.FormFile("file")
	if err != nil {
		s.fail(w, apiOther, apiErr{status: 400, code: "missing_required_parameter", param: "file", msg: "you must provide a file parameter"})
		return
	}
	size, _ := io.Copy(io.Discard, f)
	f.Close()
	e, ok := s.openAIModel(w, apiOther, name)
	if !ok || !s.kindCheck(w, apiOther, e, KindTranscription) {
		return
	}
	format := r.FormValue("response_format")
	switch format {
	case "", "json", "text", "verbose_json", "srt", "vtt":
	default:
		s.fail(w, apiOther, apiErr{status: 400, code: "invalid_value", param: "response_format", msg: "response_format must be json, text, srt, verbose_json or vtt"})
		return
	}
	ctx := r.Context()
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if !s.hold(ctx, w, apiOther, b, b.Latency+b.TTFT) {
		return
	}
	text := Transcript(fh.Filename, size)
	dur := float64(size) / 32000 // 16 kHz, 16-bit mono
	if dur < 0.5 {
		dur = 0.5
	}
	lang := r.FormValue("language")
	if lang == "" {
		lang = "en"
	}
	switch format {
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, text+"\n")
	case "srt":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "1\n00:00:00,000 --> "+stamp(dur, ',')+"\n"+text+"\n\n")
	case "vtt":
		w.Header().Set("Content-Type", "text/vtt; charset=utf-8")
		_, _ = io.WriteString(w, "WEBVTT\n\n00:00:00.000 --> "+stamp(dur, '.')+"\n"+text+"\n\n")
	case "verbose_json":
		writeJSON(w, http.StatusOK, ctJSON, map[string]any{
			"task": "transcribe", "language": lang, "duration": dur, "text": text,
			"segments": []segment{{ID: 0, Start: 0, End: dur, Text: " " + text, Tokens: []int{50364, 50365},
				AvgLogprob: -0.25, CompressionRatio: 1.2, NoSpeechProb: 0.01}},
		}, false)
	default:
		writeJSON(w, http.StatusOK, ctJSON, map[string]string{"text": text}, false)
	}
}

func stamp(sec float64, sep byte) string {
	ms := int64(sec * 1000)
	h, m, s, r := ms/3600000, ms/60000%60, ms/1000%60, ms%1000
	p := func(v int64, n int) string {
		x := strconv.FormatInt(v, 10)
		return strings.Repeat("0", max(0, n-len(x))) + x
	}
	return p(h, 2) + ":" + p(m, 2) + ":" + p(s, 2) + string(sep) + p(r, 3)
}

// modelRequest reads a JSON request body naming a model of kind. On any
// problem it answers the client in the flavor's error format and returns
// ok false. On success the caller must call release once done with v (v
// lives in a pooled parser).
func (s *Server) modelRequest(w http.ResponseWriter, r *http.Request, kind string) (v *fastjson.Value, e *modelEntry, release func(), ok bool) {
	body, ok := s.readBody(w, r, apiOther)
	if !ok {
		return nil, nil, nil, false
	}
	p := parsers.Get()
	release = func() { parsers.Put(p) }
	v, err := p.ParseBytes(body)
	if err != nil || v.Type() != fastjson.TypeObject {
		release()
		s.badJSON(w, apiOther, body)
		return nil, nil, nil, false
	}
	e, found := s.openAIModel(w, apiOther, string(v.GetStringBytes("model")))
	if !found || !s.kindCheck(w, apiOther, e, kind) {
		release()
		return nil, nil, nil, false
	}
	return v, e, release, true
}

// hold makes a non-streaming answer wait d (the configured latency, time to
// first token…) and then applies the injected failures. It returns false
// when the answer is settled: the client went away (counted), or a failure
// was written.
func (s *Server) hold(ctx context.Context, w http.ResponseWriter, a api, b *Behavior, d time.Duration) bool {
	var t *time.Timer
	if !pause(ctx, &t, d) {
		s.clientAborts.Add(1)
		return false
	}
	return !s.inject(w, a, b)
}
