package wasm

import (
	"errors"
	"strconv"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/rawjson"
	"github.com/geniehive/geniehive/policy"
)

// A small hand parser for the decision document: it reads the guest's
// output straight out of linear memory into a reused *policy.Decision
// (Targets and Tried keep their capacity), without reflection. Unknown
// fields are skipped; null means zero. Free-form values (patch defaults and
// overrides) decode like encoding/json into any (float64 numbers).
// bench_test.go compares it with encoding/json; decision_test.go checks they
// agree.

var errSyntax = errors.New("wasm: malformed decision JSON")

type parser struct {
	b []byte
	i int
}

func (p *parser) fail() error { return errors.Join(policy.ErrOutput, errSyntax) }

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	p.ws()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

func (p *parser) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// null consumes a null literal when one is next.
func (p *parser) null() bool {
	p.ws()
	return p.lit("null")
}

// object iterates the members of an object, calling f with each key (a
// view into the input, valid during f only).
func (p *parser) object(f func(key []byte) error) error {
	if !p.eat('{') {
		return p.fail()
	}
	if p.eat('}') {
		return nil
	}
	for {
		if p.peek() != '"' {
			return p.fail()
		}
		key, err := p.rawString()
		if err != nil {
			return err
		}
		if !p.eat(':') {
			return p.fail()
		}
		if err := f(key); err != nil {
			return err
		}
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return nil
		}
		return p.fail()
	}
}

func (p *parser) array(f func() error) error {
	if !p.eat('[') {
		return p.fail()
	}
	if p.eat(']') {
		return nil
	}
	for {
		if err := f(); err != nil {
			return err
		}
		if p.eat(',') {
			continue
		}
		if p.eat(']') {
			return nil
		}
		return p.fail()
	}
}

// rawString returns the bytes of a string without escapes, or decodes it
// into a fresh slice when it has escapes.
func (p *parser) rawString() ([]byte, error) {
	p.i++ // opening quote
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return s, nil
		}
		if c == '\\' {
			return p.slowString(start)
		}
		if c < 0x20 {
			return nil, p.fail()
		}
		p.i++
	}
	return nil, p.fail()
}

// slowString decodes the string whose content starts at start (after the
// opening quote) with rawjson's strict decoder (encoding/json's rules: a
// lone or mismatched surrogate is U+FFFD and the next escape is kept).
func (p *parser) slowString(start int) ([]byte, error) {
	out, end, err := rawjson.DecodeString(nil, p.b, start-1)
	if err != nil {
		return nil, p.fail()
	}
	p.i = end
	return out, nil
}

func (p *parser) str() (string, error) {
	if p.null() {
		return "", nil
	}
	if p.peek() != '"' {
		return "", p.fail()
	}
	b, err := p.rawString()
	if err != nil {
		return "", err
	}
	return internString(b), nil
}

// internString returns common short strings without allocating.
func internString(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "asset":
		return policy.TargetAsset
	case "service":
		return policy.TargetService
	case "chat":
		return string(fleet.KindChat)
	case "embeddings":
		return string(fleet.KindEmbeddings)
	case "transcription":
		return string(fleet.KindTranscription)
	case "speech":
		return string(fleet.KindSpeech)
	case "images":
		return string(fleet.KindImages)
	}
	return string(b)
}

func (p *parser) numberBytes() ([]byte, error) {
	p.ws()
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			p.i++
			continue
		}
		break
	}
	if start == p.i {
		return nil, p.fail()
	}
	return p.b[start:p.i], nil
}

func (p *parser) int() (int, error) {
	if p.null() {
		return 0, nil
	}
	nb, err := p.numberBytes()
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(nb))
	if err != nil {
		// Rego numbers may come back as 1.0e0-style floats; accept
		// integral values.
		f, ferr := strconv.ParseFloat(string(nb), 64)
		if ferr != nil || f != float64(int(f)) {
			return 0, p.fail()
		}
		return int(f), nil
	}
	return n, nil
}

func (p *parser) bool() (bool, error) {
	p.ws()
	switch {
	case p.lit("true"):
		return true, nil
	case p.lit("false"), p.lit("null"):
		return false, nil
	}
	return false, p.fail()
}

// value decodes any JSON value as encoding/json does into any.
func (p *parser) value() (any, error) {
	switch p.peek() {
	case '{':
		m := map[string]any{}
		err := p.object(func(k []byte) error {
			v, err := p.value()
			m[string(k)] = v
			return err
		})
		return m, err
	case '[':
		a := []any{}
		err := p.array(func() error {
			v, err := p.value()
			a = append(a, v)
			return err
		})
		return a, err
	case '"':
		b, err := p.rawString()
		return string(b), err
	case 't', 'f':
		return p.bool()
	case 'n':
		if p.lit("null") {
			return nil, nil
		}
		return nil, p.fail()
	}
	nb, err := p.numberBytes()
	if err != nil {
		return nil, err
	}
	f, err := strconv.ParseFloat(string(nb), 64)
	if err != nil {
		return nil, p.fail()
	}
	return f, nil
}

// skip consumes one value.
func (p *parser) skip() error {
	switch p.peek() {
	case '{':
		return p.object(func([]byte) error { return p.skip() })
	case '[':
		return p.array(p.skip)
	case '"':
		_, err := p.rawString()
		return err
	case 't', 'f', 'n':
		_, err := p.bool()
		return err
	}
	_, err := p.numberBytes()
	return err
}

func (p *parser) anyMap() (map[string]any, error) {
	if p.null() {
		return nil, nil
	}
	if p.peek() != '{' {
		return nil, p.fail()
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

func (p *parser) decision(d *policy.Decision) error {
	targets := d.Targets[:0]
	tried := d.Tried[:0]
	*d = policy.Decision{}
	if p.null() {
		return nil
	}
	err := p.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "schema_version":
			d.SchemaVersion, err = p.int()
		case "targets":
			if p.null() {
				return nil
			}
			err = p.array(func() error {
				targets = append(targets, policy.Target{})
				return p.target(&targets[len(targets)-1])
			})
			d.Targets = targets
		case "strip_reasoning":
			d.StripReasoning, err = p.bool()
		case "headers":
			if p.null() {
				return nil
			}
			d.Headers = map[string]string{}
			err = p.object(func(k []byte) error {
				v, err := p.str()
				d.Headers[string(k)] = v
				return err
			})
		case "deny":
			if p.null() {
				return nil
			}
			dn := &policy.Denial{}
			d.Deny = dn
			err = p.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "status":
					dn.Status, err = p.int()
				case "code":
					dn.Code, err = p.str()
				case "reason":
					dn.Reason, err = p.str()
				default:
					err = p.skip()
				}
				return err
			})
		case "tried":
			if p.null() {
				return nil
			}
			err = p.array(func() error {
				s, err := p.str()
				tried = append(tried, s)
				return err
			})
			d.Tried = tried
		default:
			err = p.skip()
		}
		return err
	})
	return err
}

func (p *parser) target(t *policy.Target) error {
	if p.null() {
		return nil
	}
	return p.object(func(k []byte) error {
		var err error
		var s string
		switch string(k) {
		case "kind":
			t.Kind, err = p.str()
		case "name":
			t.Name, err = p.str()
		case "operation":
			s, err = p.str()
			t.Operation = fleet.Kind(s)
		case "role":
			t.Role, err = p.str()
		case "group":
			t.Group, err = p.int()
		case "strategy":
			t.Strategy, err = p.str()
		case "patch":
			if p.null() {
				return nil
			}
			pt := &policy.Patch{}
			t.Patch = pt
			err = p.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "defaults":
					pt.Defaults, err = p.anyMap()
				case "overrides":
					pt.Overrides, err = p.anyMap()
				case "disable_thinking":
					pt.DisableThinking, err = p.bool()
				case "strip_reasoning":
					pt.StripReasoning, err = p.bool()
				case "system_prompt":
					if p.null() {
						return nil
					}
					sp := &fleet.SystemPrompt{}
					pt.SystemPrompt = sp
					err = p.object(func(k []byte) error {
						var err error
						switch string(k) {
						case "mode":
							sp.Mode, err = p.str()
						case "text":
							sp.Text, err = p.str()
						default:
							err = p.skip()
						}
						return err
					})
				default:
					err = p.skip()
				}
				return err
			})
		default:
			err = p.skip()
		}
		return err
	})
}

// parseDecision parses a decision document.
func parseDecision(b []byte, d *policy.Decision) error {
	p := parser{b: b}
	if err := p.decision(d); err != nil {
		return err
	}
	if p.peek() != 0 {
		return p.fail()
	}
	return nil
}

// errUndefined: the entrypoint produced no value.
var errUndefined = errors.Join(policy.ErrOutput, errors.New("wasm: policy decision is undefined"))

// parseOPAResult parses OPA's result set `[{"result": <decision>}]`.
func parseOPAResult(b []byte, d *policy.Decision) error {
	p := parser{b: b}
	n := 0
	err := p.array(func() error {
		n++
		if n > 1 {
			return errors.Join(policy.ErrOutput, errors.New("wasm: policy produced more than one decision"))
		}
		return p.object(func(k []byte) error {
			if string(k) == "result" {
				return p.decision(d)
			}
			return p.skip()
		})
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return errUndefined
	}
	return nil
}
