package state

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/rawjson"
)

// Decoding node states: every heartbeat of every node is decoded by every
// edge (2,000 a second at 10,000 nodes), and encoding/json's reflection
// was most of the edge's state-churn CPU (docs/CAPACITY.md). decodeNodeState
// decodes the states node agents write (fleet.NodeState as json.Marshal
// spells it) by hand, without reflection; anything the fast path is not sure to decode
// exactly as encoding/json would, it hands to encoding/json: a key that is
// not a field's exact name (case variants, unknown keys, escapes), a key
// given twice, null, a string with escapes, control characters or bytes
// above 0x7f (encoding/json replaces invalid UTF-8), a number not plainly
// of its field's type, a time that time.Time refuses, any syntax error.
// Hostile input therefore costs what it cost before and decodes (or
// fails, with the same error) exactly as before; FuzzDecodeNodeState
// checks that against encoding/json.

// decodeNodeState decodes raw into st (which it overwrites) as
// json.Unmarshal([]byte(raw), st) would.
func decodeNodeState(raw string, st *fleet.NodeState) error {
	*st = fleet.NodeState{}
	if raw != "" {
		d := nodeDecoder{b: unsafe.Slice(unsafe.StringData(raw), len(raw)), s: raw}
		if d.nodeState(st) {
			compactStrings(st)
			return nil
		}
		*st = fleet.NodeState{}
	}
	return json.Unmarshal([]byte(raw), st)
}

// nodeDecoder is the fast path: b and s are the same bytes (b read only);
// every method returns false when the input is not plainly what it
// expects, and the caller falls back.
type nodeDecoder struct {
	b []byte
	s string
	i int
}

func (d *nodeDecoder) ws() { d.i = rawjson.SkipWS(d.b, d.i) }

// eat consumes c (after whitespace).
func (d *nodeDecoder) eat(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// peek returns the next byte after whitespace (0 at the end).
func (d *nodeDecoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// str reads a plain string (see raw). The result shares the input until
// compactStrings copies it: the decoded state keeps only its own strings,
// as with encoding/json, never the stored JSON (up to MaxNodeStateBytes of
// it, much of it possibly padding).
func (d *nodeDecoder) str() (string, bool) {
	s, ok := d.raw()
	if !ok || s == "" {
		return "", ok
	}
	return s, true
}

// raw reads a plain string: ASCII from 0x20, no escapes (else the caller
// falls back). The result shares the input: for keys, compared and
// dropped.
func (d *nodeDecoder) raw() (string, bool) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", false
	}
	s := d.i + 1
	for j := s; j < len(d.b); j++ {
		c := d.b[j]
		if c == '"' {
			d.i = j + 1
			return d.s[s:j], true
		}
		if c < 0x20 || c >= 0x80 || c == '\\' {
			return "", false
		}
	}
	return "", false
}

// object starts an object; next then yields its keys.
func (d *nodeDecoder) object() bool { return d.eat('{') }

// next returns the next key of an object (its ':' consumed), or done at
// the closing brace. first is true before the first key.
func (d *nodeDecoder) next(first bool) (key string, done, ok bool) {
	if first {
		if d.peek() == '}' {
			d.i++
			return "", true, true
		}
	} else {
		switch d.peek() {
		case '}':
			d.i++
			return "", true, true
		case ',':
			d.i++
		default:
			return "", false, false
		}
	}
	k, ok := d.raw()
	if !ok || !d.eat(':') {
		return "", false, false
	}
	return k, false, true
}

// once marks field bit in seen; false when it was already there (a key
// given twice: encoding/json merges, the fast path does not).
func once(seen *uint32, bit uint) bool {
	if *seen&(1<<bit) != 0 {
		return false
	}
	*seen |= 1 << bit
	return true
}

// array starts an array and reports whether it is empty (consumed then).
func (d *nodeDecoder) array() (empty, ok bool) {
	if !d.eat('[') {
		return false, false
	}
	if d.peek() == ']' {
		d.i++
		return true, true
	}
	return false, true
}

// more is called after an array element: true at ',', false (done) at ']'.
func (d *nodeDecoder) more() (more, ok bool) {
	switch d.peek() {
	case ',':
		d.i++
		return true, true
	case ']':
		d.i++
		return false, true
	}
	return false, false
}

// int64v reads an integer of at most 18 digits (no fraction, no
// exponent), which strconv.ParseInt reads the same.
func (d *nodeDecoder) int64v() (int64, bool) {
	d.ws()
	j, neg := d.i, false
	if j < len(d.b) && d.b[j] == '-' {
		neg = true
		j++
	}
	s := j
	var n int64
	for ; j < len(d.b) && d.b[j] >= '0' && d.b[j] <= '9'; j++ {
		n = n*10 + int64(d.b[j]-'0')
	}
	if j == s || j-s > 18 || (d.b[s] == '0' && j-s > 1) {
		return 0, false
	}
	if j < len(d.b) && (d.b[j] == '.' || d.b[j] == 'e' || d.b[j] == 'E') {
		return 0, false
	}
	d.i = j
	if neg {
		n = -n
	}
	return n, true
}

func (d *nodeDecoder) intv() (int, bool) {
	n, ok := d.int64v()
	return int(n), ok
}

// float reads a number as encoding/json reads it into a float64.
func (d *nodeDecoder) float() (float64, bool) {
	d.ws()
	e, err := rawjson.ValidNumber(d.b, d.i)
	if err != nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(d.s[d.i:e], 64)
	if err != nil {
		return 0, false
	}
	d.i = e
	return f, true
}

// boolv reads true or false (what follows is checked by the caller: a
// ',', '}' or ']').
func (d *nodeDecoder) boolv() (bool, bool) {
	d.ws()
	for _, l := range [2]string{"true", "false"} {
		if e := d.i + len(l); e <= len(d.b) {
			if v, ok := rawjson.BoolLit(d.b, d.i, e); ok {
				d.i = e
				return v, true
			}
		}
	}
	return false, false
}

// strs reads a list of plain strings ([] gives an empty, non-nil list,
// as encoding/json does).
func (d *nodeDecoder) strs(dst *[]string) bool {
	return decodeList(d, dst, 4, func(s *string) bool {
		v, ok := d.str()
		*s = v
		return ok
	})
}

// decodeList reads a JSON array whose elements elem decodes in place ([]
// gives an empty, non-nil list, as encoding/json does); capHint sizes the
// first allocation.
func decodeList[T any](d *nodeDecoder, dst *[]T, capHint int, elem func(*T) bool) bool {
	empty, ok := d.array()
	if !ok {
		return false
	}
	out := make([]T, 0, capHint)
	for !empty {
		var zero T
		out = append(out, zero)
		if !elem(&out[len(out)-1]) {
			return false
		}
		more, ok := d.more()
		if !ok {
			return false
		}
		empty = !more
	}
	if len(out) < cap(out) {
		// The list is retained as long as the node's state: its spare
		// capacity would be too (3 of 8 services' worth, 816 bytes the
		// GC scans, at 5 services: BenchmarkFleetHeap).
		out = append(make([]T, 0, len(out)), out...)
	}
	*dst = out
	return true
}

func (d *nodeDecoder) nodeState(st *fleet.NodeState) bool {
	if !d.object() {
		return false
	}
	var seen uint32
	for first := true; ; first = false {
		k, done, ok := d.next(first)
		switch {
		case !ok:
			return false
		case done:
			d.ws()
			return d.i == len(d.b)
		}
		if !once(&seen, stateField(k)) {
			return false
		}
		if d.null() {
			continue
		}
		switch k {
		case "host":
			ok = d.host(&st.Host)
		case "services":
			ok = d.services(&st.Services)
		case "ttl_s":
			st.TTLSeconds, ok = d.intv()
		case "shape":
			st.Shape, ok = d.str()
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
}

// stateField numbers NodeState's keys for once (31: unknown, refused
// anyway).
func stateField(k string) uint {
	switch k {
	case "host":
		return 0
	case "services":
		return 1
	case "ttl_s":
		return 2
	case "shape":
		return 3
	}
	return 31
}

// null consumes a null literal. A field's first null leaves it as it is,
// zero, with encoding/json too (time.Time's UnmarshalJSON ignores null).
func (d *nodeDecoder) null() bool {
	d.ws()
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// timev reads a time as encoding/json does: time.Time's UnmarshalJSON on
// the quoted string.
func (d *nodeDecoder) timev(t *time.Time) bool {
	d.ws()
	s := d.i
	if _, ok := d.raw(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.b[s:d.i]) == nil
}

func (d *nodeDecoder) host(h *fleet.Host) bool {
	if !d.object() {
		return false
	}
	var seen uint32
	for first := true; ; first = false {
		k, done, ok := d.next(first)
		switch {
		case !ok:
			return false
		case done:
			return true
		}
		if !once(&seen, hostField(k)) {
			return false
		}
		if d.null() {
			continue
		}
		switch k {
		case "id":
			h.ID, ok = d.str()
		case "labels":
			ok = d.labels(&h.Labels)
		case "agent":
			h.Agent, ok = d.str()
		case "started_at":
			ok = d.timev(&h.StartedAt)
		case "updated_at":
			ok = d.timev(&h.UpdatedAt)
		case "gpus":
			ok = d.gpus(&h.GPUs)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
}

// hostField numbers Host's keys for once (31: unknown, refused anyway).
func hostField(k string) uint {
	switch k {
	case "id":
		return 0
	case "labels":
		return 1
	case "agent":
		return 2
	case "started_at":
		return 3
	case "updated_at":
		return 4
	case "gpus":
		return 5
	}
	return 31
}

// labels reads a map of plain strings (a key given twice: the last wins,
// as with encoding/json).
func (d *nodeDecoder) labels(dst *map[string]string) bool {
	if !d.object() {
		return false
	}
	m := map[string]string{}
	for first := true; ; first = false {
		k, done, ok := d.next(first)
		switch {
		case !ok:
			return false
		case done:
			*dst = m
			return true
		}
		v, ok := d.str()
		if !ok {
			return false
		}
		m[strings.Clone(k)] = strings.Clone(v)
	}
}

func (d *nodeDecoder) gpus(dst *[]fleet.GPU) bool { return decodeList(d, dst, 2, d.gpu) }

// gpuField numbers GPU's keys for once (31: unknown).
func gpuField(k string) uint {
	switch k {
	case "index":
		return 0
	case "name":
		return 1
	case "vram_used_bytes":
		return 2
	case "vram_total_bytes":
		return 3
	case "util_percent":
		return 4
	}
	return 31
}

func (d *nodeDecoder) gpu(g *fleet.GPU) bool {
	if !d.object() {
		return false
	}
	var seen uint32
	for first := true; ; first = false {
		k, done, ok := d.next(first)
		switch {
		case !ok:
			return false
		case done:
			return true
		}
		if !once(&seen, gpuField(k)) {
			return false
		}
		if d.null() {
			continue
		}
		switch k {
		case "index":
			g.Index, ok = d.intv()
		case "name":
			g.Name, ok = d.str()
		case "vram_used_bytes":
			g.VRAMUsedBytes, ok = d.int64v()
		case "vram_total_bytes":
			g.VRAMTotalBytes, ok = d.int64v()
		case "util_percent":
			g.UtilPercent, ok = d.intv()
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
}

func (d *nodeDecoder) services(dst *[]fleet.Service) bool { return decodeList(d, dst, 8, d.service) }

// serviceField numbers Service's keys for once (31: unknown).
func serviceField(k string) uint {
	switch k {
	case "id":
		return 0
	case "host_id":
		return 1
	case "name":
		return 2
	case "kind":
		return 3
	case "protocol":
		return 4
	case "endpoint":
		return 5
	case "max_concurrency":
		return 6
	case "healthy":
		return 7
	case "health_error":
		return 8
	case "assets":
		return 9
	case "metrics":
		return 10
	case "labels":
		return 11
	case "apis":
		return 12
	case "swap":
		return 13
	}
	return 31
}

func (d *nodeDecoder) service(s *fleet.Service) bool {
	if !d.object() {
		return false
	}
	var seen uint32
	for first := true; ; first = false {
		k, done, ok := d.next(first)
		switch {
		case !ok:
			return false
		case done:
			return true
		}
		if !once(&seen, serviceField(k)) {
			return false
		}
		if d.null() {
			continue
		}
		switch k {
		case "id":
			s.ID, ok = d.str()
		case "host_id":
			s.HostID, ok = d.str()
		case "name":
			s.Name, ok = d.str()
		case "kind":
			var v string
			v, ok = d.str()
			s.Kind = fleet.Kind(v)
		case "protocol":
			s.Protocol, ok = d.str()
		case "endpoint":
			s.Endpoint, ok = d.str()
		case "max_concurrency":
			s.MaxConcurrency, ok = d.intv()
		case "healthy":
			s.Healthy, ok = d.boolv()
		case "health_error":
			s.HealthError, ok = d.str()
		case "assets":
			ok = d.assets(&s.Assets)
		case "metrics":
			ok = d.metrics(&s.Metrics)
		case "labels":
			ok = d.strs(&s.Labels)
		case "apis":
			ok = d.strs(&s.APIs)
		case "swap":
			s.Swap, ok = d.str()
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
}

func (d *nodeDecoder) assets(dst *[]fleet.Asset) bool { return decodeList(d, dst, 4, d.asset) }

// assetField numbers Asset's keys for once (31: unknown).
func assetField(k string) uint {
	switch k {
	case "name":
		return 0
	case "family":
		return 1
	case "parameter_size":
		return 2
	case "quantization":
		return 3
	case "context_length":
		return 4
	case "loaded":
		return 5
	case "size_vram":
		return 6
	case "size":
		return 7
	case "tags":
		return 8
	case "thinking":
		return 9
	case "capabilities":
		return 10
	}
	return 31
}

func (d *nodeDecoder) asset(a *fleet.Asset) bool {
	if !d.object() {
		return false
	}
	var seen uint32
	for first := true; ; first = false {
		k, done, ok := d.next(first)
		switch {
		case !ok:
			return false
		case done:
			return true
		}
		if !once(&seen, assetField(k)) {
			return false
		}
		if d.null() {
			continue
		}
		switch k {
		case "name":
			a.Name, ok = d.str()
		case "family":
			a.Family, ok = d.str()
		case "parameter_size":
			a.ParameterSize, ok = d.str()
		case "quantization":
			a.Quantization, ok = d.str()
		case "context_length":
			a.ContextLength, ok = d.intv()
		case "loaded":
			a.Loaded, ok = d.boolv()
		case "size_vram":
			a.SizeVRAM, ok = d.int64v()
		case "size":
			a.Size, ok = d.int64v()
		case "tags":
			ok = d.strs(&a.Tags)
		case "thinking":
			a.Thinking, ok = d.boolv()
		case "capabilities":
			ok = d.strs(&a.Capabilities)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
}

// metricsField numbers Metrics' keys for once (31: unknown).
func metricsField(k string) uint {
	switch k {
	case "loaded_model_count":
		return 0
	case "vram_used_bytes":
		return 1
	case "vram_total_bytes":
		return 2
	case "queue_depth":
		return 3
	case "in_flight":
		return 4
	case "latency_ms":
		return 5
	case "tokens_per_second":
		return 6
	}
	return 31
}

func (d *nodeDecoder) metrics(m *fleet.Metrics) bool {
	if !d.object() {
		return false
	}
	var seen uint32
	for first := true; ; first = false {
		k, done, ok := d.next(first)
		switch {
		case !ok:
			return false
		case done:
			return true
		}
		if !once(&seen, metricsField(k)) {
			return false
		}
		if d.null() {
			continue
		}
		switch k {
		case "loaded_model_count":
			m.LoadedModelCount, ok = d.intv()
		case "vram_used_bytes":
			m.VRAMUsedBytes, ok = d.int64v()
		case "vram_total_bytes":
			m.VRAMTotalBytes, ok = d.int64v()
		case "queue_depth":
			m.QueueDepth, ok = d.intv()
		case "in_flight":
			m.InFlight, ok = d.intv()
		case "latency_ms":
			m.LatencyMS, ok = d.float()
		case "tokens_per_second":
			m.TokensPerSecond, ok = d.float()
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
}

// compactStrings copies every string of a state the fast path decoded
// (they share the stored JSON until then), but the host's labels (labels
// copies those), into one allocation, and every list of strings (a
// service's labels and APIs, an asset's tags and capabilities) into one
// backing array, each list capped to its own elements (an append copies).
// encoding/json makes an object of each: ~100 strings and 25 lists a node
// of 5 services x 4 assets, which every GC of the edge marked again
// (docs/CAPACITY.md, "Policy data at 10,000 nodes"); two objects now.
// Strings are immutable and the node's whole state is replaced together,
// so sharing one allocation changes nothing a reader can see.
func compactStrings(st *fleet.NodeState) {
	nb, nl := 0, 0
	walkNodeStrings(st, func(s *string) { nb += len(*s) }, func(l *[]string) {
		nl += len(*l)
		for _, e := range *l {
			nb += len(e)
		}
	})
	var b strings.Builder
	b.Grow(nb)
	walkNodeStrings(st, func(s *string) { b.WriteString(*s) }, func(l *[]string) {
		for _, e := range *l {
			b.WriteString(e)
		}
	})
	arena, off := b.String(), 0
	take := func(s string) string {
		n := len(s)
		if n == 0 {
			return ""
		}
		off += n
		return arena[off-n : off]
	}
	backing := make([]string, 0, nl) // never grows: sub-slices stay in it
	walkNodeStrings(st, func(s *string) { *s = take(*s) }, func(l *[]string) {
		switch {
		case *l == nil:
		case len(*l) == 0:
			*l = noStrings
		default:
			o := len(backing)
			for _, e := range *l {
				backing = append(backing, take(e))
			}
			*l = backing[o:len(backing):len(backing)]
		}
	})
}

// noStrings is every decoded empty list ([] in JSON: empty, not nil, as
// encoding/json gives); its capacity is 0, so an append never writes it.
var noStrings = []string{}

// walkNodeStrings calls str on every string of st the fast path decodes
// but the host's labels, and list on every list of strings, always in the
// same order.
func walkNodeStrings(st *fleet.NodeState, str func(*string), list func(*[]string)) {
	h := &st.Host
	str(&h.ID)
	str(&h.Agent)
	for i := range h.GPUs {
		str(&h.GPUs[i].Name)
	}
	str(&st.Shape)
	for i := range st.Services {
		s := &st.Services[i]
		str(&s.ID)
		str(&s.HostID)
		str(&s.Name)
		str((*string)(&s.Kind))
		str(&s.Protocol)
		str(&s.Endpoint)
		str(&s.HealthError)
		str(&s.Swap)
		list(&s.Labels)
		list(&s.APIs)
		for j := range s.Assets {
			a := &s.Assets[j]
			str(&a.Name)
			str(&a.Family)
			str(&a.ParameterSize)
			str(&a.Quantization)
			list(&a.Tags)
			list(&a.Capabilities)
		}
	}
}
