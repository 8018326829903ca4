package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
)

// The tiny llama's shape: 2 layers, width 64, 4 query heads of 16, 2
// key/value heads, feed-forward 128, 514 tokens (3 control, 256 byte
// fallbacks, 255 pieces), 139,840 parameters; about 290 KB in F16.
const (
	Layers     = 2
	Width      = 64
	Heads      = 4
	KVHeads    = 2
	HeadDim    = Width / Heads
	FFN        = 128
	ContextLen = 4096
	VocabSize  = 3 + 256 + 255
)

// Special token ids (tokenizer.ggml.*_token_id) and the range of the piece
// tokens.
const (
	UnknownID  = 0
	BOSID      = 1
	EOSID      = 2
	FirstPiece = 3 + 256
)

// Token types (llama.h: enum llama_token_type), as in tokenizer.ggml.token_type.
const (
	tokenNormal  int32 = 1
	tokenUnknown int32 = 2
	tokenControl int32 = 3
	tokenByte    int32 = 6
)

// Options chooses a tiny llama. The zero value is a chat model with seed 0.
type Options struct {
	// Seed drives every random weight: equal Options give equal bytes, and
	// different seeds give different files (so Ollama stores two blobs and
	// runs two runners).
	Seed uint64
	// Embedding adds llama.pooling_type = 1 (mean). Ollama decides that a
	// model is an embedding model from <arch>.pooling_type alone
	// (server/images.go, Capabilities), and then refuses chat with it.
	Embedding bool
	// F32 stores the matrices as F32 instead of F16 (norms are always F32).
	F32 bool
}

// TinyLlama returns a llama-architecture GGUF file that Ollama v0.17.4
// (llama.cpp runner) loads and runs on CPU in milliseconds.
//
// The weights are random but shaped so that generation reads as words: every
// token's embedding shares one direction that the output matrix maps onto
// the word pieces (so bytes, letters and control tokens are never sampled),
// the rest of each embedding is noise that makes the next word depend on the
// last one, and "." has its own direction that the output maps onto
// end-of-sequence. Attention and feed-forward weights are small, so the
// model is close to a random bigram model: answers are short runs of
// English words ending in "." (or cut at num_predict), never empty.
//
// The vocabulary is SentencePiece style (tokenizer.ggml.model "llama"):
// <unk>, <s>, </s>, the byte fallbacks <0x00>..<0xFF> llama.cpp needs for
// any character outside the pieces, then "▁"-prefixed words, bare letters
// and punctuation, with scores that prefer longer pieces.
func TinyLlama(o Options) []byte {
	var buf bytes.Buffer
	if err := Write(&buf, tinyKVs(o), tinyTensors(o)); err != nil {
		panic("gguf: TinyLlama: " + err.Error()) // its own inputs are always valid
	}
	return buf.Bytes()
}

func tinyKVs(o Options) []KV {
	tokens, scores, types := Vocabulary()
	fileType := uint32(1) // LLAMA_FTYPE_MOSTLY_F16
	if o.F32 {
		fileType = 0 // LLAMA_FTYPE_ALL_F32
	}
	kvs := []KV{
		{"general.architecture", "llama"},
		{"general.alignment", uint32(Alignment)},
		{"general.file_type", fileType},
		{"llama.context_length", uint32(ContextLen)},
		{"llama.embedding_length", uint32(Width)},
		{"llama.block_count", uint32(Layers)},
		{"llama.feed_forward_length", uint32(FFN)},
		{"llama.attention.head_count", uint32(Heads)},
		{"llama.attention.head_count_kv", uint32(KVHeads)},
		{"llama.attention.layer_norm_rms_epsilon", float32(1e-5)},
		{"llama.rope.dimension_count", uint32(HeadDim)},
		{"llama.rope.freq_base", float32(10000)},
		{"llama.vocab_size", uint32(VocabSize)},
	}
	if o.Embedding {
		kvs = append(kvs, KV{"llama.pooling_type", uint32(1)}) // LLAMA_POOLING_TYPE_MEAN
	}
	return append(kvs,
		KV{"tokenizer.ggml.model", "llama"},
		KV{"tokenizer.ggml.pre", "default"},
		KV{"tokenizer.ggml.tokens", tokens},
		KV{"tokenizer.ggml.scores", scores},
		KV{"tokenizer.ggml.token_type", types},
		KV{"tokenizer.ggml.bos_token_id", uint32(BOSID)},
		KV{"tokenizer.ggml.eos_token_id", uint32(EOSID)},
		KV{"tokenizer.ggml.unknown_token_id", uint32(UnknownID)},
		KV{"tokenizer.ggml.add_bos_token", true},
		KV{"tokenizer.ggml.add_eos_token", false},
	)
}

// words are the whole-word pieces (each written with a leading "▁"): what
// the model says. Its length is what fills the vocabulary to VocabSize.
var words = [...]string{
	"the", "an", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "with",
	"from", "up", "down", "over", "under", "into", "out", "off", "about", "after", "before",
	"you", "he", "she", "it", "we", "they", "me", "him", "her", "us", "them", "my", "your",
	"our", "this", "that", "here", "there", "what", "who", "how", "why", "when", "where",
	"is", "are", "was", "were", "be", "been", "have", "has", "had", "do", "does", "did",
	"can", "could", "will", "would", "should", "may", "go", "come", "came", "see", "saw",
	"look", "make", "made", "take", "give", "get", "got", "say", "said", "tell", "told",
	"know", "think", "thought", "want", "like", "love", "need", "find", "found", "run",
	"walk", "sing", "play", "read", "write", "hello", "hi", "ping", "pong", "ok", "yes", "no",
	"not", "maybe", "please", "thanks", "sorry", "one", "two", "three", "four", "five", "six",
	"seven", "eight", "nine", "ten", "red", "blue", "green", "yellow", "black", "white",
	"big", "small", "tiny", "quick", "slow", "old", "new", "good", "bad", "happy", "sad",
	"warm", "cold", "bright", "dark", "soft", "loud", "cat", "dog", "bird", "fish", "tree",
	"river", "sea", "sky", "sun", "moon", "star", "rain", "snow", "wind", "stone", "road",
	"house", "door", "window", "book", "song", "word", "name", "day", "night", "time", "year",
	"world", "city", "home", "friend", "child", "man", "woman", "people", "hand", "eye",
	"heart", "light", "fire", "water", "bread", "tea", "morning", "evening", "system", "user",
	"assistant", "tool", "answer", "question", "story", "again", "very", "all",
}

// punct are pieces without "▁"; "." ends a sentence, the others act as
// words. letters make any lower-case word spellable without byte fallbacks.
const (
	punct   = ".,!?:"
	letters = "abcdefghijklmnopqrstuvwxyz"
)

// Vocabulary returns the token strings, scores and types of TinyLlama,
// VocabSize of each, in id order.
func Vocabulary() (tokens []string, scores []float32, types []int32) {
	add := func(tok string, score float32, typ int32) {
		tokens = append(tokens, tok)
		scores = append(scores, score)
		types = append(types, typ)
	}
	add("<unk>", 0, tokenUnknown)
	add("<s>", 0, tokenControl)
	add("</s>", 0, tokenControl)
	for b := 0; b < 256; b++ {
		add("<0x"+hex2(b)+">", 0, tokenByte)
	}
	// SentencePiece scores are log-probabilities: merges into a piece with a
	// higher score win, so longer pieces score higher than their parts.
	add("▁", -1000, tokenNormal)
	for i := 0; i < len(punct); i++ {
		add(punct[i:i+1], -900-float32(i), tokenNormal)
	}
	for i := 0; i < len(letters); i++ {
		add(letters[i:i+1], -800-float32(i), tokenNormal)
		add("▁"+letters[i:i+1], -700-float32(i), tokenNormal)
	}
	for i, w := range words {
		add("▁"+w, -float32(i), tokenNormal)
	}
	return tokens, scores, types
}

func hex2(b int) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[b>>4], digits[b&15]})
}

// Token roles in the weight design (see TinyLlama).
const (
	roleSilent = iota // never sampled: control, bytes, letters, ":", "▁"
	roleWord          // sampled after a word
	roleStop          // "."
	roleEOS           // sampled after "."
)

func roles() []int {
	tokens, _, _ := Vocabulary()
	r := make([]int, len(tokens))
	for id, tok := range tokens {
		switch {
		case id == EOSID:
			r[id] = roleEOS
		case tok == ".":
			r[id] = roleStop
		case tok == "," || tok == "!" || tok == "?" || (len(tok) > 4 && tok[:3] == "▁"):
			r[id] = roleWord
		}
	}
	return r
}

// Weight design constants: the shared "a word may follow" direction is
// dimension 0, the "sentence ended" direction dimension 1; the remaining
// dimensions carry per-token noise.
const (
	embedLift  = 4.0  // embedding value on its direction
	embedNoise = 0.5  // std of the embedding's other dimensions
	outNoise   = 0.2  // std of the output matrix's other dimensions
	stopBias   = 1.45 // "." against a word's 1: a sentence runs ~6-10 words
	layerStd   = 0.02 // std of attention and feed-forward weights
)

func tinyTensors(o Options) []Tensor {
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	typ := F16
	if o.F32 {
		typ = F32
	}
	mat := func(name string, rows, cols int, fill func(row, col int) float32) Tensor {
		vals := make([]float32, rows*cols)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				vals[r*cols+c] = fill(r, c)
			}
		}
		return Tensor{Name: name, Shape: []uint64{uint64(cols), uint64(rows)}, Type: typ, Data: encode(vals, typ)}
	}
	ones := func(name string) Tensor {
		vals := make([]float32, Width)
		for i := range vals {
			vals[i] = 1
		}
		return Tensor{Name: name, Shape: []uint64{Width}, Type: F32, Data: encode(vals, F32)}
	}
	small := func(int, int) float32 { return float32(rng.NormFloat64() * layerStd) }
	role := roles()

	ts := []Tensor{mat("token_embd.weight", VocabSize, Width, func(tok, d int) float32 {
		return embedding(role[tok], d, rng)
	})}
	for l := 0; l < Layers; l++ {
		p := "blk." + strconv.Itoa(l) + "."
		ts = append(ts,
			ones(p+"attn_norm.weight"),
			mat(p+"attn_q.weight", Width, Width, small),
			mat(p+"attn_k.weight", KVHeads*HeadDim, Width, small),
			mat(p+"attn_v.weight", KVHeads*HeadDim, Width, small),
			mat(p+"attn_output.weight", Width, Width, small),
			ones(p+"ffn_norm.weight"),
			mat(p+"ffn_gate.weight", FFN, Width, small),
			mat(p+"ffn_up.weight", FFN, Width, small),
			mat(p+"ffn_down.weight", Width, FFN, small),
		)
	}
	return append(ts,
		ones("output_norm.weight"),
		mat("output.weight", VocabSize, Width, func(tok, d int) float32 {
			return output(role[tok], d, rng)
		}),
	)
}

// embedding is dimension d of a token's input embedding.
func embedding(role, d int, rng *rand.Rand) float32 {
	switch {
	case role == roleStop && d == 1:
		return embedLift
	case role == roleStop:
		return 0 // "." looks only at its own direction: what follows is </s>
	case d == 0:
		return embedLift
	case d == 1:
		return 0
	}
	return float32(rng.NormFloat64() * embedNoise)
}

// output is dimension d of a token's row in the output matrix: its logit is
// this row against the normalized last hidden state.
func output(role, d int, rng *rand.Rand) float32 {
	switch d {
	case 0: // after a word
		switch role {
		case roleWord:
			return 1
		case roleStop:
			return stopBias
		}
		return -1
	case 1: // after "."
		if role == roleEOS {
			return 1
		}
		return -1
	}
	if role == roleEOS || role == roleSilent {
		return 0
	}
	return float32(rng.NormFloat64() * outNoise)
}

func encode(vals []float32, t TensorType) []byte {
	out := make([]byte, len(vals)*t.Size())
	for i, v := range vals {
		if t == F16 {
			binary.LittleEndian.PutUint16(out[2*i:], Float16(v))
		} else {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
	}
	return out
}
