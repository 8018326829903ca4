package wasm

import (
	"errors"
	"fmt"
)

// This file rewrites an OPA-compiled policy.wasm so that it defines its own
// linear memory instead of importing it.
//
// OPA's module imports "env.memory" (and re-exports it as "memory"). wazero
// host modules can export functions but not a memory, and imports resolve by
// module name within a runtime, so hosting many instances of the policy in
// ONE runtime would need one uniquely named "env" per instance. Instead we
// turn the memory import into a memory definition (same minimum, maximum
// capped by Options.MaxMemoryPages). Removing a memory import does not shift
// function, table or global indices, and memory 0 stays memory 0, so the rest
// of the binary is copied byte for byte. The remaining "env" imports are
// functions only (opa_abort, opa_println, opa_builtin0..4), which a wazero
// host module named "env" provides to every instance; the host functions get
// the calling instance as their api.Module argument.

const (
	secCustom = 0
	secImport = 2
	secMemory = 5
	secExport = 7
)

// sectionRank orders non-custom sections as the spec requires.
func sectionRank(id byte) int {
	switch id {
	case 1, 2, 3, 4, 5:
		return int(id) * 10
	case 13: // tag (exception handling) sits between memory and global
		return 55
	case 6, 7, 8, 9:
		return int(id) * 10
	case 12: // data count sits between element and code
		return 95
	case 10, 11:
		return int(id)*10 + 5
	}
	return 1000
}

type section struct {
	id   byte
	body []byte
}

func readU32(b []byte, off int) (uint32, int, error) {
	var v uint32
	var shift uint
	for i := 0; i < 5; i++ {
		if off >= len(b) {
			return 0, off, errors.New("wasm: truncated LEB128")
		}
		c := b[off]
		off++
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, off, nil
		}
		shift += 7
	}
	return 0, off, errors.New("wasm: LEB128 too long")
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func parseSections(bin []byte) ([]section, error) {
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return nil, errors.New("wasm: not a wasm binary")
	}
	if bin[4] != 1 || bin[5] != 0 || bin[6] != 0 || bin[7] != 0 {
		return nil, errors.New("wasm: unsupported binary version")
	}
	var out []section
	off := 8
	for off < len(bin) {
		id := bin[off]
		n, o, err := readU32(bin, off+1)
		if err != nil {
			return nil, err
		}
		if o+int(n) > len(bin) {
			return nil, fmt.Errorf("wasm: section %d overruns the binary", id)
		}
		out = append(out, section{id: id, body: bin[o : o+int(n)]})
		off = o + int(n)
	}
	return out, nil
}

// skipName skips a length-prefixed byte string and returns it.
func readName(b []byte, off int) (string, int, error) {
	n, o, err := readU32(b, off)
	if err != nil {
		return "", off, err
	}
	if o+int(n) > len(b) {
		return "", off, errors.New("wasm: truncated name")
	}
	return string(b[o : o+int(n)]), o + int(n), nil
}

// readLimits reads a limits structure (flag, min[, max]).
func readLimits(b []byte, off int) (min uint32, max uint32, hasMax bool, next int, err error) {
	if off >= len(b) {
		return 0, 0, false, off, errors.New("wasm: truncated limits")
	}
	flag := b[off]
	off++
	if flag > 1 {
		return 0, 0, false, off, fmt.Errorf("wasm: unsupported limits flag 0x%x (shared or 64-bit memory)", flag)
	}
	if min, off, err = readU32(b, off); err != nil {
		return
	}
	if flag == 1 {
		hasMax = true
		if max, off, err = readU32(b, off); err != nil {
			return
		}
	}
	return min, max, hasMax, off, nil
}

// importedFunc is a function import of a module.
type importedFunc struct{ module, name string }

// ownMemory rewrites bin so that an imported memory becomes a defined one
// with the import's minimum and a maximum of maxPages (or the import's own
// maximum when lower). It returns the rewritten binary, the memory's minimum
// pages and the module's function imports.
//
// # Errors
// Malformed binaries, a binary that imports no memory, or a minimum above
// maxPages.
func ownMemory(bin []byte, maxPages uint32) ([]byte, uint32, []importedFunc, error) {
	secs, err := parseSections(bin)
	if err != nil {
		return nil, 0, nil, err
	}
	var (
		minPages uint32
		found    bool
		funcs    []importedFunc
	)
	for i, s := range secs {
		switch s.id {
		case secMemory:
			return nil, 0, nil, errors.New("wasm: module already defines a memory")
		case secImport:
			b := s.body
			cnt, off, err := readU32(b, 0)
			if err != nil {
				return nil, 0, nil, err
			}
			nb := appendU32(nil, 0) // placeholder count, rebuilt below
			kept := uint32(0)
			var body []byte
			for j := uint32(0); j < cnt; j++ {
				start := off
				var mod, name string
				if mod, off, err = readName(b, off); err != nil {
					return nil, 0, nil, err
				}
				if name, off, err = readName(b, off); err != nil {
					return nil, 0, nil, err
				}
				if off >= len(b) {
					return nil, 0, nil, errors.New("wasm: truncated import")
				}
				kind := b[off]
				off++
				switch kind {
				case 0: // func
					if _, off, err = readU32(b, off); err != nil {
						return nil, 0, nil, err
					}
					funcs = append(funcs, importedFunc{mod, name})
				case 1: // table: reftype + limits
					if _, _, _, off, err = readLimits(b, off+1); err != nil {
						return nil, 0, nil, err
					}
				case 2: // memory
					var mx uint32
					var hasMax bool
					if minPages, mx, hasMax, off, err = readLimits(b, off); err != nil {
						return nil, 0, nil, err
					}
					if hasMax && mx < maxPages {
						maxPages = mx
					}
					found = true
					continue // dropped
				case 3: // global: valtype + mut
					off += 2
				default:
					return nil, 0, nil, fmt.Errorf("wasm: unknown import kind %d", kind)
				}
				body = append(body, b[start:off]...)
				kept++
			}
			nb = appendU32(nb[:0], kept)
			secs[i].body = append(nb, body...)
		}
	}
	if !found {
		return nil, 0, nil, errors.New("wasm: module imports no memory")
	}
	if minPages > maxPages {
		return nil, 0, nil, fmt.Errorf("wasm: module needs %d memory pages, above the cap of %d", minPages, maxPages)
	}

	mem := appendU32(nil, 1)
	mem = append(mem, 1)
	mem = appendU32(mem, minPages)
	mem = appendU32(mem, maxPages)

	out := append([]byte(nil), bin[:8]...)
	inserted := false
	for _, s := range secs {
		if !inserted && s.id != secCustom && sectionRank(s.id) > sectionRank(secMemory) {
			out = appendSection(out, secMemory, mem)
			inserted = true
		}
		if s.id == secExport && !hasExport(s.body, "memory", 2) {
			return nil, 0, nil, errors.New("wasm: module does not export its memory")
		}
		out = appendSection(out, s.id, s.body)
	}
	if !inserted {
		out = appendSection(out, secMemory, mem)
	}
	return out, minPages, funcs, nil
}

func appendSection(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = appendU32(out, uint32(len(body)))
	return append(out, body...)
}

// hasExport reports whether the export section b exports want as kind
// (0 function, 1 table, 2 memory, 3 global; anyKind for any).
func hasExport(b []byte, want string, kind int) bool {
	cnt, off, err := readU32(b, 0)
	if err != nil {
		return false
	}
	for j := uint32(0); j < cnt; j++ {
		var name string
		if name, off, err = readName(b, off); err != nil {
			return false
		}
		if off >= len(b) {
			return false
		}
		k := int(b[off])
		if _, off, err = readU32(b, off+1); err != nil {
			return false
		}
		if name == want && (kind == anyKind || k == kind) {
			return true
		}
	}
	return false
}
