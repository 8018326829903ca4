package state

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// fillAll sets every field reachable from v (a settable value) to a
// non-zero value, lists and maps to one element.
func fillAll(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(1700000000, 0).UTC()))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			fillAll(v.Field(i))
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillAll(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("v"))
	case reflect.String:
		v.SetString("s")
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	case reflect.Float64:
		v.SetFloat(1)
	case reflect.Bool:
		v.SetBool(true)
	}
}

// leaves calls f with the JSON path (as VolatileFields names them) and a
// mutator of every leaf field of a NodeState and of every list's and
// map's presence and length.
func leaves(t reflect.Type, path string, get func(*fleet.NodeState) reflect.Value, f func(path string, mut func(*fleet.NodeState))) {
	switch {
	case t == reflect.TypeOf(time.Time{}):
		f(path, func(st *fleet.NodeState) { get(st).Set(reflect.ValueOf(time.Unix(1700000001, 0).UTC())) })
	case t.Kind() == reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			fl := t.Field(i)
			name, _, _ := strings.Cut(fl.Tag.Get("json"), ",")
			p := name
			if path != "" {
				p = path + "." + name
			}
			leaves(fl.Type, p, func(st *fleet.NodeState) reflect.Value { return get(st).Field(i) }, f)
		}
	case t.Kind() == reflect.Slice:
		f(path+" (nil)", func(st *fleet.NodeState) { get(st).Set(reflect.Zero(t)) })
		f(path+" (empty)", func(st *fleet.NodeState) { get(st).Set(reflect.MakeSlice(t, 0, 0)) })
		f(path+" (longer)", func(st *fleet.NodeState) { v := get(st); v.Set(reflect.Append(v, v.Index(0))) })
		leaves(t.Elem(), path+"[]", func(st *fleet.NodeState) reflect.Value { return get(st).Index(0) }, f)
	case t.Kind() == reflect.Map:
		f(path+" (nil)", func(st *fleet.NodeState) { get(st).Set(reflect.Zero(t)) })
		f(path+" (value)", func(st *fleet.NodeState) { get(st).SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("w")) })
		f(path+" (key)", func(st *fleet.NodeState) { get(st).SetMapIndex(reflect.ValueOf("k2"), reflect.ValueOf("v")) })
	default:
		f(path, func(st *fleet.NodeState) {
			v := get(st)
			switch v.Kind() {
			case reflect.String:
				v.SetString(v.String() + "x")
			case reflect.Int, reflect.Int64:
				v.SetInt(v.Int() + 1)
			case reflect.Float64:
				v.SetFloat(v.Float() + 1)
			case reflect.Bool:
				v.SetBool(!v.Bool())
			default:
				panic("unhandled kind " + v.Kind().String() + " at " + path)
			}
		})
	}
}

// TestSameShapeCoversEveryField: a whole state that differs from the held
// one in any field but the volatile ones (VolatileFields) is not taken
// for a figures-only change, whatever field it is (a field added to
// NodeState and not compared fails here), and one that differs in a
// volatile field only is.
func TestSameShapeCoversEveryField(t *testing.T) {
	var base fleet.NodeState
	fillAll(reflect.ValueOf(&base).Elem())
	fresh := func() *fleet.NodeState {
		var st fleet.NodeState
		fillAll(reflect.ValueOf(&st).Elem())
		return &st
	}
	if !sameShape(&base, fresh()) {
		t.Fatal("two equal states differ")
	}
	n := 0
	leaves(reflect.TypeOf(base), "", func(st *fleet.NodeState) reflect.Value { return reflect.ValueOf(st).Elem() }, func(path string, mut func(*fleet.NodeState)) {
		n++
		st := fresh()
		mut(st)
		if reflect.DeepEqual(st, &base) {
			t.Fatalf("%s: the mutation changed nothing", path)
		}
		field, _, _ := strings.Cut(path, " ")
		volatile := slices.Contains(VolatileFields, field)
		if got := sameShape(&base, st); got != volatile {
			t.Errorf("%s changed: sameShape = %v, want %v", path, got, volatile)
		}
	})
	if n < 60 {
		t.Fatalf("only %d mutations: the walk missed fields", n)
	}
}
