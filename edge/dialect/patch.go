package dialect

import (
	"github.com/geniehive/geniehive/internal/jsonw"
	"github.com/valyala/fastjson"
)

// AppendPatched appends body — the one Parse read — for an upstream that
// speaks its dialect natively, with the model replaced and the policy's
// system prompt combined with the client's: Responses "instructions",
// Messages "system" (a string, or text blocks to which a block is added
// before or after). Everything else is copied byte for byte. Completions
// have no system prompt member: p.Prompt is ignored there.
func (r *Request) AppendPatched(dst, body []byte, p Patch) []byte {
	if r.v == nil {
		return append(dst, body...)
	}
	type edit struct {
		s, e int
		sys  bool
	}
	var eds [2]edit
	n := 0
	insModel, insSys := false, false
	if p.Model != "" {
		if s, e, ok := spanOfMember(body, "model"); ok {
			eds[n] = edit{s, e, false}
			n++
		} else {
			insModel = true
		}
	}
	sysName, sysField := "", 0
	switch r.facts.API {
	case APIResponses:
		sysName, sysField = "instructions", fInstructions
	case APIMessages, APICountTokens:
		sysName, sysField = "system", fSystem
	}
	if p.Prompt != nil && sysName != "" {
		if s, e, ok := spanOfMember(body, sysName); ok {
			eds[n] = edit{s, e, true}
			n++
		} else {
			insSys = true
		}
	}
	if n == 2 && eds[1].s < eds[0].s {
		eds[0], eds[1] = eds[1], eds[0]
	}
	i := 0
	if insModel || insSys {
		dst, i = insertMembers(dst, body, insModel, insSys, sysName, p)
	}
	for _, ed := range eds[:n] {
		dst = append(dst, body[i:ed.s]...)
		if ed.sys {
			dst = r.appendSystem(dst, body[ed.s:ed.e], r.top[sysField], p)
		} else {
			dst = jsonw.AppendString(dst, p.Model)
		}
		i = ed.e
	}
	return append(dst, body[i:]...)
}

// insertMembers copies body up to its opening brace and adds the model and
// system prompt members it lacks; it returns where copying resumes.
func insertMembers(dst, body []byte, model, sys bool, sysName string, p Patch) ([]byte, int) {
	open := skipWS(body, 0) + 1
	dst = append(dst, body[:open]...)
	if model {
		dst = append(dst, `"model":`...)
		dst = jsonw.AppendString(dst, p.Model)
		dst = append(dst, ',')
	}
	if sys {
		dst = append(dst, '"')
		dst = append(dst, sysName...)
		dst = append(dst, `":`...)
		dst = jsonw.AppendString(dst, *p.Prompt)
		dst = append(dst, ',')
	}
	if j := skipWS(body, open); j < len(body) && body[j] == '}' {
		dst = dst[:len(dst)-1] // the object was empty: no member follows
	}
	return dst, open
}

// appendSystem writes the combined system prompt; raw is the client's
// value as it stands in the body, v the same parsed.
func (r *Request) appendSystem(dst, raw []byte, v *fastjson.Value, p Patch) []byte {
	text := s2b(*p.Prompt)
	switch {
	case p.Mode == PromptReplace || isNull(v):
		return appendStr(dst, text)
	case v.Type() == fastjson.TypeString:
		old := v.GetStringBytes()
		if len(old) == 0 {
			return appendStr(dst, text)
		}
		r.c.reset()
		if p.Mode == PromptAppend {
			r.c.text = append(append(append(r.c.text, old...), textSep...), text...)
		} else {
			r.c.text = append(append(append(r.c.text, text...), textSep...), old...)
		}
		return appendStr(dst, r.c.text)
	case v.Type() == fastjson.TypeArray:
		inner := trimSpace(raw[1 : len(raw)-1])
		block := func(dst []byte) []byte {
			dst = append(dst, `{"type":"text","text":`...)
			dst = appendStr(dst, text)
			return append(dst, '}')
		}
		dst = append(dst, '[')
		if p.Mode == PromptAppend {
			dst = append(dst, inner...)
			if len(inner) > 0 {
				dst = append(dst, ',')
			}
			dst = block(dst)
		} else {
			dst = block(dst)
			if len(inner) > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, inner...)
		}
		return append(dst, ']')
	}
	return appendStr(dst, text)
}
