package wasm

import (
	"errors"
	"fmt"
)

// Loop instrumentation: a cheap way to cut off a runaway guest.
//
// wazero's WithCloseOnContextDone makes every loop iteration call out of
// the guest into a Go trampoline to check whether the module was closed.
// OPA's Wasm runtime loops a lot (hashing, copying, parsing): measured on
// the shipped policy that check costs ~100 µs per evaluation against ~15 µs
// of actual work. Instead we add one mutable i32 global, exported as
// "gh_stop", and at the head of every loop insert a check of it
//
//	global.get $gh_stop
//	if
//	  unreachable
//	end
//
// every 4096 loop iterations (a fuel counter in a second global; a few
// instructions per iteration). When an evaluation's deadline passes the
// host sets gh_stop to 1 and the guest traps at its next check; the
// instance is then discarded. The same check also executes
// `memory.grow 0`, which wazero implements as a call into Go: that is a
// point where the Go scheduler can preempt the goroutine running the
// guest. Without it a runaway guest would block the garbage collector's
// stop-the-world, and with it the timer goroutine that sets gh_stop. Code without loops can only
// run as long as its (bounded) call depth allows. A module whose code this
// decoder cannot walk (SIMD, threads, legacy exception handling) is left
// alone and the engine falls back to WithCloseOnContextDone.

const stopExport = "gh_stop"

var errUninstrumentable = errors.New("wasm: cannot instrument module")

const (
	secGlobal = 6
	secCode   = 10
)

// instrumentLoops returns bin with the gh_stop global and loop checks.
func instrumentLoops(bin []byte) ([]byte, error) {
	secs, err := parseSections(bin)
	if err != nil {
		return nil, err
	}
	var importedGlobals, ownGlobals uint32
	haveGlobal, haveExport := false, false
	for _, s := range secs {
		switch s.id {
		case secImport:
			n, err := countImportedGlobals(s.body)
			if err != nil {
				return nil, err
			}
			importedGlobals = n
		case secGlobal:
			haveGlobal = true
			if ownGlobals, _, err = readU32(s.body, 0); err != nil {
				return nil, err
			}
		case secExport:
			haveExport = true
			if hasExport(s.body, stopExport) {
				return nil, errors.New("wasm: module already exports " + stopExport)
			}
		}
	}
	if !haveExport {
		return nil, errUninstrumentable
	}
	stopIdx := importedGlobals + ownGlobals
	fuelIdx := stopIdx + 1
	get := func(b []byte, idx uint32) []byte { return appendU32(append(b, 0x23), idx) }
	set := func(b []byte, idx uint32) []byte { return appendU32(append(b, 0x24), idx) }
	// fuel -= 1
	check := get(nil, fuelIdx)
	check = append(check, 0x41, 0x01, 0x6B)
	check = set(check, fuelIdx)
	// if fuel == 0 { fuel = 4096; drop(memory.grow(0)); if stop { unreachable } }
	check = get(check, fuelIdx)
	check = append(check, 0x45, 0x04, 0x40)
	check = append(check, 0x41, 0x80, 0x20)
	check = set(check, fuelIdx)
	check = append(check, 0x41, 0x00, 0x40, 0x00, 0x1A)
	check = get(check, stopIdx)
	check = append(check, 0x04, 0x40, 0x00, 0x0B, 0x0B)

	// gh_stop: mut i32 = 0; fuel: mut i32 = 4096
	newGlobal := []byte{0x7F, 0x01, 0x41, 0x00, 0x0B, 0x7F, 0x01, 0x41, 0x80, 0x20, 0x0B}
	out := append([]byte(nil), bin[:8]...)
	inserted := false
	for _, s := range secs {
		if !haveGlobal && !inserted && s.id != secCustom && sectionRank(s.id) > sectionRank(secGlobal) {
			body := appendU32(nil, 2)
			out = appendSection(out, secGlobal, append(body, newGlobal...))
			inserted = true
		}
		switch s.id {
		case secGlobal:
			cnt, off, _ := readU32(s.body, 0)
			body := appendU32(nil, cnt+2)
			body = append(body, s.body[off:]...)
			out = appendSection(out, secGlobal, append(body, newGlobal...))
		case secExport:
			cnt, off, _ := readU32(s.body, 0)
			body := appendU32(nil, cnt+1)
			body = append(body, s.body[off:]...)
			body = appendU32(body, uint32(len(stopExport)))
			body = append(body, stopExport...)
			body = append(body, 3) // global
			body = appendU32(body, stopIdx)
			out = appendSection(out, secExport, body)
		case secCode:
			body, err := instrumentCode(s.body, check)
			if err != nil {
				return nil, err
			}
			out = appendSection(out, secCode, body)
		default:
			out = appendSection(out, s.id, s.body)
		}
	}
	return out, nil
}

func countImportedGlobals(b []byte) (uint32, error) {
	cnt, off, err := readU32(b, 0)
	if err != nil {
		return 0, err
	}
	var globals uint32
	for j := uint32(0); j < cnt; j++ {
		if _, off, err = readName(b, off); err != nil {
			return 0, err
		}
		if _, off, err = readName(b, off); err != nil {
			return 0, err
		}
		if off >= len(b) {
			return 0, errors.New("wasm: truncated import")
		}
		kind := b[off]
		off++
		switch kind {
		case 0:
			_, off, err = readU32(b, off)
		case 1:
			_, _, _, off, err = readLimits(b, off+1)
		case 2:
			_, _, _, off, err = readLimits(b, off)
		case 3:
			off += 2
			globals++
		default:
			return 0, fmt.Errorf("wasm: unknown import kind %d", kind)
		}
		if err != nil {
			return 0, err
		}
	}
	return globals, nil
}

func instrumentCode(b []byte, check []byte) ([]byte, error) {
	cnt, off, err := readU32(b, 0)
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(b)+len(b)/8), cnt)
	var fn []byte
	for i := uint32(0); i < cnt; i++ {
		size, o, err := readU32(b, off)
		if err != nil {
			return nil, err
		}
		if o+int(size) > len(b) {
			return nil, errors.New("wasm: truncated function body")
		}
		fn, err = instrumentBody(fn[:0], b[o:o+int(size)], check)
		if err != nil {
			return nil, fmt.Errorf("%w: function %d: %v", errUninstrumentable, i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
		off = o + int(size)
	}
	return out, nil
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

// instrumentBody copies one function body, inserting check after every
// loop's block type.
func instrumentBody(out, b []byte, check []byte) ([]byte, error) {
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
	start := off
	for off < len(b) {
		op := b[off]
		off++
		switch {
		case op == 0x03: // loop
			if off, err = skipBlockType(b, off); err != nil {
				return nil, err
			}
			out = append(out, b[start:off]...)
			out = append(out, check...)
			start = off
			continue
		case op == 0x02 || op == 0x04: // block, if
			off, err = skipBlockType(b, off)
		case op <= 0x01, op == 0x05, op == 0x0B, op == 0x0F, op == 0x1A, op == 0x1B, op == 0xD1:
		case op == 0x0C, op == 0x0D, op == 0x10, op == 0x12, op == 0xD2,
			op >= 0x20 && op <= 0x26:
			off, err = skipLEB(b, off)
		case op == 0x11, op == 0x13: // call_indirect: type, table
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
			var sub uint32
			if sub, off, err = readU32(b, off); err != nil {
				break
			}
			switch {
			case sub <= 7:
			case sub == 8: // memory.init data mem
				off, err = skipLEBs(b, off, 2)
			case sub == 9, sub == 13, sub == 15, sub == 16, sub == 17:
				off, err = skipLEB(b, off)
			case sub == 10, sub == 12, sub == 14:
				off, err = skipLEBs(b, off, 2)
			case sub == 11:
				off, err = skipLEB(b, off)
			default:
				err = fmt.Errorf("unknown 0xFC opcode %d", sub)
			}
		default:
			err = fmt.Errorf("unsupported opcode 0x%02x", op)
		}
		if err != nil {
			return nil, err
		}
	}
	if off != len(b) {
		return nil, errors.New("body overrun")
	}
	return append(out, b[start:]...), nil
}
