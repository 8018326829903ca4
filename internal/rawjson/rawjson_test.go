package rawjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzValid: Valid agrees with json.Valid, except that it refuses nesting
// deeper than MaxDepth (then with ErrTooDeep).
func FuzzValid(f *testing.F) {
	for _, s := range []string{`{}`, `[1,2]`, `{"a":"\u00e9"}`, `"x`, `01`, `1e`, `[` + string(bytes.Repeat([]byte("["), 300))} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := Valid(b), json.Valid(b)
		if got && !want {
			t.Fatalf("Valid(%q) accepts what json.Valid refuses", b)
		}
		if want && !got {
			_, err := ValidValue(b, 0, 0)
			if !errors.Is(err, ErrTooDeep) {
				t.Fatalf("Valid(%q) refuses what json.Valid accepts: %v", b, err)
			}
		}
	})
}

// FuzzDecodeString: DecodeString decodes exactly as encoding/json does
// (for valid UTF-8 input: invalid bytes pass through unchanged, where
// encoding/json substitutes U+FFFD).
func FuzzDecodeString(f *testing.F) {
	for _, s := range []string{`"a"`, `"\u00e9\n"`, `"\ud83d\ude00"`, `"\ud800\u0041"`, `"\udc00"`, `"\x"`, "\"\x01\"", `"\u12"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '"' || !utf8.Valid(b) {
			return
		}
		out, end, err := DecodeString(nil, b, 0)
		var want string
		werr := json.Unmarshal(b[:max(end, 1)], &want)
		if err != nil {
			if !json.Valid(b) || b[len(b)-1] != '"' {
				return
			}
			if werr == nil {
				t.Fatalf("DecodeString(%q) refused a string encoding/json reads as %q: %v", b, want, err)
			}
			return
		}
		if werr != nil {
			t.Fatalf("DecodeString(%q) accepted %q; encoding/json: %v", b[:end], out, werr)
		}
		if string(out) != want {
			t.Fatalf("DecodeString(%q) = %q, encoding/json %q", b[:end], out, want)
		}
	})
}

// FuzzSetModel: the result is a valid object whose model (as
// encoding/json reads it, last member winning) is the new one and whose
// other members are unchanged.
func FuzzSetModel(f *testing.F) {
	for _, s := range []string{`{}`, `{"model":"a","x":1}`, `{"mod\u0065l":"a"}`, ` { "a" : [1,{"model":2}] } `, `[1]`, `{"model":"a","model":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := SetModel(nil, b, "new-model")
		var in map[string]any
		if json.Unmarshal(b, &in) != nil || !Valid(b) {
			if err == nil {
				t.Fatalf("SetModel(%q) accepted a body that is not a JSON object", b)
			}
			return
		}
		if err != nil {
			t.Fatalf("SetModel(%q): %v", b, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("SetModel(%q) = %q: invalid: %v", b, out, err)
		}
		if got["model"] != "new-model" {
			t.Fatalf("SetModel(%q) = %q: model %v", b, out, got["model"])
		}
		delete(in, "model")
		delete(got, "model")
		ib, _ := json.Marshal(in)
		gb, _ := json.Marshal(got)
		if !bytes.Equal(ib, gb) {
			t.Fatalf("SetModel(%q) = %q changed other members", b, out)
		}
	})
}

func TestSeq(t *testing.T) {
	b := []byte(` { "a" : [1, 2 ,3], "b":{} } `)
	s := Open(b, 1)
	var keys []string
	for {
		more, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
		ks, ke, esc, vs, err := s.Key()
		if err != nil {
			t.Fatal(err)
		}
		var kb [32]byte
		keys = append(keys, string(KeyName(b, ks, ke, esc, &kb)))
		if s.I, err = ValidValue(b, vs, 1); err != nil {
			t.Fatal(err)
		}
	}
	if len(keys) != 2 || keys[0] != "a" || keys[1] != "b" || SkipWS(b, s.I) != len(b) {
		t.Fatalf("keys %q, end %d", keys, s.I)
	}
	for _, bad := range []string{`{"a":1 "b":2}`, `{"a" 1}`, `[1,]`, `[1`, `{,}`} {
		s := Open([]byte(bad), 0)
		var err error
		for {
			var more bool
			if more, err = s.Next(); err != nil || !more {
				break
			}
			if bad[0] == '{' {
				var vs int
				if _, _, _, vs, err = s.Key(); err != nil {
					break
				}
				s.I = vs
			}
			if s.I, err = ValidValue([]byte(bad), s.I, 1); err != nil {
				break
			}
		}
		if err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestZeroAllocations(t *testing.T) {
	body := []byte(`{"model":"qwen3:8b","messages":[{"role":"user","content":"caf\u00e9"}],"stream":true}`)
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		_ = Valid(body)
		dst, _ = SetModel(dst[:0], body, "llama3.1:8b")
		dst, _, _ = DecodeString(dst[:0], body, 43)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
