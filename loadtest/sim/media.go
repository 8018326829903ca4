package sim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/valyala/fastjson"
)

// Speech formats and their Content-Type, as OpenAI's /v1/audio/speech
// answers them.
var speechTypes = map[string]string{
	"mp3":  "audio/mpeg",
	"opus": "audio/opus",
	"aac":  "audio/aac",
	"flac": "audio/flac",
	"wav":  "audio/wav",
	"pcm":  "audio/pcm",
}

// speechVoices are OpenAI's voices; the simulator accepts any of them.
var speechVoices = map[string]bool{
	"alloy": true, "ash": true, "ballad": true, "coral": true, "echo": true, "fable": true,
	"onyx": true, "nova": true, "sage": true, "shimmer": true, "verse": true,
}

// SpeechAudio is what the simulator answers to a speech request: the
// Content-Type for format (mp3 when empty) and deterministic audio bytes
// for (input, voice), about 0.4s of 24 kHz mono per word, that start the
// way the format does (an MP3 frame header, "OggS", an ADTS header,
// "fLaC", a RIFF/WAVE header, raw 16-bit PCM). ok is false for an unknown
// format.
func SpeechAudio(input, voice, format string) (contentType string, audio []byte, ok bool) {
	if format == "" {
		format = "mp3"
	}
	contentType, ok = speechTypes[format]
	if !ok {
		return "", nil, false
	}
	words := len(strings.Fields(input))
	samples := max(words, 1) * 9600 // 0.4s at 24 kHz
	h := fnv.New64a()
	_, _ = io.WriteString(h, voice)
	_, _ = io.WriteString(h, "\x00")
	_, _ = io.WriteString(h, input)
	x := h.Sum64()
	pcm := make([]byte, 2*samples)
	for i := 0; i < samples; i++ {
		// splitmix64 noise at low amplitude: a quiet hiss, deterministic.
		x += 0x9e3779b97f4a7c15
		z := (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(int16(int64(z>>48)%512)))
	}
	var out []byte
	switch format {
	case "pcm":
		out = pcm
	case "wav":
		out = make([]byte, 44, 44+len(pcm))
		copy(out, "RIFF")
		binary.LittleEndian.PutUint32(out[4:], uint32(36+len(pcm)))
		copy(out[8:], "WAVEfmt ")
		binary.LittleEndian.PutUint32(out[16:], 16)
		binary.LittleEndian.PutUint16(out[20:], 1) // PCM
		binary.LittleEndian.PutUint16(out[22:], 1) // mono
		binary.LittleEndian.PutUint32(out[24:], 24000)
		binary.LittleEndian.PutUint32(out[28:], 48000)
		binary.LittleEndian.PutUint16(out[32:], 2)
		binary.LittleEndian.PutUint16(out[34:], 16)
		copy(out[36:], "data")
		binary.LittleEndian.PutUint32(out[40:], uint32(len(pcm)))
		out = append(out, pcm...)
	default:
		// Compressed formats: a format header, then bytes of the signal (a
		// simulator need not encode for real).
		magic := map[string]string{
			"mp3":  "\xff\xfb\x90\x64", // MPEG-1 layer III frame header, 128 kbit/s, 44.1 kHz
			"opus": "OggS\x00\x02",
			"aac":  "\xff\xf1\x50\x80", // ADTS
			"flac": "fLaC\x00\x00\x00\x22",
		}[format]
		n := len(pcm) / 8
		out = make([]byte, 0, len(magic)+n)
		out = append(out, magic...)
		out = append(out, pcm[:n]...)
	}
	return contentType, out, true
}

// speech answers POST /v1/audio/speech: JSON {model, input, voice,
// response_format, speed} in, audio bytes out.
func (s *Server) speech(w http.ResponseWriter, r *http.Request, b *Behavior) {
	v, _, release, ok := s.modelRequest(w, r, KindSpeech)
	if !ok {
		return
	}
	defer release()
	input := string(v.GetStringBytes("input"))
	if input == "" {
		s.fail(w, apiOther, apiErr{status: 400, code: "missing_required_parameter", param: "input", msg: "you must provide an input parameter"})
		return
	}
	if len(input) > 4096 {
		s.fail(w, apiOther, apiErr{status: 400, code: "string_above_max_length", param: "input", msg: "input is longer than 4096 characters"})
		return
	}
	voice := string(v.GetStringBytes("voice"))
	if !speechVoices[voice] {
		s.fail(w, apiOther, apiErr{status: 400, code: "invalid_value", param: "voice", msg: "voice must be one of alloy, ash, ballad, coral, echo, fable, onyx, nova, sage, shimmer, verse"})
		return
	}
	if sp := v.Get("speed"); sp != nil {
		if f, err := sp.Float64(); err != nil || f < 0.25 || f > 4 {
			s.fail(w, apiOther, apiErr{status: 400, code: "invalid_value", param: "speed", msg: "speed must be a number from 0.25 to 4.0"})
			return
		}
	}
	ct, audio, ok := SpeechAudio(input, voice, string(v.GetStringBytes("response_format")))
	if !ok {
		s.fail(w, apiOther, apiErr{status: 400, code: "invalid_value", param: "response_format", msg: "response_format must be mp3, opus, aac, flac, wav or pcm"})
		return
	}
	ctx := r.Context()
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if !s.hold(ctx, w, apiOther, b, b.Latency+b.TTFT) {
		return
	}
	s.promptTokens.Add(int64(len(input)/4 + 1))
	h := w.Header()
	h["Content-Type"] = []string{ct}
	h["Content-Length"] = []string{strconv.Itoa(len(audio))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(audio)
}

// Image formats the simulator renders (output_format).
var imageTypes = map[string]string{"png": "image/png", "jpeg": "image/jpeg"}

// ImageBytes is the image the simulator renders for the i-th image of a
// request with prompt: w×h, one colour derived from (prompt, i), encoded as
// format ("png" when empty, or "jpeg"). ok is false for another format.
func ImageBytes(prompt string, i, w, h int, format string) (data []byte, ok bool) {
	if format == "" {
		format = "png"
	}
	if _, ok := imageTypes[format]; !ok {
		return nil, false
	}
	hs := fnv.New32a()
	_, _ = io.WriteString(hs, prompt)
	_, _ = io.WriteString(hs, "#"+strconv.Itoa(i))
	c := hs.Sum32()
	col := color.RGBA{R: uint8(c), G: uint8(c >> 8), B: uint8(c >> 16), A: 255}
	// One colour: a paletted image encodes fast at any size.
	img := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{col})
	var buf bytes.Buffer
	if format == "jpeg" {
		_ = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 75})
	} else {
		_ = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img)
	}
	return buf.Bytes(), true
}

// imageSize parses "WxH" ("auto" is 1024x1024).
func imageSize(s string) (w, h int, ok bool) {
	if s == "" || s == "auto" {
		return 1024, 1024, true
	}
	ws, hs, found := strings.Cut(s, "x")
	if !found {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if err1 != nil || err2 != nil || w < 1 || h < 1 || w > 4096 || h > 4096 {
		return 0, 0, false
	}
	return w, h, true
}

// images answers POST /v1/images/generations: JSON {model, prompt, n, size,
// response_format (url | b64_json), output_format} in, {"created", "data":
// [{"url"|"b64_json", "revised_prompt"}]} out. URLs point at this server
// (GET /v1/images/files/…), which renders the same image again.
func (s *Server) images(w http.ResponseWriter, r *http.Request, b *Behavior) {
	v, _, release, ok := s.modelRequest(w, r, KindImages)
	if !ok {
		return
	}
	defer release()
	prompt := string(v.GetStringBytes("prompt"))
	if prompt == "" {
		s.fail(w, apiOther, apiErr{status: 400, code: "missing_required_parameter", param: "prompt", msg: "you must provide a prompt parameter"})
		return
	}
	n := 1
	if nv := v.Get("n"); nv != nil && nv.Type() != fastjson.TypeNull {
		var err error
		if n, err = nv.Int(); err != nil || n < 1 || n > 10 {
			s.fail(w, apiOther, apiErr{status: 400, code: "invalid_value", param: "n", msg: "n must be an integer from 1 to 10"})
			return
		}
	}
	size := string(v.GetStringBytes("size"))
	iw, ih, ok := imageSize(size)
	if !ok {
		s.fail(w, apiOther, apiErr{status: 400, code: "invalid_value", param: "size", msg: "size must be auto or WIDTHxHEIGHT, e.g. 1024x1024"})
		return
	}
	rf := string(v.GetStringBytes("response_format"))
	if rf != "" && rf != "url" && rf != "b64_json" {
		s.fail(w, apiOther, apiErr{status: 400, code: "invalid_value", param: "response_format", msg: "response_format must be url or b64_json"})
		return
	}
	format := string(v.GetStringBytes("output_format"))
	if format == "" {
		format = "png"
	}
	if _, ok := imageTypes[format]; !ok {
		s.fail(w, apiOther, apiErr{status: 400, code: "invalid_value", param: "output_format", msg: "output_format must be png or jpeg"})
		return
	}
	ctx := r.Context()
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if !s.hold(ctx, w, apiOther, b, b.Latency+b.TTFT+time.Duration(n-1)*b.ChunkInterval) {
		return
	}
	s.promptTokens.Add(int64(len(prompt)/4 + 1))
	out := []byte(`{"created":`)
	out = strconv.AppendInt(out, time.Now().Unix(), 10)
	out = append(out, `,"data":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			out = append(out, ',')
		}
		if rf == "b64_json" {
			img, _ := ImageBytes(prompt, i, iw, ih, format)
			out = append(out, `{"b64_json":"`...)
			out = base64.StdEncoding.AppendEncode(out, img)
			out = append(out, '"')
		} else {
			out = append(out, `{"url":`...)
			out = jsonw.AppendString(out, s.url+ImagePath(prompt, i, iw, ih, format))
		}
		out = append(out, `,"revised_prompt":`...)
		out = jsonw.AppendString(out, prompt)
		out = append(out, '}')
	}
	out = append(out, "]}"...)
	h := w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// imageFilesPrefix is where the simulator serves the images its URLs name.
const imageFilesPrefix = "/v1/images/files/"

// ImagePath is the path (on the simulator) of the i-th image generated for
// prompt: GET renders it again.
func ImagePath(prompt string, i, w, h int, format string) string {
	return imageFilesPrefix + strconv.Itoa(w) + "x" + strconv.Itoa(h) + "-" + strconv.Itoa(i) + "." + format +
		"?prompt=" + base64.RawURLEncoding.EncodeToString([]byte(prompt))
}

// imageFile serves GET /v1/images/files/WxH-I.FORMAT?prompt=….
func (s *Server) imageFile(w http.ResponseWriter, r *http.Request, _ *Behavior) {
	name := strings.TrimPrefix(r.URL.Path, imageFilesPrefix)
	dims, rest, ok1 := strings.Cut(name, "-")
	idx, format, ok2 := strings.Cut(rest, ".")
	iw, ih, ok3 := imageSize(dims)
	i, err := strconv.Atoi(idx)
	prompt, perr := base64.RawURLEncoding.DecodeString(r.URL.Query().Get("prompt"))
	if !ok1 || !ok2 || !ok3 || err != nil || i < 0 || perr != nil {
		s.fail(w, apiOther, apiErr{status: 404, code: "not_found", param: "", msg: "no such image"})
		return
	}
	img, ok := ImageBytes(string(prompt), i, iw, ih, format)
	if !ok {
		s.fail(w, apiOther, apiErr{status: 404, code: "not_found", param: "", msg: "no such image"})
		return
	}
	w.Header().Set("Content-Type", imageTypes[format])
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	_, _ = w.Write(img)
}
