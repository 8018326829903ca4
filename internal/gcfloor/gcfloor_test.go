package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

var sink []byte

// cycles returns the number of completed GC cycles.
func cycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// churn allocates n MiB of garbage in 64 KiB pieces and returns how many
// collections that took.
func churn(n int) uint64 {
	c0 := cycles()
	for i := 0; i < n*16; i++ {
		sink = make([]byte, 64<<10)
	}
	sink = nil
	return cycles() - c0
}

// TestFloorMakesCollectionsRarer: with a 64 MiB floor, 512 MiB of garbage
// over a small live heap costs a handful of collections; at GOGC's pace
// (100% of a few MiB) it costs dozens. The percent set follows the live
// heap, and Set(0) restores GOGC's.
func TestFloorMakesCollectionsRarer(t *testing.T) {
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if !Set(0) {
		t.Fatal("Set(0) refused")
	}
	runtime.GC()
	paced := churn(512)
	if !Set(64 << 20) {
		t.Fatal("Set refused without GOGC=off")
	}
	runtime.GC() // the finalizer adjusts after a cycle
	runtime.GC()
	p := Percent()
	if p <= 100 || p > 64*100/4 {
		t.Fatalf("percent %d with a 64 MiB floor over a small heap, want >100 and <= 1600 (the runtime's 4 MB minimum heap scales with it)", p)
	}
	if got := debug.SetGCPercent(p); got != p {
		t.Fatalf("runtime's percent %d, gcfloor says %d", got, p)
	}
	// The runtime's goal is the live heap plus the floor (within what the
	// percent's rounding and the eighth's hysteresis allow), not 100× it.
	g := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(g)
	if head := int64(g[0].Value.Uint64()) - int64(g[1].Value.Uint64()); head < 56<<20 || head > 80<<20 {
		t.Fatalf("goal %d B over a live heap of %d B: headroom %d MiB, want ~64", g[0].Value.Uint64(), g[1].Value.Uint64(), head>>20)
	}
	floored := churn(512)
	if err := Set(0); !err {
		t.Fatal("Set(0) refused")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("Set(0) left the percent at %d, want GOGC's 100", got)
	}
	t.Logf("512 MiB of garbage: %d collections at GOGC's pace, %d with the floor (percent %d)", paced, floored, p)
	if floored == 0 || floored > 16 || paced < 2*floored {
		t.Fatalf("%d collections with a 64 MiB floor, %d without: want at most 16 and at most half", floored, paced)
	}
}

// TestGOGCOffLeftAlone: GOGC=off is the operator's; Set does nothing.
func TestGOGCOffLeftAlone(t *testing.T) {
	t.Setenv("GOGC", "off")
	if Set(64 << 20) {
		t.Fatal("Set took effect under GOGC=off")
	}
}
