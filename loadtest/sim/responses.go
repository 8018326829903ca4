package sim

// POST /v1/responses, in the shape Ollama's implementation gives it
// (openai/responses.go FromResponsesRequest, ToResponse and
// ResponsesStreamConverter; middleware/openai.go ResponsesMiddleware),
// recorded in v1-responses.*.txt. vLLM and llama.cpp serve the same
// stateless subset; the simulator answers them in the same shape, with
// "incomplete" when the token limit cut the answer (OpenAI's spec).

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/valyala/fastjson"
)

func (s *Server) responses(w http.ResponseWriter, r *http.Request, b *Behavior) {
	p := parsers.Get()
	defer parsers.Put(p)
	g, v, ok := s.readGen(w, r, apiResponses, false, false, p)
	if !ok {
		return
	}
	if in := v.Get("input"); in != nil && in.Type() != fastjson.TypeString && in.Type() != fastjson.TypeArray && in.Type() != fastjson.TypeNull {
		// ResponsesInput.UnmarshalJSON.
		s.fail(w, apiResponses, apiErr{status: 400, bind: true, msg: "input must be a string or array: json: cannot unmarshal " + in.Type().String() + " into Go value of type []json.RawMessage"})
		return
	}
	e := &respEcho{instructions: string(v.GetStringBytes("instructions")),
		effort:      string(v.GetStringBytes("reasoning", "effort")),
		summary:     string(v.GetStringBytes("reasoning", "summary")),
		temperature: optFloat(v, "temperature"), topP: optFloat(v, "top_p")}
	if mo := v.Get("max_output_tokens"); mo != nil && mo.Type() == fastjson.TypeNumber {
		n := mo.GetInt()
		e.maxOutput = &n
	}
	if t := v.Get("tools"); t != nil && t.Type() == fastjson.TypeArray {
		e.tools = t.MarshalTo(nil)
	}
	if f := v.Get("text", "format"); f != nil && f.Type() == fastjson.TypeObject {
		e.textFormat = f.MarshalTo(nil)
	}
	g.echo = e
	mk := factoryFunc(func(p plan) writer { return s.newResponsesWriter(w, &g, p) })
	if s.cfg.Flavor == FlavorOllama {
		// FromResponsesRequest sets no Think: reasoning.effort (even
		// "none") is only echoed, and a thinking model thinks
		// (v1-responses.nonstream.reasoning-effort-none.txt).
		s.ollamaCore(w, r, b, &g, v, thinkVal{}, false, false, mk)
		return
	}
	if !s.openAICheck(w, &g, v, KindChat) {
		return
	}
	g.think = plainThinking(&g, v)
	s.runGen(w, r, b, &g, mk, nil)
}

func optFloat(v *fastjson.Value, key string) *float64 {
	f := v.Get(key)
	if f == nil || f.Type() != fastjson.TypeNumber {
		return nil
	}
	x := f.GetFloat64()
	return &x
}

// responsesWriter writes one Responses answer.
type responsesWriter struct {
	s      *Server
	w      http.ResponseWriter
	g      *genReq
	p      plan
	ollama bool
	respID string
	itemID string
	rsID   string
	seq    int
	out    int // output index
	text   []byte
	think  []byte
	rsOn   bool
	rsDone bool
	msgOn  bool
}

func (s *Server) newResponsesWriter(w http.ResponseWriter, g *genReq, p plan) *responsesWriter {
	return &responsesWriter{s: s, w: w, g: g, p: p, ollama: s.cfg.Flavor == FlavorOllama,
		respID: fmt.Sprintf("resp_%d", rand.IntN(999999)), itemID: fmt.Sprintf("msg_%d", rand.IntN(999999))}
}

func (rw *responsesWriter) status() (string, any) {
	if rw.p.finish == "length" && !rw.ollama {
		return "incomplete", map[string]string{"reason": "max_output_tokens"}
	}
	return "completed", nil // Ollama always says completed
}

// object is the response object (buildResponseObject / ToResponse).
func (rw *responsesWriter) object(status string, output []any, usage any, completed bool) map[string]any {
	g, name := rw.g.echo, rw.g.name
	var instructions, reasoning any
	if g.instructions != "" {
		instructions = g.instructions
	}
	if g.effort != "" || g.summary != "" {
		r := map[string]any{"effort": nil, "summary": nil}
		if g.effort != "" {
			r["effort"] = g.effort
		}
		if g.summary != "" {
			r["summary"] = g.summary
		}
		reasoning = r
	}
	tools := any([]any{})
	if g.tools != nil {
		tools = json.RawMessage(g.tools)
	}
	format := any(map[string]any{"type": "text"})
	if g.textFormat != nil {
		format = json.RawMessage(g.textFormat)
	}
	temp, topP := 1.0, 1.0
	if g.temperature != nil {
		temp = *g.temperature
	}
	if g.topP != nil {
		topP = *g.topP
	}
	now := time.Now().Unix()
	var completedAt any
	if completed {
		completedAt = now
	}
	var incomplete any
	if status == "incomplete" {
		_, incomplete = rw.status()
	}
	var maxOut any
	if g.maxOutput != nil {
		maxOut = *g.maxOutput
	}
	if output == nil {
		output = []any{}
	}
	return map[string]any{
		"id": rw.respID, "object": "response", "created_at": now, "completed_at": completedAt,
		"status": status, "incomplete_details": incomplete, "model": name, "previous_response_id": nil,
		"instructions": instructions, "output": output, "error": nil, "tools": tools, "tool_choice": "auto",
		"truncation": "disabled", "parallel_tool_calls": true, "text": map[string]any{"format": format},
		"top_p": topP, "presence_penalty": 0, "frequency_penalty": 0, "top_logprobs": 0, "temperature": temp,
		"reasoning": reasoning, "usage": usage, "max_output_tokens": maxOut, "max_tool_calls": nil,
		"store": false, "background": false, "service_tier": "default", "metadata": map[string]any{},
		"safety_identifier": nil, "prompt_cache_key": nil,
	}
}

func (rw *responsesWriter) usage() map[string]any {
	return map[string]any{
		"input_tokens": rw.g.promptTokens, "output_tokens": rw.p.tokens(),
		"total_tokens":         rw.g.promptTokens + rw.p.tokens(),
		"input_tokens_details": map[string]any{"cached_tokens": 0}, "output_tokens_details": map[string]any{"reasoning_tokens": 0},
	}
}

func textPart(t string) map[string]any {
	return map[string]any{"type": "output_text", "text": t, "annotations": []any{}, "logprobs": []any{}}
}

func (rw *responsesWriter) messageItem(status string, content []any) map[string]any {
	return map[string]any{"id": rw.itemID, "type": "message", "status": status, "role": "assistant", "content": content}
}

func (rw *responsesWriter) reasoningItem(id, text string) map[string]any {
	return map[string]any{"id": id, "type": "reasoning", "summary": []any{map[string]any{"type": "summary_text", "text": text}}, "encrypted_content": text}
}

func (rw *responsesWriter) toolItem(id, status, args string) map[string]any {
	return map[string]any{"id": id, "type": "function_call", "status": status, "call_id": toolCallID(uint64(len(rw.g.toolName))),
		"name": rw.g.toolName, "arguments": args}
}

// event writes one SSE event, its sequence number added.
func (rw *responsesWriter) event(typ string, data map[string]any) bool {
	data["type"] = typ
	data["sequence_number"] = rw.seq
	rw.seq++
	d, _ := json.Marshal(data)
	_, err := fmt.Fprintf(rw.w, "event: %s\ndata: %s\n\n", typ, d)
	return err == nil
}

func (rw *responsesWriter) begin() bool {
	h := rw.w.Header()
	h["Content-Type"] = sseCT
	h["Cache-Control"] = noCache
	h["Connection"] = keepAliveH
	rw.w.WriteHeader(http.StatusOK)
	return rw.event("response.created", map[string]any{"response": rw.object("in_progress", nil, nil, false)}) &&
		rw.event("response.in_progress", map[string]any{"response": rw.object("in_progress", nil, nil, false)})
}

func (rw *responsesWriter) reasoning(i int) bool {
	if !rw.rsOn {
		rw.rsOn = true
		rw.rsID = fmt.Sprintf("rs_%d", rand.IntN(999999))
		if !rw.event("response.output_item.added", map[string]any{"output_index": rw.out,
			"item": map[string]any{"id": rw.rsID, "type": "reasoning", "summary": []any{}}}) {
			return false
		}
	}
	w := reasoningWords[i%len(reasoningWords)]
	rw.think = append(rw.think, w...)
	return rw.event("response.reasoning_summary_text.delta", map[string]any{"item_id": rw.rsID, "output_index": rw.out, "summary_index": 0, "delta": w})
}

func (rw *responsesWriter) finishReasoning() bool {
	if !rw.rsOn || rw.rsDone {
		return true
	}
	rw.rsDone = true
	t := string(rw.think)
	ok := rw.event("response.reasoning_summary_text.done", map[string]any{"item_id": rw.rsID, "output_index": rw.out, "summary_index": 0, "text": t}) &&
		rw.event("response.output_item.done", map[string]any{"output_index": rw.out, "item": rw.reasoningItem(rw.rsID, t)})
	rw.out++
	return ok
}

func (rw *responsesWriter) content(_ int, text []byte) bool {
	var t string
	_ = json.Unmarshal(text, &t)
	if !rw.finishReasoning() {
		return false
	}
	if !rw.msgOn {
		rw.msgOn = true
		if !rw.event("response.output_item.added", map[string]any{"output_index": rw.out, "item": rw.messageItem("in_progress", []any{})}) ||
			!rw.event("response.content_part.added", map[string]any{"item_id": rw.itemID, "output_index": rw.out, "content_index": 0, "part": textPart("")}) {
			return false
		}
	}
	rw.text = append(rw.text, t...)
	return rw.event("response.output_text.delta", map[string]any{"item_id": rw.itemID, "output_index": rw.out, "content_index": 0, "delta": t, "logprobs": []any{}})
}

func (rw *responsesWriter) toolCall() bool {
	if !rw.finishReasoning() {
		return false
	}
	id := fmt.Sprintf("fc_%d_0", rand.IntN(999999))
	ok := rw.event("response.output_item.added", map[string]any{"output_index": rw.out, "item": rw.toolItem(id, "in_progress", "")}) &&
		rw.event("response.function_call_arguments.delta", map[string]any{"item_id": id, "output_index": rw.out, "delta": rw.g.toolArgs}) &&
		rw.event("response.function_call_arguments.done", map[string]any{"item_id": id, "output_index": rw.out, "arguments": rw.g.toolArgs}) &&
		rw.event("response.output_item.done", map[string]any{"output_index": rw.out, "item": rw.toolItem(id, "completed", rw.g.toolArgs)})
	rw.itemID = id // end() lists the call under this id
	return ok
}

func (rw *responsesWriter) end() bool {
	if !rw.finishReasoning() {
		return false
	}
	var output []any
	if rw.rsOn {
		output = append(output, rw.reasoningItem(rw.rsID, string(rw.think)))
	}
	if rw.p.tool {
		output = append(output, rw.toolItem(rw.itemID, "completed", rw.g.toolArgs))
	} else if rw.msgOn {
		t := string(rw.text)
		item := rw.messageItem("completed", []any{textPart(t)})
		output = append(output, item)
		if !rw.event("response.output_text.done", map[string]any{"item_id": rw.itemID, "output_index": rw.out, "content_index": 0, "text": t, "logprobs": []any{}}) ||
			!rw.event("response.content_part.done", map[string]any{"item_id": rw.itemID, "output_index": rw.out, "content_index": 0, "part": textPart(t)}) ||
			!rw.event("response.output_item.done", map[string]any{"output_index": rw.out, "item": item}) {
			return false
		}
	}
	status, _ := rw.status()
	return rw.event("response.completed", map[string]any{"response": rw.object(status, output, rw.usage(), true)})
}

// whole is ToResponse, in its struct's field order.
func (rw *responsesWriter) whole() {
	var output []any
	if r := rw.p.reasoningText(); r != "" {
		output = append(output, orderedItem{{"id", "rs_" + rw.respID}, {"type", "reasoning"},
			{"summary", []any{orderedItem{{"type", "summary_text"}, {"text", r}}}}, {"encrypted_content", r}})
	}
	if rw.p.tool {
		output = append(output, orderedItem{{"id", "fc_" + rw.respID + "_0"}, {"type", "function_call"}, {"status", "completed"},
			{"call_id", toolCallID(uint64(len(rw.g.toolName)))}, {"name", rw.g.toolName}, {"arguments", rw.g.toolArgs}})
	} else {
		output = append(output, orderedItem{{"id", rw.itemID}, {"type", "message"}, {"status", "completed"}, {"role", "assistant"},
			{"content", []any{orderedItem{{"type", "output_text"}, {"text", rw.p.contentText()}, {"annotations", []any{}}, {"logprobs", []any{}}}}}})
	}
	status, _ := rw.status()
	o := rw.object(status, output, nil, true)
	if r, ok := o["reasoning"].(map[string]any); ok {
		// ResponsesReasoningOutput: pointers with omitempty.
		for k, v := range r {
			if v == nil {
				delete(r, k)
			}
		}
	}
	o["usage"] = orderedItem{{"input_tokens", rw.g.promptTokens}, {"output_tokens", rw.p.tokens()},
		{"total_tokens", rw.g.promptTokens + rw.p.tokens()}, {"input_tokens_details", orderedItem{{"cached_tokens", 0}}},
		{"output_tokens_details", orderedItem{{"reasoning_tokens", 0}}}}
	ord := orderedItem{}
	for _, k := range []string{"id", "object", "created_at", "completed_at", "status", "incomplete_details", "model",
		"previous_response_id", "instructions", "output", "error", "tools", "tool_choice", "truncation",
		"parallel_tool_calls", "text", "top_p", "presence_penalty", "frequency_penalty", "top_logprobs",
		"temperature", "reasoning", "usage", "max_output_tokens", "max_tool_calls", "store", "background",
		"service_tier", "metadata", "safety_identifier", "prompt_cache_key"} {
		ord = append(ord, kv{k, o[k]})
	}
	writeJSON(rw.w, http.StatusOK, ctJSON, ord, true)
}

// orderedItem is a JSON object that keeps its key order (the field order
// of the real server's structs).
type orderedItem []kv

type kv struct {
	k string
	v any
}

func (o orderedItem) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, e := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(e.k)
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}
