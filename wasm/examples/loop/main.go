//go:build wasip1

// Command loop is a deliberately broken policy module: gh_decide never
// returns. The wasm tests use it to check that an evaluation is cut off at
// its deadline and the engine stays healthy.
package main

import "unsafe"

var (
	buf  []byte
	spin uint64
)

func main() {}

//go:wasmexport gh_alloc
func ghAlloc(size uint32) uint32 {
	buf = make([]byte, max(size, 1))
	return uint32(uintptr(unsafe.Pointer(&buf[0])))
}

//go:wasmexport gh_decide
func ghDecide(ptr, n uint32) uint64 {
	if n > 0 && buf[0] == '{' {
		for {
			spin++
		}
	}
	return 0
}
