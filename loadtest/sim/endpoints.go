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
	v, e, release, ok := s.modelRequest(w, r, KindEmbeddings, "embeddings")
	if !ok {
		return
	}
	defer release()
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
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_value", "input", "input must be a non-empty string or array")
		return
	}
	b64 := string(v.GetStringBytes("encoding_format")) == "base64"
	dims := e.Dims
	if d := v.GetInt("dimensions"); d > 0 && d < dims {
		dims = d
	}
	ctx := r.Context()
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if !s.hold(ctx, w, b, b.Latency) {
		return
	}
	if s.cfg.Flavor == FlavorOllama {
		e.loaded.Store(true)
	}
	tokens := 0
	out := make([]byte, 0, 64+len(inputs)*(dims*12+64))
	out = append(out, `{"object":"list","data":[`...)
	for i, s := range inputs {
		tokens += len(s)/4 + 1
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"object":"embedding","index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		out = append(out, `,"embedding":`...)
		vec := Embedding(s, e.Dims)[:dims]
		if b64 {
			raw := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			out = append(out, '"')
			out = base64.StdEncoding.AppendEncode(out, raw)
			out = append(out, '"')
		} else {
			out = append(out, '[')
			for j, f := range vec {
				if j > 0 {
					out = append(out, ',')
				}
				out = strconv.AppendFloat(out, float64(f), 'g', -1, 32)
			}
			out = append(out, ']')
		}
		out = append(out, '}')
	}
	out = append(out, `],"model":`...)
	out = append(out, e.nameJSON...)
	out = append(out, `,"usage":{"prompt_tokens":`...)
	out = strconv.AppendInt(out, int64(tokens), 10)
	out = append(out, `,"total_tokens":`...)
	out = strconv.AppendInt(out, int64(tokens), 10)
	out = append(out, "}}"...)
	s.promptTokens.Add(int64(tokens))
	h := w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
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
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_body", "", "expected a multipart/form-data body: "+err.Error())
		return
	}
	defer r.MultipartForm.RemoveAll()
	name := r.FormValue("model")
	if name == "" {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "missing_required_parameter", "model", "you must provide a model parameter")
		return
	}
	f, fh, err := r.FormFile("file")
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "missing_required_parameter", "file", "you must provide a file parameter")
		return
	}
	size, _ := io.Copy(io.Discard, f)
	f.Close()
	e, ok := s.models.Load().byName[name]
	if !ok {
		modelNotFound(w, name)
		return
	}
	if e.Kind != KindTranscription {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "model_not_supported", "model", "model "+name+" does not support transcription")
		return
	}
	format := r.FormValue("response_format")
	switch format {
	case "", "json", "text", "verbose_json", "srt", "vtt":
	default:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_value", "response_format", "response_format must be json, text, srt, verbose_json or vtt")
		return
	}
	ctx := r.Context()
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if !s.hold(ctx, w, b, b.Latency+b.TTFT) {
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
		writeJSON(w, http.StatusOK, map[string]any{
			"task": "transcribe", "language": lang, "duration": dur, "text": text,
			"segments": []segment{{ID: 0, Start: 0, End: dur, Text: " " + text, Tokens: []int{50364, 50365},
				AvgLogprob: -0.25, CompressionRatio: 1.2, NoSpeechProb: 0.01}},
		})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"text": text})
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

// modelRequest reads a JSON request body naming a model of kind (what names
// the operation in the error). On any problem it answers the client in
// OpenAI's error format and returns ok false. On success the caller must
// call release once done with v (v lives in a pooled parser).
func (s *Server) modelRequest(w http.ResponseWriter, r *http.Request, kind, what string) (v *fastjson.Value, e *modelEntry, release func(), ok bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_body", "", "could not read the request body")
		return nil, nil, nil, false
	}
	s.last.Store(&Request{Method: r.Method, Path: r.URL.Path, Header: r.Header, Body: body})
	p := parsers.Get()
	release = func() { parsers.Put(p) }
	v, err = p.ParseBytes(body)
	if err != nil || v.Type() != fastjson.TypeObject {
		release()
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", "", "We could not parse the JSON body of your request.")
		return nil, nil, nil, false
	}
	name := string(v.GetStringBytes("model"))
	if name == "" {
		release()
		writeError(w, http.StatusBadRequest, "invalid_request_error", "missing_required_parameter", "model", "you must provide a model parameter")
		return nil, nil, nil, false
	}
	e, found := s.models.Load().byName[name]
	if !found {
		release()
		modelNotFound(w, name)
		return nil, nil, nil, false
	}
	if e.Kind != kind {
		release()
		writeError(w, http.StatusBadRequest, "invalid_request_error", "model_not_supported", "model", "model "+name+" does not support "+what)
		return nil, nil, nil, false
	}
	return v, e, release, true
}

// hold makes a non-streaming answer wait d (the configured latency, time to
// first token…) and then applies the injected failures. It returns false
// when the answer is settled: the client went away (counted), or a failure
// was written.
func (s *Server) hold(ctx context.Context, w http.ResponseWriter, b *Behavior, d time.Duration) bool {
	var t *time.Timer
	if !pause(ctx, &t, d) {
		s.clientAborts.Add(1)
		return false
	}
	return !s.inject(w, b)
}
