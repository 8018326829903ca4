// Package gguf writes GGUF model files, and tiny llama models in them, for
// tests that need a real inference server (Ollama, llama.cpp) to load a
// model it has never seen, in milliseconds, without downloading one.
//
// Write emits any set of metadata and tensors in GGUF version 3, the format
// of ggml-org/llama.cpp's gguf-py and ggml/src/gguf.cpp: little-endian
// header, key/value metadata, tensor infos, then tensor data at offsets
// aligned to general.alignment (32). TinyLlama builds the metadata and
// tensors of a two-layer llama model on top of it (see tiny.go).
//
// Everything here is the standard library only; nothing is global or
// shared, so every function is safe for concurrent use.
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Magic is the first four bytes of a GGUF file; Version is the format
// version written.
const (
	Magic     = "GGUF"
	Version   = 3
	Alignment = 32
)

// ValueType is a metadata value type (gguf.cpp: enum gguf_type).
type ValueType uint32

// Metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

// TensorType is a tensor element type (ggml.h: enum ggml_type). Only the
// two unquantized float types are written here.
type TensorType uint32

// Tensor types.
const (
	F32 TensorType = 0
	F16 TensorType = 1
)

// Size is the number of bytes one element takes.
func (t TensorType) Size() int {
	if t == F16 {
		return 2
	}
	return 4
}

// KV is one metadata entry. Value is one of uint8, int8, uint16, int16,
// uint32, int32, uint64, int64, float32, float64, bool, string, or a slice
// of one of those (an array).
type KV struct {
	Key   string
	Value any
}

// Tensor is one tensor: Shape lists dimensions innermost first (ggml's
// ne[0], ne[1], ...), Data holds the elements in Type's little-endian form.
type Tensor struct {
	Name  string
	Shape []uint64
	Type  TensorType
	Data  []byte
}

// Elements is the product of the dimensions.
func (t Tensor) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// ErrInvalid is returned (wrapped) for a tensor or value Write cannot
// encode.
var ErrInvalid = errors.New("gguf: invalid input")

// Write writes a GGUF v3 file with kvs in order and tensors in order, their
// data aligned to Alignment.
//
// # Errors
//
// ErrInvalid (wrapped) when a value has an unsupported type, a tensor has no
// dimensions, or its Data length does not match its shape; otherwise the
// first error from w.
func Write(w io.Writer, kvs []KV, tensors []Tensor) error {
	for _, t := range tensors {
		if len(t.Shape) == 0 || len(t.Shape) > 4 {
			return fmt.Errorf("%w: tensor %q has %d dimensions", ErrInvalid, t.Name, len(t.Shape))
		}
		if want := t.Elements() * uint64(t.Type.Size()); uint64(len(t.Data)) != want {
			return fmt.Errorf("%w: tensor %q has %d bytes of data, its shape needs %d", ErrInvalid, t.Name, len(t.Data), want)
		}
	}
	e := &encoder{w: bufio.NewWriter(w)}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		if err := e.value(kv.Value, true); err != nil {
			return fmt.Errorf("key %q: %w", kv.Key, err)
		}
	}
	var off uint64
	for _, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(off)
		off = align(off + uint64(len(t.Data)))
	}
	e.pad()
	for _, t := range tensors {
		e.raw(t.Data)
		e.pad()
	}
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}

func align(n uint64) uint64 { return (n + Alignment - 1) / Alignment * Alignment }

type encoder struct {
	w   *bufio.Writer
	n   uint64 // bytes written so far
	err error
	buf [8]byte
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
	e.n += uint64(len(b))
}

func (e *encoder) pad() {
	var zero [Alignment]byte
	e.raw(zero[:align(e.n)-e.n])
}

func (e *encoder) u8(v uint8) { e.raw([]byte{v}) }

func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], v)
	e.raw(e.buf[:2])
}

func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.raw(e.buf[:4])
}

func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.raw(e.buf[:8])
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}

// value writes v, preceded by its type when typed (array elements are not).
func (e *encoder) value(v any, typed bool) error {
	t, scalar, err := typeOf(v)
	if err != nil {
		return err
	}
	if typed {
		e.u32(uint32(t))
	}
	if scalar {
		e.scalar(v)
		return nil
	}
	return e.array(v)
}

func (e *encoder) scalar(v any) {
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float32:
		e.u32(math.Float32bits(x))
	case float64:
		e.u64(math.Float64bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	}
}

func (e *encoder) array(v any) error {
	switch x := v.(type) {
	case []string:
		arrayOf(e, TypeString, x)
	case []float32:
		arrayOf(e, TypeFloat32, x)
	case []int32:
		arrayOf(e, TypeInt32, x)
	case []uint32:
		arrayOf(e, TypeUint32, x)
	case []bool:
		arrayOf(e, TypeBool, x)
	default:
		return fmt.Errorf("%w: array of %T", ErrInvalid, v)
	}
	return nil
}

func arrayOf[T any](e *encoder, t ValueType, xs []T) {
	e.u32(uint32(t))
	e.u64(uint64(len(xs)))
	for _, x := range xs {
		e.scalar(x)
	}
}

// typeOf maps a Go value to its GGUF type; scalar is false for arrays.
func typeOf(v any) (t ValueType, scalar bool, err error) {
	switch v.(type) {
	case uint8:
		return TypeUint8, true, nil
	case int8:
		return TypeInt8, true, nil
	case uint16:
		return TypeUint16, true, nil
	case int16:
		return TypeInt16, true, nil
	case uint32:
		return TypeUint32, true, nil
	case int32:
		return TypeInt32, true, nil
	case uint64:
		return TypeUint64, true, nil
	case int64:
		return TypeInt64, true, nil
	case float32:
		return TypeFloat32, true, nil
	case float64:
		return TypeFloat64, true, nil
	case bool:
		return TypeBool, true, nil
	case string:
		return TypeString, true, nil
	case []string, []float32, []int32, []uint32, []bool:
		return TypeArray, false, nil
	}
	return 0, false, fmt.Errorf("%w: value of type %T", ErrInvalid, v)
}

// Float16 converts f to IEEE 754 binary16 bits, rounding to nearest even;
// values beyond the range become ±Inf, NaN stays NaN.
func Float16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00
	case exp >= 0x1f: // overflow, or Inf
		return sign | 0x7c00
	case exp <= 0: // subnormal half, or zero
		if exp < -10 {
			return sign
		}
		mant |= 0x800000 // implicit leading one
		shift := uint32(14 - exp)
		half := uint16(mant >> shift)
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | half
	}
	half := uint16(exp)<<10 | uint16(mant>>13)
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // a carry into the exponent is still correct, up to Inf
	}
	return sign | half
}
