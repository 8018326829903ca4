package policies

import (
	"strings"
)

// NormalizeModel returns the lookup form of a requested model or role name:
// trimmed, lower-cased, without a trailing ":latest". It does not allocate
// when s is already normalised.
func NormalizeModel(s string) string {
	s = strings.TrimSpace(s)
	if hasUpper(s) {
		s = strings.ToLower(s)
	}
	s = strings.TrimSuffix(s, ":latest")
	return s
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 0x80 {
			return true
		}
	}
	return false
}

// ModelKeys returns every normalised lookup form under which an asset named
// assetName can be requested, most specific first, without duplicates:
//
//   - the exact name ("llama3.1:8b-instruct-q4_k_m")
//   - without ":latest" ("qwen3:latest" -> "qwen3")
//   - without a quantisation suffix ("llama3.1:8b-instruct")
//   - the base name before ':' ("llama3.1")
//   - the part after the last '/' of each of these ("Qwen/Qwen3-8B" -> "qwen3-8b")
//
// Quantisation suffixes are "-q<digit>…" (q4_K_M, q8_0, q5_1), "-fp16",
// "-f16", "-bf16", "-fp32", "-f32", "-fp8", "-int4", "-int8", "-awq",
// "-gptq", and a trailing ".gguf"; a tag that is only a quantisation
// ("model:q4_K_M") reduces to the base name.
func ModelKeys(assetName string) []string {
	exact := strings.ToLower(strings.TrimSpace(assetName))
	if exact == "" {
		return nil
	}
	out := make([]string, 0, 6)
	add := func(k string) {
		k = strings.TrimSuffix(k, ":")
		if k == "" {
			return
		}
		for _, o := range out {
			if o == k {
				return
			}
		}
		out = append(out, k)
	}
	noLatest := strings.TrimSuffix(exact, ":latest")
	noQuant := stripQuant(noLatest)
	base := noLatest
	if i := strings.IndexByte(noLatest, ':'); i > 0 {
		base = noLatest[:i]
	}
	forms := [...]string{exact, noLatest, noQuant, base, stripQuant(base)}
	for _, f := range forms {
		add(f)
	}
	for _, f := range forms {
		if i := strings.LastIndexByte(f, '/'); i >= 0 && i < len(f)-1 {
			add(f[i+1:])
		}
	}
	return out
}

var quantSuffixes = []string{"-fp16", "-f16", "-bf16", "-fp32", "-f32", "-fp8", "-int4", "-int8", "-awq", "-gptq"}

// stripQuant removes one trailing quantisation marker from a lower-cased
// name (".gguf" first, then a "-q<digit>…" or known precision suffix).
func stripQuant(s string) string {
	s = strings.TrimSuffix(s, ".gguf")
	for _, q := range quantSuffixes {
		if strings.HasSuffix(s, q) {
			return s[:len(s)-len(q)]
		}
	}
	// -q4_k_m, -q8_0, -q5_1, :q4_k_m (a tag that is only a quant).
	i := strings.LastIndexAny(s, "-:")
	if i >= 0 && len(s) > i+2 && s[i+1] == 'q' && s[i+2] >= '0' && s[i+2] <= '9' {
		for _, c := range s[i+3:] {
			if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
				return s
			}
		}
		return s[:i]
	}
	return s
}
