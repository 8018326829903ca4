package jsonw

import (
	"encoding/json"
	"testing"
)

// Differential: the bytes must equal encoding/json's for any string.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\`, "\n\r\t\x00\x1f", "<a&b>", "é漢🙂", "\xff\xfe", "\u2028\u2029", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json says %s", s, got, want)
		}
	})
}

func TestAppendStringAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	n := testing.AllocsPerRun(100, func() { buf = AppendString(buf[:0], "hello <world> \"quoted\" \xff") })
	if n != 0 {
		t.Fatalf("%v allocs per run, want 0", n)
	}
}
