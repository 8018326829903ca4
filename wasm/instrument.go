package wasm

import (
	"errors"
	"fmt"
)

// Guest instrumentation: every guest is bounded in time and call depth by
// code added to it at load, instead of by wazero's own termination.
//
// wazero's WithCloseOnContextDone checks for a closed module at loop
// headers only (wazevo's frontend, lower.go: ensureTermination), and with
// a Go trampoline call per iteration: measured on the shipped policy that
// check costs ~100 µs per evaluation against ~15 µs of actual work, and a
// loop-free recursion bomb (f calls itself twice, 60 deep: 2^60 calls, a
// few frames of stack) is never checked at all. wazero bounds recursion
// only by its stack ceiling (call_engine.go, callStackCeiling: the Go-
// allocated guest stack doubles up to ~100 MB per instance), which lets a
// guest recurse millions of frames deep (TestWazeroStackCeilingIsHuge).
//
// So every function is rewritten (instrumentBody) as
//
//	depth += 1
//	fuel -= 1; if fuel == 0 { slow path }
//	block (result types of the function)   ;; return → br to this block
//	  original body
//	end
//	depth -= 1
//
// and the same fuel check is inserted at the head of every loop. The slow
// path runs once per fuelPeriod function entries or loop iterations:
//
//	fuel = fuelPeriod
//	drop(memory.grow 0)          ;; a call into Go: a preemption point
//	if gh_stop { unreachable }   ;; the host's deadline passed
//	if depth > maxDepth { gh_stop = 2; unreachable }
//
// gh_stop is a mutable i32 global the module exports; the host sets it to 1
// when an evaluation's deadline passes and the guest traps at its next
// check. memory.grow 0 is implemented by wazero as a call into Go, so a
// guest reaches a point where the Go scheduler can preempt its goroutine
// at least every fuelPeriod calls or iterations: without it a runaway guest
// blocks the garbage collector's stop-the-world, and with it every other
// goroutine of the process (the timer that sets gh_stop, /healthz, signal
// handling).
//
// The call depth is exact (return, br to the function's label, and
// return_call all leave through the decrement, since the body is wrapped
// in a block and return becomes br to it) but checked only in the slow
// path, so a guest can overshoot maxDepth by at most fuelPeriod frames:
// the bound is maxDepth+fuelPeriod. A trap restarts nothing: the instance
// is discarded (host.go), so counters never need resetting.
//
// A module this decoder cannot walk (SIMD, threads, exception handling,
// GC types) is refused: an unbounded guest is not an option.

const (
	stopExport = "gh_stop"
	// fuelPeriod is how many function entries and loop iterations run
	// between two slow-path checks.
	fuelPeriod = 4096
	// stopDepth is the value of gh_stop after the depth cap trapped.
	stopDepth = 2
)

var errUninstrumentable = errors.New("wasm: cannot instrument module")

const (
	secType     = 1
	secFunction = 3
	secGlobal   = 6
	secCode     = 10
)

// moduleInfo is what instrumentation needs to know of a module.
type moduleInfo struct {
	importedGlobals, ownGlobals uint32
	importedFuncs               uint32
	hasMemory                   bool
	types                       [][]byte // result types of each function type
	funcTypes                   []uint32 // type index of each defined function
	haveGlobal, haveType        bool
}

// instrument returns bin with the gh_stop global, the fuel and depth
// counters, entry/exit accounting in every function and a fuel check at
// every loop head. maxDepth is the call-depth cap (see the file comment
// for the overshoot).
func instrument(bin []byte, maxDepth uint32) ([]byte, error) {
	secs, err := parseSections(bin)
	if err != nil {
		return nil, err
	}
	var mi moduleInfo
	haveExport := false
	for _, s := range secs {
		switch s.id {
		case secImport:
			if err := mi.readImports(s.body); err != nil {
				return nil, err
			}
		case secType:
			mi.haveType = true
			if mi.types, err = readTypeResults(s.body); err != nil {
				return nil, fmt.Errorf("%w: %v", errUninstrumentable, err)
			}
		case secFunction:
			if mi.funcTypes, err = readU32Vec(s.body); err != nil {
				return nil, err
			}
		case secMemory:
			mi.hasMemory = true
		case secGlobal:
			mi.haveGlobal = true
			if mi.ownGlobals, _, err = readU32(s.body, 0); err != nil {
				return nil, err
			}
		case secExport:
			haveExport = true
			if hasExport(s.body, stopExport, anyKind) {
				return nil, errors.New("wasm: module already exports " + stopExport)
			}
		}
	}
	if !haveExport {
		return nil, fmt.Errorf("%w: no exports", errUninstrumentable)
	}
	if !mi.hasMemory {
		return nil, fmt.Errorf("%w: no memory", errUninstrumentable)
	}
	stopIdx := mi.importedGlobals + mi.ownGlobals
	g := guestCode{stop: stopIdx, fuel: stopIdx + 1, depth: stopIdx + 2}
	g.check = g.fuelCheck(maxDepth)
	g.enter = append(g.add(nil, g.depth, 0x6A), g.check...) // depth += 1, then the fuel check
	g.leave = g.add(nil, g.depth, 0x6B)                     // depth -= 1

	// Block types for functions with several results need a type [] -> R;
	// the ones not in the type section are appended to it.
	extraTypes := map[string]uint32{}
	var extraBody []byte
	blockType := func(fn int) ([]byte, error) {
		if fn >= len(mi.funcTypes) || int(mi.funcTypes[fn]) >= len(mi.types) {
			return nil, errors.New("function type out of range")
		}
		r := mi.types[mi.funcTypes[fn]]
		switch len(r) {
		case 0:
			return []byte{0x40}, nil
		case 1:
			return r, nil
		}
		idx, ok := extraTypes[string(r)]
		if !ok {
			idx = uint32(len(mi.types) + len(extraTypes))
			extraTypes[string(r)] = idx
			extraBody = append(extraBody, 0x60, 0x00)
			extraBody = appendU32(extraBody, uint32(len(r)))
			extraBody = append(extraBody, r...)
		}
		return appendS33(nil, int64(idx)), nil
	}

	// gh_stop: mut i32 = 0; fuel: mut i32 = fuelPeriod; depth: mut i32 = 0
	newGlobals := []byte{0x7F, 0x01, 0x41, 0x00, 0x0B, 0x7F, 0x01}
	newGlobals = appendS33(append(newGlobals, 0x41), fuelPeriod)
	newGlobals = append(newGlobals, 0x0B, 0x7F, 0x01, 0x41, 0x00, 0x0B)
	var code []byte
	for _, s := range secs {
		if s.id == secCode {
			if code, err = g.instrumentCode(s.body, blockType); err != nil {
				return nil, err
			}
		}
	}
	out := append([]byte(nil), bin[:8]...)
	insertedGlobals, insertedTypes := false, false
	for _, s := range secs {
		if s.id != secCustom {
			if !mi.haveType && !insertedTypes && len(extraBody) > 0 && sectionRank(s.id) > sectionRank(secType) {
				out = appendSection(out, secType, append(appendU32(nil, uint32(len(extraTypes))), extraBody...))
				insertedTypes = true
			}
			if !mi.haveGlobal && !insertedGlobals && sectionRank(s.id) > sectionRank(secGlobal) {
				out = appendSection(out, secGlobal, append(appendU32(nil, 3), newGlobals...))
				insertedGlobals = true
			}
		}
		switch s.id {
		case secType:
			out = appendSection(out, secType, appendVec(s.body, uint32(len(extraTypes)), extraBody))
		case secGlobal:
			out = appendSection(out, secGlobal, appendVec(s.body, 3, newGlobals))
		case secExport:
			ex := appendU32(nil, uint32(len(stopExport)))
			ex = append(ex, stopExport...)
			ex = append(ex, 3) // global
			ex = appendU32(ex, stopIdx)
			out = appendSection(out, secExport, appendVec(s.body, 1, ex))
		case secCode:
			out = appendSection(out, secCode, code)
		default:
			out = appendSection(out, s.id, s.body)
		}
	}
	return out, nil
}

// appendVec returns the vector body with n more entries (extra) at its end.
func appendVec(body []byte, n uint32, extra []byte) []byte {
	cnt, off, _ := readU32(body, 0)
	out := appendU32(nil, cnt+n)
	out = append(out, body[off:]...)
	return append(out, extra...)
}

// guestCode holds the instruction sequences instrumentation inserts.
type guestCode struct {
	stop, fuel, depth   uint32
	check, enter, leave []byte
}

func getGlobal(b []byte, idx uint32) []byte { return appendU32(append(b, 0x23), idx) }
func setGlobal(b []byte, idx uint32) []byte { return appendU32(append(b, 0x24), idx) }

// add appends "global[idx] = global[idx] op 1" (op i32.add or i32.sub).
func (g *guestCode) add(b []byte, idx uint32, op byte) []byte {
	b = getGlobal(b, idx)
	b = append(b, 0x41, 0x01, op)
	return setGlobal(b, idx)
}

// fuelCheck is "fuel -= 1; if fuel == 0 { slow path }" (see the file comment).
func (g *guestCode) fuelCheck(maxDepth uint32) []byte {
	b := g.add(nil, g.fuel, 0x6B)
	b = getGlobal(b, g.fuel)
	b = append(b, 0x45, 0x04, 0x40) // i32.eqz; if
	b = appendS33(append(b, 0x41), fuelPeriod)
	b = setGlobal(b, g.fuel)
	b = append(b, 0x41, 0x00, 0x40, 0x00, 0x1A) // drop(memory.grow 0 (i32.const 0))
	b = getGlobal(b, g.stop)
	b = append(b, 0x04, 0x40, 0x00, 0x0B) // if unreachable end
	b = getGlobal(b, g.depth)
	b = appendS33(append(b, 0x41), int64(maxDepth))
	b = append(b, 0x4B, 0x04, 0x40) // i32.gt_u; if
	b = appendS33(append(b, 0x41), stopDepth)
	b = setGlobal(b, g.stop)
	b = append(b, 0x00, 0x0B) // unreachable end
	return append(b, 0x0B)    // end (fuel == 0)
}

func (g *guestCode) instrumentCode(b []byte, blockType func(int) ([]byte, error)) ([]byte, error) {
	cnt, off, err := readU32(b, 0)
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(b)+len(b)/4), cnt)
	var fn []byte
	for i := uint32(0); i < cnt; i++ {
		size, o, err := readU32(b, off)
		if err != nil {
			return nil, err
		}
		if o+int(size) > len(b) {
			return nil, errors.New("wasm: truncated function body")
		}
		bt, err := blockType(int(i))
		if err != nil {
			return nil, fmt.Errorf("%w: function %d: %v", errUninstrumentable, i, err)
		}
		fn, err = g.instrumentBody(fn[:0], b[o:o+int(size)], bt)
		if err != nil {
			return nil, fmt.Errorf("%w: function %d: %v", errUninstrumentable, i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
		off = o + int(size)
	}
	return out, nil
}

func (mi *moduleInfo) readImports(b []byte) error {
	cnt, off, err := readU32(b, 0)
	if err != nil {
		return err
	}
	for j := uint32(0); j < cnt; j++ {
		if _, off, err = readName(b, off); err != nil {
			return err
		}
		if _, off, err = readName(b, off); err != nil {
			return err
		}
		if off >= len(b) {
			return errors.New("wasm: truncated import")
		}
		kind := b[off]
		off++
		switch kind {
		case 0:
			_, off, err = readU32(b, off)
			mi.importedFuncs++
		case 1:
			_, _, _, off, err = readLimits(b, off+1)
		case 2:
			_, _, _, off, err = readLimits(b, off)
			mi.hasMemory = true
		case 3:
			off += 2
			mi.importedGlobals++
		default:
			return fmt.Errorf("%w: import kind %d", errUninstrumentable, kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readTypeResults reads the type section: the result types of each
// function type (MVP value types only).
func readTypeResults(b []byte) ([][]byte, error) {
	cnt, off, err := readU32(b, 0)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, cnt)
	for i := uint32(0); i < cnt; i++ {
		if off >= len(b) || b[off] != 0x60 {
			return nil, errors.New("type section: only function types are supported")
		}
		off++
		var r []byte
		for k := 0; k < 2; k++ { // params, then results
			n, o, err := readU32(b, off)
			if err != nil {
				return nil, err
			}
			if o+int(n) > len(b) {
				return nil, errors.New("truncated type")
			}
			for _, t := range b[o : o+int(n)] {
				if !isValType(t) {
					return nil, fmt.Errorf("value type 0x%02x", t)
				}
			}
			r = b[o : o+int(n)]
			off = o + int(n)
		}
		out = append(out, r)
	}
	return out, nil
}

func isValType(t byte) bool {
	switch t {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return true
	}
	return false
}

func readU32Vec(b []byte) ([]uint32, error) {
	cnt, off, err := readU32(b, 0)
	if err != nil {
		return nil, err
	}
	out := make([]uint32, cnt)
	for i := range out {
		if out[i], off, err = readU32(b, off); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// anyKind matches an export of any kind (hasExport).
const anyKind = -1

// appendS33 appends v as a signed LEB128 (i32.const immediates, block type
// indices).
func appendS33(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// skipLEB skips one LEB128 number.
func skipLEB(b []byte, off int) (int, error) {
	for i := 0; i < 10; i++ {
		if off >= len(b) {
			return off, errors.New("truncated LEB128")
		}
		c := b[off]
		off++
		if c&0x80 == 0 {
			return off, nil
		}
	}
	return off, errors.New("LEB128 too long")
}

func skipLEBs(b []byte, off, n int) (int, error) {
	var err error
	for i := 0; i < n && err == nil; i++ {
		off, err = skipLEB(b, off)
	}
	return off, err
}

func skipBlockType(b []byte, off int) (int, error) {
	if off >= len(b) {
		return off, errors.New("truncated block type")
	}
	switch b[off] {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return off + 1, nil
	}
	return skipLEB(b, off) // type index (s33)
}

// instrumentBody copies one function body (bt: the block type of its
// results), adding the entry accounting, the wrapping block, the exit
// accounting and a fuel check after every loop's block type, and turning
// return into a branch to the wrapping block.
func (g *guestCode) instrumentBody(out, b []byte, bt []byte) ([]byte, error) {
	// locals
	n, off, err := readU32(b, 0)
	if err != nil {
		return nil, err
	}
	for i := uint32(0); i < n; i++ {
		if off, err = skipLEB(b, off); err != nil {
			return nil, err
		}
		off++ // valtype
	}
	if off > len(b) {
		return nil, errors.New("truncated locals")
	}
	out = append(out, b[:off]...)
	out = append(out, g.enter...)
	out = append(out, 0x02)
	out = append(out, bt...)
	start := off
	var nesting uint32 // blocks open inside the body
	leaf := true       // no call and no loop so far
	for off < len(b) {
		op := b[off]
		off++
		if op == 0x03 || op >= 0x10 && op <= 0x13 {
			leaf = false
		}
		switch {
		case op == 0x03: // loop
			nesting++
			if off, err = skipBlockType(b, off); err != nil {
				return nil, err
			}
			out = append(out, b[start:off]...)
			out = append(out, g.check...)
			start = off
			continue
		case op == 0x0F: // return → br to the wrapping block
			out = append(out, b[start:off-1]...)
			out = appendU32(append(out, 0x0C), nesting)
			start = off
			continue
		case op == 0x12 || op == 0x13: // return_call, return_call_indirect: leave first
			out = append(out, b[start:off-1]...)
			out = append(out, g.leave...)
			start = off - 1
			off, err = skipLEBs(b, off, int(op-0x12)+1)
		case op == 0x0B: // end
			if nesting == 0 {
				if off != len(b) {
					return nil, errors.New("code after the function's end")
				}
				if leaf {
					// Straight-line code with forward branches only: it
					// runs in time linear in its size and adds one frame.
					return append(out[:0], b...), nil
				}
				out = append(out, b[start:off]...) // ends the wrapping block
				out = append(out, g.leave...)
				return append(out, 0x0B), nil
			}
			nesting--
		case op == 0x02 || op == 0x04: // block, if
			nesting++
			off, err = skipBlockType(b, off)
		case op <= 0x01, op == 0x05, op == 0x1A, op == 0x1B, op == 0xD1:
		case op == 0x0C, op == 0x0D, op == 0x10, op == 0xD2,
			op >= 0x20 && op <= 0x26:
			off, err = skipLEB(b, off)
		case op == 0x11: // call_indirect: type, table
			off, err = skipLEBs(b, off, 2)
		case op == 0x0E: // br_table
			var cnt uint32
			if cnt, off, err = readU32(b, off); err == nil {
				off, err = skipLEBs(b, off, int(cnt)+1)
			}
		case op == 0x1C: // select t*
			var cnt uint32
			if cnt, off, err = readU32(b, off); err == nil {
				off += int(cnt)
			}
		case op >= 0x28 && op <= 0x3E: // memarg
			off, err = skipLEBs(b, off, 2)
		case op == 0x3F, op == 0x40: // memory.size/grow memidx
			off, err = skipLEB(b, off)
		case op == 0x41, op == 0x42:
			off, err = skipLEB(b, off)
		case op == 0x43:
			off += 4
		case op == 0x44:
			off += 8
		case op >= 0x45 && op <= 0xC4: // numeric, sign extension
		case op == 0xD0: // ref.null t
			off++
		case op == 0xFC:
			off, err = skipFC(b, off)
		default:
			err = fmt.Errorf("unsupported opcode 0x%02x", op)
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, errors.New("function body without end")
}

// skipFC skips the immediates of a 0xFC-prefixed instruction (saturating
// truncation, bulk memory, table operations).
func skipFC(b []byte, off int) (int, error) {
	sub, off, err := readU32(b, off)
	if err != nil {
		return off, err
	}
	switch {
	case sub <= 7:
		return off, nil
	case sub == 8: // memory.init data mem
		return skipLEBs(b, off, 2)
	case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
		return skipLEB(b, off)
	case sub == 10, sub == 12, sub == 14:
		return skipLEBs(b, off, 2)
	}
	return off, fmt.Errorf("unknown 0xFC opcode %d", sub)
}
