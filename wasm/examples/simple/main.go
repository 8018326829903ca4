//go:build wasip1

// Command simple is an example GenieHive policy module for the custom Wasm
// ABI (see wasm/ABI.md). It routes a request to the assets data.models lists
// for the request's model_key (or to the requested model as-is), and denies
// one configured model:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
//	    -ldflags "-X main.denied=some-model" -o simple.wasm ./wasm/examples/simple
//
// Input is read with a small hand parser (parse_hand.go); build with
// -tags stdjson to use encoding/json instead (parse_std.go) and compare the
// cost with the wasm package's benchmarks.
package main

import "unsafe"

// denied is the model key this policy refuses with 403.
var denied = "forbidden-model"

var (
	lastAlloc []byte              // the buffer most recently handed to the host
	models    map[string][]string // data.models, from gh_set_data
	out       []byte              // decision output, reused across calls
)

func main() {}

// request is the part of the input document this policy reads.
type request struct {
	Operation string `json:"operation"`
	Model     string `json:"model"`
	ModelKey  string `json:"model_key"`
}

//go:wasmexport gh_alloc
func ghAlloc(size uint32) uint32 {
	lastAlloc = make([]byte, max(size, 1))
	return uint32(uintptr(unsafe.Pointer(&lastAlloc[0])))
}

// bufAt returns the host-written bytes of the last gh_alloc buffer.
func bufAt(ptr, n uint32) []byte {
	if uintptr(unsafe.Pointer(&lastAlloc[0])) != uintptr(ptr) || int(n) > len(lastAlloc) {
		return nil
	}
	return lastAlloc[:n]
}

//go:wasmexport gh_set_data
func ghSetData(ptr, n uint32) uint32 {
	b := bufAt(ptr, n)
	if b == nil {
		return 1
	}
	m, ok := parseModels(b)
	if !ok {
		return 2
	}
	models = m
	return 0
}

//go:wasmexport gh_decide
func ghDecide(ptr, n uint32) uint64 {
	b := bufAt(ptr, n)
	if b == nil {
		return 0
	}
	var r request
	if !parseRequest(b, &r) {
		return 0
	}
	out = decide(out[:0], &r)
	return uint64(uintptr(unsafe.Pointer(&out[0])))<<32 | uint64(len(out))
}

func decide(o []byte, r *request) []byte {
	o = append(o, `{"schema_version":1,"targets":[`...)
	if r.ModelKey == denied {
		o = append(o, `],"strip_reasoning":false,"deny":{"status":403,"code":"policy_denied","reason":`...)
		o = appendString(o, "model "+r.Model+" is not allowed")
		return append(o, `}}`...)
	}
	assets := models[r.ModelKey]
	if len(assets) == 0 {
		assets = []string{r.Model}
	}
	for i, a := range assets {
		if i > 0 {
			o = append(o, ',')
		}
		o = append(o, `{"kind":"asset","name":`...)
		o = appendString(o, a)
		o = append(o, `,"operation":`...)
		o = appendString(o, r.Operation)
		o = append(o, `,"group":0}`...)
	}
	return append(o, `],"strip_reasoning":false}`...)
}

func appendString(o []byte, s string) []byte {
	const hex = "0123456789abcdef"
	o = append(o, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			o = append(o, '\\', c)
		case c < 0x20:
			o = append(o, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			o = append(o, c)
		}
	}
	return append(o, '"')
}
