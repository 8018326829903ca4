package dialect

// Legacy Completions (prompt in, text out) → Chat Completions, for
// upstreams without /v1/completions: the prompt becomes one user message.
// A chat template then wraps it, so this is an approximation of raw text
// continuation; parameters with no chat equivalent are refused.

import (
	"github.com/valyala/fastjson"
)

func (r *Request) parseCompletions() error {
	t := &r.top
	if err := r.maxTokens(fMaxTokens); err != nil {
		return err
	}
	for _, i := range []int{fTemperature, fTopP, fPresence, fFrequency, fSeed} {
		if err := r.checkNumber(i); err != nil {
			return err
		}
	}
	p := t[fPrompt]
	switch {
	case isNull(p):
		return invalid(CodeMissing, "prompt", "you must provide a prompt parameter")
	case p.Type() == fastjson.TypeString:
		r.setText(p.GetStringBytes())
	case p.Type() == fastjson.TypeArray:
		a := p.GetArray()
		if len(a) != 1 || a[0].Type() != fastjson.TypeString {
			return invalid(CodeUnsupported, "prompt", "prompt must be a string or an array of one string when the upstream serves only chat (several prompts, or token arrays, need /v1/completions)")
		}
		r.setText(a[0].GetStringBytes())
	default:
		return invalid(CodeInvalidRequest, "prompt", "prompt must be a string or an array of strings")
	}
	if n, _ := posInt(t[fN]); n > 1 {
		return invalid(CodeUnsupported, "n", "n > 1 is not supported when translating to chat")
	}
	if n, _ := posInt(t[fBestOf]); n > 1 {
		return invalid(CodeUnsupported, "best_of", "best_of > 1 is not supported when translating to chat")
	}
	if e := t[fEcho]; e != nil && e.Type() == fastjson.TypeTrue {
		return invalid(CodeUnsupported, "echo", "echo is not supported when translating to chat")
	}
	if s := t[fSuffix]; !isNull(s) && !isStr(s, "") {
		return invalid(CodeUnsupported, "suffix", "suffix (fill-in-the-middle) is not supported when translating to chat")
	}
	switch s := t[fStop]; {
	case isNull(s), s.Type() == fastjson.TypeString:
	case s.Type() == fastjson.TypeArray:
		for _, e := range s.GetArray() {
			if e.Type() != fastjson.TypeString {
				return invalid(CodeInvalidRequest, "stop", "stop must be a string or an array of strings")
			}
		}
	default:
		return invalid(CodeInvalidRequest, "stop", "stop must be a string or an array of strings")
	}
	if so := t[fStreamOptions]; so != nil {
		if iu := so.Get("include_usage"); iu != nil && iu.Type() == fastjson.TypeTrue {
			r.includeUsage = true
		}
	}
	return nil
}

func (r *Request) completionsMessages(b *chatBuilder) error {
	p := r.top[fPrompt]
	if p.Type() == fastjson.TypeArray {
		p = p.GetArray()[0]
	}
	b.textMessage("user", p.GetStringBytes())
	return nil
}

func (r *Request) completionsParams(dst []byte) []byte {
	t := &r.top
	if r.facts.MaxTokens > 0 {
		dst = append(dst, `,"max_tokens":`...)
		dst = appendInt(dst, r.facts.MaxTokens)
	}
	dst = appendNumber(dst, "temperature", t[fTemperature])
	dst = appendNumber(dst, "top_p", t[fTopP])
	dst = appendNumber(dst, "presence_penalty", t[fPresence])
	dst = appendNumber(dst, "frequency_penalty", t[fFrequency])
	dst = appendNumber(dst, "seed", t[fSeed])
	if s := t[fStop]; !isNull(s) {
		dst = append(dst, `,"stop":`...)
		dst = appendJSON(dst, s, 0)
	}
	if lb := t[fLogitBias]; lb != nil && lb.Type() == fastjson.TypeObject {
		dst = append(dst, `,"logit_bias":`...)
		dst = appendJSON(dst, lb, 0)
	}
	if u := t[fUser]; u != nil && u.Type() == fastjson.TypeString {
		dst = append(dst, `,"user":`...)
		dst = appendStr(dst, u.GetStringBytes())
	}
	return dst
}
