//go:build !race

package wasm

import "testing"

func TestAppendInputAllocs(t *testing.T) {
	in := testInput("dev")
	in.Headers = map[string]string{"x-a": "b"}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = appendInput(buf[:0], in) }); n != 0 {
		t.Fatalf("appendInput allocates %v times", n)
	}
}
