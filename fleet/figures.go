package fleet

import (
	"sync/atomic"
	"time"
)

// Figures are the volatile figures of one node as of one of its reports:
// what a metrics-only event carries (state/metricsevent.go) and the
// deadline it renews. A Figures value is immutable once stored in a
// NodeCell; a new report stores a new value.
type Figures struct {
	// Deadline is when the node's heartbeat key expires.
	Deadline time.Time
	// UpdatedAt is the host's UpdatedAt of the report.
	UpdatedAt time.Time
	// GPUs are the host's GPUs (whole values: only the used VRAM and the
	// utilisation move between reports of one shape).
	GPUs []GPU
	// Metrics holds each service's metrics, indexed as the node's state
	// lists its services (ServiceEntry.CellIndex).
	Metrics []Metrics
}

// NodeCell holds a node's current Figures. The entries of one node (its
// HostEntry and ServiceEntries) share one cell, and so do the successive
// snapshots that share those entries: a metrics-only event stores new
// Figures in the cell (O(that node)) instead of building new entries and
// copying the snapshot's containers to point at them.
//
// # Consistency
//
// Each load returns one report's figures, never a mix: a service's used
// and total VRAM, or a host's GPUs, always come from one report. Two loads
// (Metrics then GPUs, or one service then another of the same node) may
// return two reports; a reader that needs one report's figures for a whole
// node calls Figures once. Figures are not tied to the snapshot a reader
// holds: a request that loaded a snapshot reads the latest figures of its
// entries, as it would after loading the next snapshot. What a snapshot
// fixes is the fleet's structure (which hosts, services and assets exist,
// their health, cooldowns and probes), never the load figures, which are
// up to a heartbeat old whatever is done.
type NodeCell struct{ p atomic.Pointer[Figures] }

// NewNodeCell returns a cell holding f.
func NewNodeCell(f *Figures) *NodeCell {
	c := &NodeCell{}
	c.p.Store(f)
	return c
}

// Load returns the cell's current figures (nil for a nil cell).
func (c *NodeCell) Load() *Figures {
	if c == nil {
		return nil
	}
	return c.p.Load()
}

// Store replaces the cell's figures. Only the watcher that built the cell
// calls it; f must not be modified afterwards.
func (c *NodeCell) Store(f *Figures) { c.p.Store(f) }

// Figures returns the current figures of the service's node, nil when the
// entry has no cell (an entry built by hand, as tests do: its fields are
// then its figures).
func (s *ServiceEntry) Figures() *Figures { return s.Cell.Load() }

// Metrics returns the service's current metrics (the embedded
// Service.Metrics are those of the report the entry was built from).
// The result is read-only.
func (s *ServiceEntry) Metrics() *Metrics {
	if f := s.Cell.Load(); f != nil && s.CellIndex < len(f.Metrics) {
		return &f.Metrics[s.CellIndex]
	}
	return &s.Service.Metrics
}

// Expiry returns when the service's node heartbeat key expires, as its
// latest report renewed it. Past it the entry is not routable even if no
// resync has dropped it yet.
func (s *ServiceEntry) Expiry() time.Time {
	if f := s.Cell.Load(); f != nil {
		return f.Deadline
	}
	return s.Deadline
}

// Expiry returns when the host's heartbeat key expires, as its latest
// report renewed it.
func (h *HostEntry) Expiry() time.Time {
	if f := h.Cell.Load(); f != nil {
		return f.Deadline
	}
	return h.Deadline
}

// UpdatedAt returns the host's UpdatedAt of its latest report.
func (h *HostEntry) UpdatedAt() time.Time {
	if f := h.Cell.Load(); f != nil {
		return f.UpdatedAt
	}
	return h.Host.UpdatedAt
}

// GPUs returns the host's GPUs as of its latest report (read-only).
func (h *HostEntry) GPUs() []GPU {
	if f := h.Cell.Load(); f != nil {
		return f.GPUs
	}
	return h.Host.GPUs
}

// Current returns the host with its latest figures (a copy, for reports
// and JSON; the GPU slice is shared and read-only).
func (h *HostEntry) Current() Host {
	c := h.Host
	if f := h.Cell.Load(); f != nil {
		c.UpdatedAt, c.GPUs = f.UpdatedAt, f.GPUs
	}
	return c
}

// Current returns the service with its latest metrics (a copy, for reports
// and JSON).
func (s *ServiceEntry) Current() Service {
	c := *s.Service
	c.Metrics = *s.Metrics()
	return c
}
