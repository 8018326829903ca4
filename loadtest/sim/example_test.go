package sim_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/geniehive/geniehive/loadtest/sim"
)

func Example() {
	s, err := sim.Start(sim.Config{
		Flavor:   sim.FlavorOllama,
		Models:   []sim.Model{{Name: "qwen3:8b", Loaded: true, Thinking: true}, {Name: "llama3.2:3b"}},
		Behavior: sim.Behavior{Chunks: 4},
	})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	resp, _ := http.Post(s.URL()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"llama3.2:3b","messages":[{"role":"user","content":"hi"}]}`))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, strings.Contains(string(b), sim.Text(4)))

	// Kill the host, then bring it back on the same address.
	s.Update(func(b *sim.Behavior) { b.FailBeforeFirstByte = true })
	_, err = http.Get(s.URL() + "/api/tags")
	fmt.Println(err != nil)
	s.Update(func(b *sim.Behavior) { b.FailBeforeFirstByte = false })
	fmt.Println(s.Stats().Requests["/v1/chat/completions"], s.Stats().ConnsDropped > 0)
	// Output:
	// 200 true
	// true
	// 1 true
}
