//go:build !unix

package edge

import "time"

// processCPU is not measured here: the benchmark reports no CPU figures.
func processCPU() time.Duration { return 0 }
