package routing

import "strings"

// nextWord returns the next word of s at or after i and the index after it.
// Words are runs of ASCII letters and digits; everything else separates
// them. ok is false at the end. No allocation: words are substrings.
func nextWord(s string, i int) (w string, j int, ok bool) {
	for i < len(s) && !isWordByte(s[i]) {
		i++
	}
	if i >= len(s) {
		return "", i, false
	}
	j = i
	for j < len(s) && isWordByte(s[j]) {
		j++
	}
	return s[i:j], j, true
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// stopWord reports words too common to say anything about a model.
func stopWord(w string) bool {
	if len(w) < 2 {
		return true
	}
	if len(w) > 6 {
		return false
	}
	var buf [6]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(w)]) {
	case "the", "and", "for", "with", "you", "are", "is", "to", "of", "in", "on", "an", "it", "be", "me", "my", "a", "at", "or", "as", "by", "this", "that", "what", "how", "please", "can", "latest":
		return true
	}
	return false
}

// containsWord reports whether text has the word w (case-insensitive).
func containsWord(text, w string) bool {
	for i := 0; ; {
		x, j, ok := nextWord(text, i)
		if !ok {
			return false
		}
		if len(x) == len(w) && strings.EqualFold(x, w) {
			return true
		}
		i = j
	}
}

// requestText is the set of words the overlap signal compares an asset
// with, as case-insensitive 64-bit hashes (computed once per request; the
// slice is reused from the pool).
type requestText struct {
	words []uint64
	base  int // words of the request itself; role words follow
}

// wordHash is FNV-1a over the lower-cased word.
func wordHash(w string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

// add appends the words of s.
func (r *requestText) add(s string) {
	for i := 0; ; {
		w, j, ok := nextWord(s, i)
		if !ok {
			return
		}
		i = j
		if !stopWord(w) {
			r.words = append(r.words, wordHash(w))
		}
	}
}

// setRole replaces the role's words.
func (r *requestText) setRole(name, description string) {
	r.words = r.words[:r.base]
	r.add(name)
	r.add(description)
}

func (r *requestText) empty() bool { return len(r.words) == 0 }

func (r *requestText) has(w string) bool {
	h := wordHash(w)
	for _, x := range r.words {
		if x == h {
			return true
		}
	}
	return false
}

// overlap is the share of the asset's distinct words (name, family, tags)
// present in the request text. Duplicates within the asset count once.
func overlap(rt *requestText, name, family string, tags []string) float64 {
	total, hit := 0, 0
	count := func(s string, seenIn func(w string) bool) {
		for i := 0; ; {
			w, j, ok := nextWord(s, i)
			if !ok {
				return
			}
			i = j
			if stopWord(w) || seenIn(w) {
				continue
			}
			total++
			if rt.has(w) {
				hit++
			}
		}
	}
	// seenBefore checks words already counted (name, then family, then tags
	// before the current one) so "qwen3" in the name and in the family
	// counts once.
	count(name, func(string) bool { return false })
	count(family, func(w string) bool { return containsWord(name, w) })
	for k, t := range tags {
		count(t, func(w string) bool {
			if containsWord(name, w) || containsWord(family, w) {
				return true
			}
			for _, p := range tags[:k] {
				if containsWord(p, w) {
					return true
				}
			}
			return false
		})
	}
	if total == 0 {
		return 0
	}
	return float64(hit) / float64(total)
}
