package wasm

import (
	"errors"
	"strconv"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
)

// Reading OPA values straight out of linear memory.
//
// OPA's one-shot opa_eval serialises the result set to JSON inside the
// guest (opa_json_dump), and the host then parses that JSON. The guest's
// JSON writer is slow: it re-hashes every object key twice to iterate and
// look it up, and emits byte by byte; for the shipped policy's largest
// decisions it costs as much as the evaluation itself. Instead the host
// evaluates through the ABI's eval context (opa_eval_ctx_*, eval,
// opa_eval_ctx_get_result) and decodes the result value directly from the
// runtime's C structs (wasm/src/value.h in OPA's source):
//
//	opa_value          { u8 type }                     1 null, 2 boolean, 3 number, 4 string,
//	                                                   5 array, 6 object, 7 set, 8 interned string,
//	                                                   9 interned boolean
//	opa_boolean_t      { hdr; bool v @1 }
//	opa_number_t       { hdr; u8 repr @1; union @8 }   repr 1: i64 @8; 2: ref { char *s @8; size_t len @12 }
//	opa_string_t       { hdr; u8 free @1; size_t len @4; char *v @8 }
//	opa_array_t        { hdr; elem *elems @4; size_t len @8 }     elem { value *i @0; value *v @4 }
//	opa_object_t       { hdr; elem **buckets @4; size_t n @8 }     elem { k @0; v @4; next @8 }
//	opa_set_t          { hdr; elem **buckets @4; size_t n @8 }     elem { v @0; next @4 }
//
// That layout is not part of OPA's documented ABI, so every engine checks
// it when it loads a module (verifyValueLayout: values of every type built
// by the guest's own parser and compiled code must read back exactly) and
// falls back to opa_json_dump when it does not hold. Every read is bounds
// checked and a walk is bounded in steps, so a corrupt or hostile result
// is an policy.ErrOutput, never a host crash or hang.
//
// Values below the instance's eval heap (the data document, with
// data.derived, and the module's constants) do not change between two data
// loads; strings and patches found there are decoded once per instance and
// data version and then shared (patches are read-only for their users, as
// the Go engine's are).

// OPA value type tags and number representations.
const (
	opaNull            = 1
	opaBoolean         = 2
	opaNumber          = 3
	opaString          = 4
	opaArray           = 5
	opaObject          = 6
	opaSet             = 7
	opaStringInterned  = 8
	opaBooleanInterned = 9

	opaNumberInt = 1
	opaNumberRef = 2
)

// maxValueSteps bounds one decode (values, buckets and elements visited).
const maxValueSteps = 1 << 20

var (
	errValue = errors.Join(policy.ErrOutput, errors.New("wasm: malformed OPA value in guest memory"))
	// errNeedJSON: the value holds something the decoder does not map
	// (a non-string key in a free-form object); the caller falls back to
	// the guest's JSON serialisation, which stringifies such keys.
	errNeedJSON = errors.New("wasm: value needs the JSON path")
)

// valueCache holds what was decoded from the stable part of one instance's
// memory (reset whenever the instance loads data), and recent strings built
// per request (messages that repeat across requests: kind mismatches,
// max_tokens ceilings), by content.
type valueCache struct {
	stable  uint32 // addresses below it do not change until the next reset
	strs    map[uint32]string
	patches map[uint32]*policy.Patch
	recent  map[string]string
}

// maxRecent bounds valueCache.recent; it is emptied when full.
const maxRecent = 256

func (c *valueCache) reset(stable uint32) {
	c.stable = stable
	if c.strs == nil {
		c.strs = map[uint32]string{}
		c.patches = map[uint32]*policy.Patch{}
		c.recent = map[string]string{}
		return
	}
	clear(c.strs)
	clear(c.patches)
}

// recentString returns b as a string, reusing an equal one seen recently.
func (c *valueCache) recentString(b []byte) string {
	if s, ok := c.recent[string(b)]; ok {
		return s
	}
	s := internString(b)
	if len(c.recent) >= maxRecent {
		clear(c.recent)
	}
	c.recent[s] = s
	return s
}

// valueReader decodes values out of a view of the whole linear memory.
type valueReader struct {
	mem   []byte
	cache *valueCache // nil: no caching
	steps int
}

func (r *valueReader) step() error {
	r.steps++
	if r.steps > maxValueSteps {
		return errValue
	}
	return nil
}

func (r *valueReader) u8(a uint32) (byte, error) {
	if uint64(a) >= uint64(len(r.mem)) {
		return 0, errValue
	}
	return r.mem[a], nil
}

func (r *valueReader) u32(a uint32) (uint32, error) {
	if uint64(a)+4 > uint64(len(r.mem)) {
		return 0, errValue
	}
	b := r.mem[a : a+4]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24, nil
}

func (r *valueReader) i64(a uint32) (int64, error) {
	lo, err := r.u32(a)
	if err != nil {
		return 0, err
	}
	hi, err := r.u32(a + 4)
	if err != nil {
		return 0, err
	}
	return int64(uint64(hi)<<32 | uint64(lo)), nil
}

func (r *valueReader) bytes(p, n uint32) ([]byte, error) {
	if uint64(p)+uint64(n) > uint64(len(r.mem)) {
		return nil, errValue
	}
	return r.mem[p : p+n : p+n], nil
}

// typ returns the value's type, interned variants folded in.
func (r *valueReader) typ(a uint32) (byte, error) {
	if a == 0 {
		return 0, errValue
	}
	if err := r.step(); err != nil {
		return 0, err
	}
	t, err := r.u8(a)
	switch t {
	case opaStringInterned:
		t = opaString
	case opaBooleanInterned:
		t = opaBoolean
	}
	if err == nil && (t < opaNull || t > opaSet) {
		err = errValue
	}
	return t, err
}

// strBytes is the content of the string value at a (a view into memory).
func (r *valueReader) strBytes(a uint32) ([]byte, error) {
	n, err := r.u32(a + 4)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	p, err := r.u32(a + 8)
	if err != nil {
		return nil, err
	}
	return r.bytes(p, n)
}

// goString decodes the string value at a, from the cache when a is stable.
func (r *valueReader) goString(a uint32) (string, error) {
	c := r.cache
	if c != nil && a < c.stable {
		if s, ok := c.strs[a]; ok {
			return s, nil
		}
	}
	b, err := r.strBytes(a)
	if err != nil {
		return "", err
	}
	if c == nil || c.recent == nil {
		return internString(b), nil
	}
	if a >= c.stable {
		return c.recentString(b), nil
	}
	s := internString(b)
	c.strs[a] = s
	return s, nil
}

// numText is the number at a: its text for a ref, else ok=false and i.
func (r *valueReader) number(a uint32) (text []byte, i int64, err error) {
	repr, err := r.u8(a + 1)
	if err != nil {
		return nil, 0, err
	}
	switch repr {
	case opaNumberInt:
		i, err = r.i64(a + 8)
		return nil, i, err
	case opaNumberRef:
		p, err := r.u32(a + 8)
		if err != nil {
			return nil, 0, err
		}
		n, err := r.u32(a + 12)
		if err != nil {
			return nil, 0, err
		}
		if n == 0 {
			return nil, 0, errValue
		}
		text, err = r.bytes(p, n)
		return text, 0, err
	}
	return nil, 0, errValue
}

// str: a string, or "" for null (as parser.str).
func (r *valueReader) str(a uint32) (string, error) {
	t, err := r.typ(a)
	if err != nil {
		return "", err
	}
	switch t {
	case opaNull:
		return "", nil
	case opaString:
		return r.goString(a)
	}
	return "", errValue
}

// bool: a boolean, or false for null (as parser.bool).
func (r *valueReader) bool(a uint32) (bool, error) {
	t, err := r.typ(a)
	if err != nil {
		return false, err
	}
	switch t {
	case opaNull:
		return false, nil
	case opaBoolean:
		b, err := r.u8(a + 1)
		return b != 0, err
	}
	return false, errValue
}

// int: an integral number, or 0 for null (as parser.int).
func (r *valueReader) int(a uint32) (int, error) {
	t, err := r.typ(a)
	if err != nil {
		return 0, err
	}
	switch t {
	case opaNull:
		return 0, nil
	case opaNumber:
	default:
		return 0, errValue
	}
	text, i, err := r.number(a)
	if err != nil {
		return 0, err
	}
	if text == nil {
		if int64(int(i)) != i {
			return 0, errValue
		}
		return int(i), nil
	}
	if n, err := strconv.Atoi(string(text)); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || f != float64(int(f)) {
		return 0, errValue
	}
	return int(f), nil
}

// float: a number as float64 (as encoding/json decodes into any).
func (r *valueReader) float(a uint32) (float64, error) {
	text, i, err := r.number(a)
	if err != nil {
		return 0, err
	}
	if text == nil {
		return float64(i), nil
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return 0, errValue
	}
	return f, nil
}

// array calls f with each element of the array at a (type already checked).
func (r *valueReader) array(a uint32, f func(v uint32) error) error {
	elems, err := r.u32(a + 4)
	if err != nil {
		return err
	}
	n, err := r.u32(a + 8)
	if err != nil {
		return err
	}
	if uint64(n)*8 > uint64(len(r.mem)) {
		return errValue
	}
	for i := uint32(0); i < n; i++ {
		v, err := r.u32(elems + 8*i + 4)
		if err != nil {
			return err
		}
		if err := f(v); err != nil {
			return err
		}
	}
	return nil
}

// object calls f with each key and value of the object at a, in bucket
// order (the order opa_json_dump writes them in).
func (r *valueReader) object(a uint32, f func(k, v uint32) error) error {
	buckets, err := r.u32(a + 4)
	if err != nil {
		return err
	}
	n, err := r.u32(a + 8)
	if err != nil {
		return err
	}
	if uint64(n)*4 > uint64(len(r.mem)) {
		return errValue
	}
	for i := uint32(0); i < n; i++ {
		e, err := r.u32(buckets + 4*i)
		if err != nil {
			return err
		}
		for e != 0 {
			if err := r.step(); err != nil {
				return err
			}
			k, err := r.u32(e)
			if err != nil {
				return err
			}
			v, err := r.u32(e + 4)
			if err != nil {
				return err
			}
			if err := f(k, v); err != nil {
				return err
			}
			if e, err = r.u32(e + 8); err != nil {
				return err
			}
		}
	}
	return nil
}

// set calls f with each element of the set at a, in bucket order.
func (r *valueReader) set(a uint32, f func(v uint32) error) error {
	buckets, err := r.u32(a + 4)
	if err != nil {
		return err
	}
	n, err := r.u32(a + 8)
	if err != nil {
		return err
	}
	if uint64(n)*4 > uint64(len(r.mem)) {
		return errValue
	}
	for i := uint32(0); i < n; i++ {
		e, err := r.u32(buckets + 4*i)
		if err != nil {
			return err
		}
		for e != 0 {
			if err := r.step(); err != nil {
				return err
			}
			v, err := r.u32(e)
			if err != nil {
				return err
			}
			if err := f(v); err != nil {
				return err
			}
			if e, err = r.u32(e + 4); err != nil {
				return err
			}
		}
	}
	return nil
}

// key returns the bytes of an object key, ok=false when it is not a string.
func (r *valueReader) key(k uint32) ([]byte, bool, error) {
	t, err := r.typ(k)
	if err != nil || t != opaString {
		return nil, false, err
	}
	b, err := r.strBytes(k)
	return b, err == nil, err
}

// anyValue decodes a value the way encoding/json decodes its JSON into any:
// objects as map[string]any, arrays and sets as []any, numbers as float64.
func (r *valueReader) anyValue(a uint32, depth int) (any, error) {
	if depth > 512 {
		return nil, errValue
	}
	t, err := r.typ(a)
	if err != nil {
		return nil, err
	}
	switch t {
	case opaNull:
		return nil, nil
	case opaBoolean:
		b, err := r.u8(a + 1)
		return b != 0, err
	case opaNumber:
		return r.float(a)
	case opaString:
		return r.goString(a)
	case opaArray, opaSet:
		out := []any{}
		each := r.array
		if t == opaSet {
			each = r.set
		}
		err := each(a, func(v uint32) error {
			x, err := r.anyValue(v, depth+1)
			out = append(out, x)
			return err
		})
		return out, err
	}
	m := map[string]any{}
	err = r.object(a, func(k, v uint32) error {
		kb, ok, err := r.key(k)
		if err != nil {
			return err
		}
		if !ok {
			return errNeedJSON
		}
		x, err := r.anyValue(v, depth+1)
		m[string(kb)] = x
		return err
	})
	return m, err
}

// anyMap: an object as map[string]any, nil for null (as parser.anyMap).
func (r *valueReader) anyMap(a uint32) (map[string]any, error) {
	t, err := r.typ(a)
	if err != nil {
		return nil, err
	}
	switch t {
	case opaNull:
		return nil, nil
	case opaObject:
		v, err := r.anyValue(a, 0)
		if err != nil {
			return nil, err
		}
		return v.(map[string]any), nil
	}
	return nil, errValue
}

// isNull reports whether the value at a is null (after checking it is a value).
func (r *valueReader) isNull(a uint32) (bool, error) {
	t, err := r.typ(a)
	return t == opaNull, err
}

// expect checks that the value at a has type t.
func (r *valueReader) expect(a uint32, t byte) error {
	got, err := r.typ(a)
	if err != nil {
		return err
	}
	if got != t {
		return errValue
	}
	return nil
}

// resultSet decodes OPA's result set (a set of {"result": decision}) into d.
func (r *valueReader) resultSet(a uint32, d *policy.Decision) error {
	if err := r.expect(a, opaSet); err != nil {
		return err
	}
	n := 0
	err := r.set(a, func(v uint32) error {
		n++
		if n > 1 {
			return errors.Join(policy.ErrOutput, errors.New("wasm: policy produced more than one decision"))
		}
		if err := r.expect(v, opaObject); err != nil {
			return err
		}
		return r.object(v, func(k, v uint32) error {
			kb, ok, err := r.key(k)
			if err != nil || !ok || string(kb) != "result" {
				return err
			}
			return r.decision(v, d)
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

// decision decodes a decision document into d, with parser.decision's
// semantics (d reset first, Targets and Tried keep their capacity, null is
// zero, unknown fields ignored).
func (r *valueReader) decision(a uint32, d *policy.Decision) error {
	targets := d.Targets[:0]
	tried := d.Tried[:0]
	*d = policy.Decision{}
	if null, err := r.isNull(a); null || err != nil {
		return err
	}
	if err := r.expect(a, opaObject); err != nil {
		return err
	}
	return r.object(a, func(k, v uint32) error {
		kb, ok, err := r.key(k)
		if err != nil || !ok {
			return err
		}
		switch string(kb) {
		case "schema_version":
			d.SchemaVersion, err = r.int(v)
		case "targets":
			if null, err := r.isNull(v); null || err != nil {
				return err
			}
			if err := r.expect(v, opaArray); err != nil {
				return err
			}
			err = r.array(v, func(v uint32) error {
				targets = append(targets, policy.Target{})
				return r.target(v, &targets[len(targets)-1])
			})
			d.Targets = targets
		case "strip_reasoning":
			d.StripReasoning, err = r.bool(v)
		case "headers":
			if null, err := r.isNull(v); null || err != nil {
				return err
			}
			if err := r.expect(v, opaObject); err != nil {
				return err
			}
			d.Headers = map[string]string{}
			err = r.object(v, func(k, v uint32) error {
				kb, ok, err := r.key(k)
				if err != nil {
					return err
				}
				if !ok {
					return errNeedJSON
				}
				s, err := r.str(v)
				d.Headers[string(kb)] = s
				return err
			})
		case "deny":
			if null, err := r.isNull(v); null || err != nil {
				return err
			}
			if err := r.expect(v, opaObject); err != nil {
				return err
			}
			dn := &policy.Denial{}
			d.Deny = dn
			err = r.object(v, func(k, v uint32) error {
				kb, ok, err := r.key(k)
				if err != nil || !ok {
					return err
				}
				switch string(kb) {
				case "status":
					dn.Status, err = r.int(v)
				case "code":
					dn.Code, err = r.str(v)
				case "reason":
					dn.Reason, err = r.str(v)
				}
				return err
			})
		case "tried":
			if null, err := r.isNull(v); null || err != nil {
				return err
			}
			if err := r.expect(v, opaArray); err != nil {
				return err
			}
			err = r.array(v, func(v uint32) error {
				s, err := r.str(v)
				tried = append(tried, s)
				return err
			})
			d.Tried = tried
		}
		return err
	})
}

func (r *valueReader) target(a uint32, t *policy.Target) error {
	if null, err := r.isNull(a); null || err != nil {
		return err
	}
	if err := r.expect(a, opaObject); err != nil {
		return err
	}
	return r.object(a, func(k, v uint32) error {
		kb, ok, err := r.key(k)
		if err != nil || !ok {
			return err
		}
		var s string
		switch string(kb) {
		case "kind":
			t.Kind, err = r.str(v)
		case "name":
			t.Name, err = r.str(v)
		case "operation":
			s, err = r.str(v)
			t.Operation = fleet.Kind(s)
		case "role":
			t.Role, err = r.str(v)
		case "group":
			t.Group, err = r.int(v)
		case "strategy":
			t.Strategy, err = r.str(v)
		case "patch":
			t.Patch, err = r.patch(v)
		}
		return err
	})
}

// patch decodes a target's patch, once per stable address.
func (r *valueReader) patch(a uint32) (*policy.Patch, error) {
	if null, err := r.isNull(a); null || err != nil {
		return nil, err
	}
	if err := r.expect(a, opaObject); err != nil {
		return nil, err
	}
	c := r.cache
	if c != nil && a < c.stable {
		if p, ok := c.patches[a]; ok {
			return p, nil
		}
	}
	pt := &policy.Patch{}
	err := r.object(a, func(k, v uint32) error {
		kb, ok, err := r.key(k)
		if err != nil || !ok {
			return err
		}
		switch string(kb) {
		case "defaults":
			pt.Defaults, err = r.anyMap(v)
		case "overrides":
			pt.Overrides, err = r.anyMap(v)
		case "disable_thinking":
			pt.DisableThinking, err = r.bool(v)
		case "strip_reasoning":
			pt.StripReasoning, err = r.bool(v)
		case "system_prompt":
			if null, err := r.isNull(v); null || err != nil {
				return err
			}
			if err := r.expect(v, opaObject); err != nil {
				return err
			}
			sp := &fleet.SystemPrompt{}
			pt.SystemPrompt = sp
			err = r.object(v, func(k, v uint32) error {
				kb, ok, err := r.key(k)
				if err != nil || !ok {
					return err
				}
				switch string(kb) {
				case "mode":
					sp.Mode, err = r.str(v)
				case "text":
					sp.Text, err = r.str(v)
				}
				return err
			})
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if c != nil && a < c.stable {
		c.patches[a] = pt
	}
	return pt, nil
}
