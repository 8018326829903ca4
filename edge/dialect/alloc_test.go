//go:build !race

package dialect

import "testing"

// Once a Request's buffers have grown, translating another request and
// streaming its answer allocate nothing.
func TestNoAllocs(t *testing.T) {
	for _, c := range []struct {
		name string
		api  API
		body []byte
	}{{"responses", APIResponses, codexBody(true)}, {"messages", APIMessages, claudeCodeBody(true)}} {
		r := &Request{}
		var dst []byte
		translate := func() {
			if err := r.Parse(c.api, c.body); err != nil {
				t.Fatal(err)
			}
			dst, _ = r.AppendChat(dst[:0], nil)
		}
		translate()
		if n := testing.AllocsPerRun(20, translate); n != 0 {
			t.Errorf("%s: %v allocations per request translation", c.name, n)
		}
		chunk := textChunk(" token")
		s := r.Stream()
		dst, _ = s.Feed(dst[:0], chunk)
		if n := testing.AllocsPerRun(100, func() { dst, _ = s.Feed(dst[:0], chunk) }); n != 0 {
			t.Errorf("%s: %v allocations per streamed event", c.name, n)
		}
	}
}
