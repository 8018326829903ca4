package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
)

// parsed is a GGUF file read back by the test's own reader, written from the
// format description (ggml/src/gguf.cpp, gguf-py's GGUFReader), not from
// Write.
type parsed struct {
	version   uint32
	kv        map[string]any
	keys      []string
	tensors   []parsedTensor
	dataStart int
}

type parsedTensor struct {
	name   string
	shape  []uint64
	typ    TensorType
	offset uint64
	data   []byte
}

type reader struct {
	b   []byte
	pos int
}

func (r *reader) next(n int) []byte {
	if n < 0 || r.pos+n > len(r.b) {
		panic(fmt.Sprintf("read %d bytes at %d past end %d", n, r.pos, len(r.b)))
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	return s
}
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }
func (r *reader) str() string { return string(r.next(int(r.u64()))) }

func (r *reader) value(t ValueType) any {
	switch t {
	case TypeUint8:
		return r.next(1)[0]
	case TypeInt8:
		return int8(r.next(1)[0])
	case TypeUint16:
		return binary.LittleEndian.Uint16(r.next(2))
	case TypeInt16:
		return int16(binary.LittleEndian.Uint16(r.next(2)))
	case TypeUint32:
		return r.u32()
	case TypeInt32:
		return int32(r.u32())
	case TypeUint64:
		return r.u64()
	case TypeInt64:
		return int64(r.u64())
	case TypeFloat32:
		return math.Float32frombits(r.u32())
	case TypeFloat64:
		return math.Float64frombits(r.u64())
	case TypeBool:
		return r.next(1)[0] != 0
	case TypeString:
		return r.str()
	case TypeArray:
		et := ValueType(r.u32())
		n := int(r.u64())
		out := make([]any, n)
		for i := range out {
			out[i] = r.value(et)
		}
		return out
	}
	panic(fmt.Sprintf("unknown value type %d at %d", t, r.pos))
}

func parse(t *testing.T, b []byte) (p parsed) {
	t.Helper()
	defer func() {
		if e := recover(); e != nil {
			t.Fatalf("parse: %v", e)
		}
	}()
	r := &reader{b: b}
	if m := string(r.next(4)); m != Magic {
		t.Fatalf("magic %q", m)
	}
	p.version = r.u32()
	nt, nkv := r.u64(), r.u64()
	p.kv = map[string]any{}
	for i := uint64(0); i < nkv; i++ {
		k := r.str()
		if _, dup := p.kv[k]; dup {
			t.Fatalf("duplicate key %q", k)
		}
		p.kv[k] = r.value(ValueType(r.u32()))
		p.keys = append(p.keys, k)
	}
	for i := uint64(0); i < nt; i++ {
		var pt parsedTensor
		pt.name = r.str()
		pt.shape = make([]uint64, r.u32())
		for j := range pt.shape {
			pt.shape[j] = r.u64()
		}
		pt.typ = TensorType(r.u32())
		pt.offset = r.u64()
		p.tensors = append(p.tensors, pt)
	}
	p.dataStart = (r.pos + Alignment - 1) / Alignment * Alignment
	for i := range p.tensors {
		pt := &p.tensors[i]
		n := uint64(pt.typ.Size())
		for _, d := range pt.shape {
			n *= d
		}
		start := uint64(p.dataStart) + pt.offset
		if start+n > uint64(len(b)) {
			t.Fatalf("tensor %s: data [%d,%d) past end %d", pt.name, start, start+n, len(b))
		}
		pt.data = b[start : start+n]
	}
	return p
}

// floats decodes a tensor's data.
func (pt parsedTensor) floats() []float32 {
	if pt.typ == F32 {
		out := make([]float32, len(pt.data)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(pt.data[4*i:]))
		}
		return out
	}
	out := make([]float32, len(pt.data)/2)
	for i := range out {
		out[i] = half(binary.LittleEndian.Uint16(pt.data[2*i:]))
	}
	return out
}

// half decodes binary16 the slow, obvious way.
func half(h uint16) float32 {
	sign := float64(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h >> 10 & 0x1f)
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return float32(sign * mant * math.Pow(2, -24))
	case 0x1f:
		if mant != 0 {
			return float32(math.NaN())
		}
		return float32(sign * math.Inf(1))
	}
	return float32(sign * (1 + mant/1024) * math.Pow(2, float64(exp-15)))
}

// tiny-llama's tensors as Ollama 0.17.4's /api/show lists them
// (shared fixtures api-show.tiny-llama.txt).
var wantTensors = []struct {
	name  string
	shape []uint64
	typ   TensorType
}{
	{"token_embd.weight", []uint64{64, 514}, F16},
	{"blk.0.attn_norm.weight", []uint64{64}, F32},
	{"blk.0.attn_q.weight", []uint64{64, 64}, F16},
	{"blk.0.attn_k.weight", []uint64{64, 32}, F16},
	{"blk.0.attn_v.weight", []uint64{64, 32}, F16},
	{"blk.0.attn_output.weight", []uint64{64, 64}, F16},
	{"blk.0.ffn_norm.weight", []uint64{64}, F32},
	{"blk.0.ffn_gate.weight", []uint64{64, 128}, F16},
	{"blk.0.ffn_up.weight", []uint64{64, 128}, F16},
	{"blk.0.ffn_down.weight", []uint64{128, 64}, F16},
	{"blk.1.attn_norm.weight", []uint64{64}, F32},
	{"blk.1.attn_q.weight", []uint64{64, 64}, F16},
	{"blk.1.attn_k.weight", []uint64{64, 32}, F16},
	{"blk.1.attn_v.weight", []uint64{64, 32}, F16},
	{"blk.1.attn_output.weight", []uint64{64, 64}, F16},
	{"blk.1.ffn_norm.weight", []uint64{64}, F32},
	{"blk.1.ffn_gate.weight", []uint64{64, 128}, F16},
	{"blk.1.ffn_up.weight", []uint64{64, 128}, F16},
	{"blk.1.ffn_down.weight", []uint64{128, 64}, F16},
	{"output_norm.weight", []uint64{64}, F32},
	{"output.weight", []uint64{64, 514}, F16},
}

func TestTinyLlamaReadsBack(t *testing.T) {
	b := TinyLlama(Options{Seed: 42})
	if len(b) < 200<<10 || len(b) > 400<<10 {
		t.Errorf("size %d bytes, want a few hundred KB", len(b))
	}
	p := parse(t, b)
	if p.version != Version {
		t.Errorf("version %d", p.version)
	}
	for k, want := range map[string]any{
		"general.architecture":                   "llama",
		"general.alignment":                      uint32(32),
		"general.file_type":                      uint32(1),
		"llama.context_length":                   uint32(4096),
		"llama.embedding_length":                 uint32(64),
		"llama.block_count":                      uint32(2),
		"llama.feed_forward_length":              uint32(128),
		"llama.attention.head_count":             uint32(4),
		"llama.attention.head_count_kv":          uint32(2),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.rope.dimension_count":             uint32(16),
		"llama.rope.freq_base":                   float32(10000),
		"llama.vocab_size":                       uint32(514),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.pre":                     "default",
		"tokenizer.ggml.bos_token_id":            uint32(1),
		"tokenizer.ggml.eos_token_id":            uint32(2),
		"tokenizer.ggml.unknown_token_id":        uint32(0),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.ggml.add_eos_token":           false,
	} {
		if got := p.kv[k]; got != want {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}
	if _, ok := p.kv["llama.pooling_type"]; ok {
		t.Error("a chat model carries llama.pooling_type")
	}
	// The keys Ollama's /api/show lists in model_info for the recorded
	// models, less general.parameter_count (Ollama counts it itself): the
	// table above plus the three vocabulary arrays, nothing else.
	if len(p.kv) != 20+3 {
		t.Errorf("%d keys, want 23: %q", len(p.kv), p.keys)
	}
	for _, k := range []string{"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"} {
		if arr, _ := p.kv[k].([]any); len(arr) != VocabSize {
			t.Errorf("%s has %d entries, want %d", k, len(arr), VocabSize)
		}
	}
	if got, _ := p.kv["tokenizer.ggml.tokens"].([]any); len(got) == VocabSize && (got[2] != "</s>" || got[3+10] != "<0x0A>") {
		t.Errorf("tokens 2 and 13 are %q and %q", got[2], got[13])
	}

	if len(p.tensors) != len(wantTensors) {
		t.Fatalf("%d tensors, want %d", len(p.tensors), len(wantTensors))
	}
	var params uint64
	for i, w := range wantTensors {
		got := p.tensors[i]
		if got.name != w.name || !slices.Equal(got.shape, w.shape) || got.typ != w.typ {
			t.Errorf("tensor %d = %s %v type %d, want %s %v type %d", i, got.name, got.shape, got.typ, w.name, w.shape, w.typ)
		}
		if got.offset%Alignment != 0 || (uint64(p.dataStart)+got.offset)%Alignment != 0 {
			t.Errorf("tensor %s at offset %d (file %d): not %d-aligned", got.name, got.offset, p.dataStart+int(got.offset), Alignment)
		}
		if i > 0 && got.offset < p.tensors[i-1].offset+uint64(len(p.tensors[i-1].data)) {
			t.Errorf("tensor %s overlaps %s", got.name, p.tensors[i-1].name)
		}
		for _, v := range got.floats() {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("tensor %s holds %v", got.name, v)
			}
		}
		params += uint64(len(got.floats()))
	}
	if params != 139840 { // what Ollama reports as general.parameter_count
		t.Errorf("%d parameters, want 139840", params)
	}
}

func TestTinyLlamaOptions(t *testing.T) {
	a, a2 := TinyLlama(Options{Seed: 42}), TinyLlama(Options{Seed: 42})
	if !bytes.Equal(a, a2) {
		t.Error("the same seed gave different files")
	}
	if b := TinyLlama(Options{Seed: 7}); bytes.Equal(a, b) || len(a) != len(b) {
		t.Errorf("seed 7: equal=%v, sizes %d and %d; want different bytes, same size", bytes.Equal(a, b), len(a), len(b))
	}

	e := parse(t, TinyLlama(Options{Seed: 42, Embedding: true}))
	if v, ok := e.kv["llama.pooling_type"].(uint32); !ok || v != 1 {
		t.Errorf("llama.pooling_type = %#v, want uint32 1", e.kv["llama.pooling_type"])
	}
	if !slices.Equal(e.tensors[0].data, parse(t, a).tensors[0].data) {
		t.Error("Embedding changed the weights, not only the metadata")
	}

	f := parse(t, TinyLlama(Options{Seed: 42, F32: true}))
	if f.kv["general.file_type"] != uint32(0) {
		t.Errorf("F32 file_type %v", f.kv["general.file_type"])
	}
	for _, pt := range f.tensors {
		if pt.typ != F32 {
			t.Errorf("F32 option: %s is type %d", pt.name, pt.typ)
		}
	}
	// F16 is F32 rounded: the same numbers to within half precision.
	h, g := parse(t, a).tensors[0].floats(), f.tensors[0].floats()
	for i := range h {
		if d := math.Abs(float64(h[i] - g[i])); d > 1e-3*math.Max(1, math.Abs(float64(g[i]))) {
			t.Fatalf("token_embd[%d]: F16 %v, F32 %v", i, h[i], g[i])
		}
	}
}

func TestVocabulary(t *testing.T) {
	tokens, scores, types := Vocabulary()
	if len(tokens) != VocabSize || len(scores) != VocabSize || len(types) != VocabSize {
		t.Fatalf("sizes %d %d %d, want %d", len(tokens), len(scores), len(types), VocabSize)
	}
	seen := map[string]int{}
	for id, tok := range tokens {
		if prev, dup := seen[tok]; dup {
			t.Errorf("token %q at %d and %d", tok, prev, id)
		}
		seen[tok] = id
	}
	for b := 0; b < 256; b++ {
		if tok := fmt.Sprintf("<0x%02X>", b); tokens[3+b] != tok || types[3+b] != tokenByte {
			t.Errorf("id %d = %q type %d, want byte token %s", 3+b, tokens[3+b], types[3+b], tok)
		}
	}
	if types[UnknownID] != tokenUnknown || types[BOSID] != tokenControl || types[EOSID] != tokenControl {
		t.Errorf("special token types %v", types[:3])
	}
	for _, w := range []string{"▁hello", "▁user", "▁assistant", "▁system", ".", "▁h"} {
		if _, ok := seen[w]; !ok {
			t.Errorf("piece %q missing", w)
		}
	}
	if scores[seen["▁hello"]] <= scores[seen["▁h"]] {
		t.Error("a whole word does not outscore its first letter")
	}
}

// TestTinyLlamaSpeaksWords checks the weight design on the decoded file: with
// the (small) layers left out, the most likely token after any word is a
// word or ".", after "." it is </s>, and bytes or control tokens never come
// first. The real server proves the rest (internal/testollama).
func TestTinyLlamaSpeaksWords(t *testing.T) {
	p := parse(t, TinyLlama(Options{Seed: 42}))
	embd, out := p.tensors[0].floats(), p.tensors[len(p.tensors)-1].floats()
	tokens, _, _ := Vocabulary()
	role := roles()
	next := func(prev int) (best int, logits []float64) {
		h := embd[prev*Width : (prev+1)*Width]
		var ss float64
		for _, v := range h {
			ss += float64(v) * float64(v)
		}
		rms := math.Sqrt(ss/Width + 1e-5)
		logits = make([]float64, VocabSize)
		for y := range logits {
			for d := 0; d < Width; d++ {
				logits[y] += float64(out[y*Width+d]) * float64(h[d]) / rms
			}
			if logits[y] > logits[best] {
				best = y
			}
		}
		return best, logits
	}
	stops := 0
	for prev := FirstPiece; prev < VocabSize; prev++ {
		best, logits := next(prev)
		switch {
		case role[prev] == roleStop:
			if best != EOSID {
				t.Errorf("after %q the likeliest token is %q, want </s>", tokens[prev], tokens[best])
			}
		case role[best] == roleStop:
			stops++
		case role[best] != roleWord:
			t.Errorf("after %q the likeliest token is %q", tokens[prev], tokens[best])
		}
		if role[prev] != roleStop && logits[EOSID] > logits[best]-10 {
			t.Errorf("after %q </s> scores %.1f against the best %.1f", tokens[prev], logits[EOSID], logits[best])
		}
	}
	if stops == 0 || stops > (VocabSize-FirstPiece)/2 {
		t.Errorf(`"." is the likeliest next token after %d of %d pieces`, stops, VocabSize-FirstPiece)
	}
}

func TestFloat16(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{0, 0}, {float32(math.Copysign(0, -1)), 0x8000}, {1, 0x3c00}, {-2, 0xc000},
		{0.1, 0x2e66}, {65504, 0x7bff}, {65520, 0x7c00}, {1e10, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00}, {float32(math.NaN()), 0x7e00},
		{float32(math.Pow(2, -24)), 0x0001}, {float32(math.Pow(2, -25)), 0}, // tie to even
		{float32(1.5 * math.Pow(2, -24)), 0x0002}, {1e-9, 0},
		{1 + 1.0/2048, 0x3c00}, {1 + 3.0/2048, 0x3c02}, // ties to even
	} {
		if got := Float16(c.in); got != c.want {
			t.Errorf("Float16(%v) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	// Every finite half survives the round trip through float32.
	for h := 0; h < 1<<16; h++ {
		f := half(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if got := Float16(f); got != uint16(h) {
			t.Fatalf("Float16(half(%#04x) = %v) = %#04x", h, f, got)
		}
	}
}

func TestWriteRefusesInvalid(t *testing.T) {
	for name, c := range map[string]struct {
		kvs     []KV
		tensors []Tensor
	}{
		"short data": {tensors: []Tensor{{Name: "x", Shape: []uint64{4}, Type: F16, Data: make([]byte, 6)}}},
		"no shape":   {tensors: []Tensor{{Name: "x", Type: F32}}},
		"value type": {kvs: []KV{{"k", struct{}{}}}},
		"array type": {kvs: []KV{{"k", []float64{1}}}},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, c.kvs, c.tensors); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestWriteEveryValueType(t *testing.T) {
	kvs := []KV{
		{"u8", uint8(1)}, {"i8", int8(-2)}, {"u16", uint16(3)}, {"i16", int16(-4)},
		{"u32", uint32(5)}, {"i32", int32(-6)}, {"u64", uint64(7)}, {"i64", int64(-8)},
		{"f32", float32(0.5)}, {"f64", 0.25}, {"b", true}, {"s", "héllo"},
		{"as", []string{"a", ""}}, {"af", []float32{1.5}}, {"ai", []int32{-1, 2}},
		{"au", []uint32{9}}, {"ab", []bool{false, true}},
	}
	var buf bytes.Buffer
	if err := Write(&buf, kvs, nil); err != nil {
		t.Fatal(err)
	}
	p := parse(t, buf.Bytes())
	for i, kv := range kvs {
		if p.keys[i] != kv.Key {
			t.Errorf("key %d = %q, want %q", i, p.keys[i], kv.Key)
		}
		if got, want := fmt.Sprint(p.kv[kv.Key]), fmt.Sprint(kv.Value); got != want {
			t.Errorf("%s = %s, want %s", kv.Key, got, want)
		}
	}
}
