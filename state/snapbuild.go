package state

import (
	"encoding/hex"
	"hash/maphash"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/geniehive/geniehive/fleet"
)

// Snapshots cost O(change). A Watcher keeps, per node, the entries it put
// in the last snapshot (a nodeView). A node event rebuilds that node's view
// only; the next snapshot shares every other node's HostEntry and
// ServiceEntry pointers with the previous one and patches the indexes that
// point at the changed node (ByID, AssetServices of its assets, the sorted
// Services list) instead of rebuilding them: the node's run of ids is
// found by binary search and spliced. The containers are still copied
// (pointers only: 0.05-0.4 ms at 5,000 services and 0.4-1.9 ms at 50,000 on
// a busy 2-core machine, against 5-10 ms and 90-320 ms for the full
// rebuild: BenchmarkApplyNodeEvent), the entries are not rebuilt; many
// events arriving together are applied as one batch. A full resync
// reuses a node's view when its stored bytes, deadline and shared health
// figures are unchanged, and the previous containers too when no view
// changed.
//
// DataVersion changes only when what the policy data document is built from
// changes (policies.BuildData: the catalog, and each service's id, kind and
// assets' names, families, tags, thinking flags and capabilities), so the
// edge does not rebuild that document on heartbeats that only move metrics.

// nodeView is what the current snapshot holds of one node.
type nodeView struct {
	rec   NodeRecord
	host  *fleet.HostEntry
	svcs  []*fleet.ServiceEntry // this host's services, sorted by ID
	shape uint64                // hash of what policy data reads (see above)
	cell  *fleet.NodeCell       // shared by host and svcs: the node's figures
}

// Metrics-only events write O(that node). The node's volatile figures
// (fleet.Figures: each service's metrics, the host's UpdatedAt and GPUs,
// the deadline) live in one cell (fleet.NodeCell) its entries share. A
// metrics event whose shape and services are the view's (applyMetricsEvent
// checks both) stores a new Figures in the view's cell and publishes a
// snapshot that shares every container and entry with the previous one
// (publishFiguresLocked): no entry is rebuilt, no container copied. Every
// other change builds a new view, whose entries get a new cell, as before.
// Readers read the figures through ServiceEntry.Metrics/Expiry and
// HostEntry.UpdatedAt/GPUs/Expiry; what consistency that gives them is in
// fleet/figures.go.

// figuresOf returns the figures of a node's record: a metrics event's
// (NodeRecord.fig, shared: its arrays are immutable) or its state's.
func figuresOf(n *NodeRecord) *fleet.Figures {
	if n.fig != nil {
		if n.fig.Deadline.Equal(n.Deadline) {
			return n.fig // set by storeFigures
		}
		f := *n.fig
		f.Deadline = n.Deadline
		return &f
	}
	f := &fleet.Figures{Deadline: n.Deadline, UpdatedAt: n.State.Host.UpdatedAt, GPUs: n.State.Host.GPUs}
	f.Metrics = make([]fleet.Metrics, len(n.State.Services))
	for i := range n.State.Services {
		f.Metrics[i] = n.State.Services[i].Metrics
	}
	return f
}

// storeFigures holds rec, a record of v's node that moves figures only
// (its state is v's, or shares its shape: sameFigureShape), in the model
// and the view, and stores its figures in the view's cell.
func storeFigures(m *model, v *nodeView, id string, rec NodeRecord) {
	holdDeadline(&v.rec, &rec)
	if rec.fig != nil {
		// Not yet stored anywhere: the cell shares it (figuresOf).
		rec.fig.Deadline = rec.Deadline
	}
	m.nodes[id] = rec
	v.rec = rec
	v.cell.Store(figuresOf(&rec))
}

// sameFigureShape reports whether a metrics-patched record rec may be
// stored in v's cell: the same shape, services and GPUs as the record v
// was built from, so only figures differ.
func sameFigureShape(v *nodeView, rec *NodeRecord) bool {
	a, b := &v.rec.State, &rec.State
	if a.Shape == "" || a.Shape != b.Shape || len(a.Services) != len(b.Services) || len(a.Host.GPUs) != len(b.Host.GPUs) {
		return false
	}
	for i := range a.Services {
		if a.Services[i].ID != b.Services[i].ID {
			return false
		}
	}
	return true
}

// sameShape reports whether two states of a node differ in their
// volatile fields alone (VolatileFields: the services' Metrics, the
// host's UpdatedAt, each GPU's used VRAM and utilisation), compared field
// by field, not by the Shape the node claims: a whole state read for an
// "up" event that passes it only moves figures, so it goes through the
// node's cell as a metrics event does (sameShapeRecord) and builds no
// view. Nil and empty lists differ (they encode differently).
func sameShape(a, b *fleet.NodeState) bool {
	if a.TTLSeconds != b.TTLSeconds || a.Shape != b.Shape || len(a.Services) != len(b.Services) {
		return false
	}
	ha, hb := &a.Host, &b.Host
	if ha.ID != hb.ID || ha.Agent != hb.Agent || !ha.StartedAt.Equal(hb.StartedAt) || (ha.Labels == nil) != (hb.Labels == nil) ||
		!maps.Equal(ha.Labels, hb.Labels) || (ha.GPUs == nil) != (hb.GPUs == nil) || len(ha.GPUs) != len(hb.GPUs) {
		return false
	}
	for i := range ha.GPUs {
		g, h := ha.GPUs[i], hb.GPUs[i]
		g.VRAMUsedBytes, g.UtilPercent = h.VRAMUsedBytes, h.UtilPercent
		if g != h {
			return false
		}
	}
	for i := range a.Services {
		s, t := &a.Services[i], &b.Services[i]
		if s.ID != t.ID || s.HostID != t.HostID || s.Name != t.Name || s.Kind != t.Kind || s.Protocol != t.Protocol || s.Endpoint != t.Endpoint ||
			s.MaxConcurrency != t.MaxConcurrency || s.Healthy != t.Healthy || s.HealthError != t.HealthError || s.Swap != t.Swap ||
			!sameStrings(s.Labels, t.Labels) || !sameStrings(s.APIs, t.APIs) || (s.Assets == nil) != (t.Assets == nil) || len(s.Assets) != len(t.Assets) {
			return false
		}
		for j := range s.Assets {
			x, y := &s.Assets[j], &t.Assets[j]
			if x.Name != y.Name || x.Family != y.Family || x.ParameterSize != y.ParameterSize || x.Quantization != y.Quantization ||
				x.ContextLength != y.ContextLength || x.Loaded != y.Loaded || x.Loading != y.Loading || x.SizeVRAM != y.SizeVRAM ||
				x.Size != y.Size || x.Thinking != y.Thinking || !sameStrings(x.Tags, y.Tags) || !sameStrings(x.Capabilities, y.Capabilities) {
				return false
			}
		}
	}
	return true
}

func sameStrings(a, b []string) bool { return (a == nil) == (b == nil) && slices.Equal(a, b) }

// sameShapeRecord returns, for rec (a node's whole state, just read) of
// the same shape as held (sameShape), the record to hold instead: held's
// state (whose services the node's entries embed) with rec's figures,
// deadline and stored bytes' sum, so the state just decoded is not
// retained beside the one the entries hold.
func sameShapeRecord(held, rec *NodeRecord) NodeRecord {
	st := &rec.State
	f := &fleet.Figures{UpdatedAt: st.Host.UpdatedAt, GPUs: st.Host.GPUs, Metrics: make([]fleet.Metrics, len(st.Services))}
	for i := range st.Services {
		f.Metrics[i] = st.Services[i].Metrics
	}
	return NodeRecord{State: held.State, Deadline: rec.Deadline, sum: rec.sum, nodeSum: rec.nodeSum, fig: f}
}

// shapeSeed is one seed for the process: shapes are only compared within it.
var shapeSeed = maphash.MakeSeed()

// nodeShape hashes what policies.BuildData reads of a node's services.
func nodeShape(id string, st *fleet.NodeState) uint64 {
	var h maphash.Hash
	h.SetSeed(shapeSeed)
	for i := range st.Services {
		s := &st.Services[i]
		if s.HostID != id {
			continue
		}
		h.WriteString(s.ID)
		h.WriteByte(0)
		h.WriteString(string(s.Kind))
		h.WriteByte(0)
		for j := range s.Assets {
			a := &s.Assets[j]
			h.WriteString(a.Name)
			h.WriteByte(1)
			h.WriteString(a.Family)
			h.WriteByte(1)
			if a.Thinking {
				h.WriteByte('t')
			}
			for _, t := range a.Tags {
				h.WriteString(t)
				h.WriteByte(2)
			}
			h.WriteByte(3)
			for _, c := range a.Capabilities {
				h.WriteString(c)
				h.WriteByte(4)
			}
			h.WriteByte(5)
		}
		h.WriteByte(6)
	}
	return h.Sum64()
}

// rawSeed keys rawSum with a secret of this process: a node cannot craft
// a state whose sum collides with another of its states'.
var rawSeed = maphash.MakeSeed()

// rawSum is a node state's stored bytes' keyed 64-bit hash (never 0).
func rawSum(raw string) uint64 { return maphash.String(rawSeed, raw) | 1 }

// buildView builds the entries of one node from its record and the shared
// health figures of the model.
func buildView(id string, n NodeRecord, m *model) *nodeView {
	cell := fleet.NewNodeCell(figuresOf(&n))
	// The view, its host entry and its service entries are replaced
	// together: two allocations (the entries in one array, the list of
	// pointers to them) instead of one per entry.
	vh := &struct {
		v nodeView
		h fleet.HostEntry
	}{v: nodeView{rec: n, shape: nodeShape(id, &n.State), cell: cell}, h: fleet.HostEntry{Host: n.State.Host, Deadline: n.Deadline, Cell: cell}}
	v := &vh.v
	v.host = &vh.h
	ents := make([]fleet.ServiceEntry, 0, len(n.State.Services))
	v.svcs = make([]*fleet.ServiceEntry, 0, len(n.State.Services))
	for i := range n.State.Services {
		// The entry points into the record's services (immutable, shared
		// by the records that keep this state: storeFigures).
		svc := &n.State.Services[i]
		if svc.HostID != id {
			continue
		}
		ents = append(ents, fleet.ServiceEntry{Service: svc, Deadline: n.Deadline, Cell: cell, CellIndex: i})
		e := &ents[len(ents)-1]
		if t, ok := m.cooldowns[svc.ID]; ok {
			e.CooldownUntil = t
		}
		e.AssetCooldowns = m.assetCool[svc.ID]
		if p, ok := m.probes[svc.ID]; ok {
			p := p
			e.Probe = &p
		}
		e.Stats = m.stats[svc.ID]
		v.svcs = append(v.svcs, e)
	}
	sort.Slice(v.svcs, func(i, j int) bool { return v.svcs[i].ID < v.svcs[j].ID })
	return v
}

// viewCurrent reports whether v still shows n with the model's shared
// health figures (so a full resync may keep its entries).
func viewCurrent(v *nodeView, n NodeRecord, m *model) bool {
	if v == nil || !sameRecord(&v.rec, &n) || !v.rec.Deadline.Equal(n.Deadline) {
		return false
	}
	for _, e := range v.svcs {
		if !e.CooldownUntil.Equal(m.cooldowns[e.ID]) || !maps.Equal(e.AssetCooldowns, m.assetCool[e.ID]) || e.Stats != m.stats[e.ID] {
			return false
		}
		p, ok := m.probes[e.ID]
		if ok != (e.Probe != nil) || (ok && (p.Healthy != e.Probe.Healthy || p.Error != e.Probe.Error || p.LatencyMS != e.Probe.LatencyMS || !p.At.Equal(e.Probe.At))) {
			return false
		}
	}
	return true
}

// BuildStats counts the watcher's work, for tests and /metrics.
type BuildStats struct {
	// FullBuilds counts snapshots whose node views were all checked (a
	// resync, a health or allowlist event); Incremental those patched
	// from the previous snapshot for a few nodes (node events) or that
	// changed no node at all (catalog, keys, policy, bench events).
	FullBuilds, Incremental uint64
	// Figures counts snapshots published for figures stored in cells
	// alone (metrics events: no view built, no container copied).
	Figures uint64
	// ViewsBuilt counts node views (a node's HostEntry and
	// ServiceEntries) built; ViewsReused those a full build kept.
	ViewsBuilt, ViewsReused uint64
	// IndexRebuilds counts full rebuilds of the fleet indexes (Services,
	// ByID, AssetServices); a node event never does one.
	IndexRebuilds uint64
	// DataVersion is the current snapshot's DataVersion.
	DataVersion uint64
}

// fillFleet fills snap's node containers and DataVersion from the model.
// changed names the nodes whose records changed since prev (added,
// updated or removed); nil means "check every node" (a full build).
func (w *Watcher) fillFleet(snap, prev *fleet.Snapshot, changed map[string]bool) {
	m := &w.model
	shapeChanged := false
	if changed == nil {
		w.stats.FullBuilds.Add(1)
		views := make(map[string]*nodeView, len(m.nodes))
		changed = map[string]bool{}
		for id, n := range m.nodes {
			old := w.views[id]
			if viewCurrent(old, n, m) {
				views[id] = old
				w.stats.ViewsReused.Add(1)
				continue
			}
			v := buildView(id, n, m)
			w.stats.ViewsBuilt.Add(1)
			if old == nil || old.shape != v.shape {
				shapeChanged = true
			}
			views[id] = v
			changed[id] = true
		}
		for id := range w.views {
			if _, ok := views[id]; !ok {
				shapeChanged = true
				changed[id] = true
			}
		}
		old := make(map[string]*nodeView, len(changed))
		for id := range changed {
			old[id] = w.views[id]
		}
		w.views = views
		switch {
		case prev == nil || prev.Hosts == nil || 4*len(changed) > len(views):
			w.buildIndexes(snap)
		case len(changed) == 0:
			snap.Hosts, snap.Services, snap.ByID, snap.AssetServices = prev.Hosts, prev.Services, prev.ByID, prev.AssetServices
		default:
			w.patchIndexes(snap, prev, changed, old)
		}
	} else {
		w.stats.Incremental.Add(1)
		if len(changed) == 0 {
			snap.Hosts, snap.Services, snap.ByID, snap.AssetServices = prev.Hosts, prev.Services, prev.ByID, prev.AssetServices
		} else {
			// w.views is the watcher's own (readers never see it): patch it
			// in place, keeping the changed nodes' previous views.
			if w.views == nil {
				w.views = map[string]*nodeView{}
			}
			views := w.views
			old := make(map[string]*nodeView, len(changed))
			for id := range changed {
				old[id] = views[id]
			}
			for id := range changed {
				n, ok := m.nodes[id]
				if !ok {
					if views[id] != nil {
						delete(views, id)
						shapeChanged = true
					}
					continue
				}
				v := buildView(id, n, m)
				w.stats.ViewsBuilt.Add(1)
				if o := views[id]; o == nil || o.shape != v.shape {
					shapeChanged = true
				}
				views[id] = v
			}
			w.patchIndexes(snap, prev, changed, old)
		}
	}
	catKey := snap.Catalog.Version + "\x00" + m.catErr
	if shapeChanged || catKey != w.dataCat || w.dataVer == 0 {
		w.dataVer++
		w.dataCat = catKey
	}
	snap.DataVersion = w.dataVer
	w.stats.DataVersion.Store(w.dataVer)
}

// buildIndexes builds the node containers of snap from every view.
func (w *Watcher) buildIndexes(snap *fleet.Snapshot) {
	w.stats.IndexRebuilds.Add(1)
	n := 0
	for _, v := range w.views {
		n += len(v.svcs)
	}
	snap.Hosts = make(map[string]*fleet.HostEntry, len(w.views))
	snap.Services = make([]*fleet.ServiceEntry, 0, n)
	snap.ByID = make(map[string]*fleet.ServiceEntry, n)
	snap.AssetServices = map[string][]*fleet.ServiceEntry{}
	for id, v := range w.views {
		snap.Hosts[id] = v.host
		snap.Services = append(snap.Services, v.svcs...)
	}
	sort.Slice(snap.Services, func(i, j int) bool { return snap.Services[i].ID < snap.Services[j].ID })
	for _, e := range snap.Services {
		snap.ByID[e.ID] = e
		for _, a := range e.Assets {
			snap.AssetServices[a.Name] = append(snap.AssetServices[a.Name], e)
		}
	}
}

// patchIndexes builds snap's containers from prev's, replacing the
// entries of the changed nodes (old holds their views in prev, and only
// theirs; w.views their views now; a node absent from w.views is removed).
func (w *Watcher) patchIndexes(snap, prev *fleet.Snapshot, changed map[string]bool, old map[string]*nodeView) {
	views := w.views
	var added []*fleet.ServiceEntry
	assets := map[string]bool{}
	for id := range changed {
		for _, vs := range [2]*nodeView{old[id], views[id]} {
			if vs == nil {
				continue
			}
			for _, e := range vs.svcs {
				for _, a := range e.Assets {
					assets[a.Name] = true
				}
			}
		}
		if v := views[id]; v != nil {
			added = append(added, v.svcs...)
		}
	}
	sort.Slice(added, func(i, j int) bool { return added[i].ID < added[j].ID })

	snap.Hosts = maps.Clone(prev.Hosts)
	if snap.Hosts == nil {
		snap.Hosts = map[string]*fleet.HostEntry{}
	}
	snap.ByID = maps.Clone(prev.ByID)
	if snap.ByID == nil {
		snap.ByID = map[string]*fleet.ServiceEntry{}
	}
	for id := range changed {
		delete(snap.Hosts, id)
		if v := views[id]; v != nil {
			snap.Hosts[id] = v.host
		}
	}
	// Replace the changed hosts' entries in ByID (an entry of another host
	// under the same id stays), then splice them in the sorted lists.
	for _, v := range old {
		if v == nil {
			continue
		}
		for _, e := range v.svcs {
			if snap.ByID[e.ID] == e {
				delete(snap.ByID, e.ID)
			}
		}
	}
	for _, e := range added {
		snap.ByID[e.ID] = e
	}
	hosts := make([]string, 0, len(changed))
	for id := range changed {
		hosts = append(hosts, id+"/")
	}
	sort.Strings(hosts)
	snap.Services = spliceEntries(prev.Services, added, hosts)
	snap.AssetServices = make(map[string][]*fleet.ServiceEntry, len(prev.AssetServices)+len(assets))
	for name, list := range prev.AssetServices {
		if !assets[name] {
			snap.AssetServices[name] = list
		}
	}
	for name := range assets {
		var mine []*fleet.ServiceEntry
		for _, e := range added {
			if _, ok := e.Asset(name); ok {
				mine = append(mine, e)
			}
		}
		if list := spliceEntries(prev.AssetServices[name], mine, hosts); len(list) > 0 {
			snap.AssetServices[name] = list
		}
	}
}

// spliceEntries returns list (sorted by ID) with the entries of the given
// hosts replaced by added (sorted by ID, entries of those hosts only).
// hosts are "<host>/" prefixes, sorted. A service id is "<host>/<name>"
// (checkNodeState), so a host's entries are one contiguous run, found by
// binary search: the cost is a copy of the list, not a comparison per
// entry.
func spliceEntries(list, added []*fleet.ServiceEntry, hosts []string) []*fleet.ServiceEntry {
	out := make([]*fleet.ServiceEntry, 0, len(list)+len(added))
	pos, ai := 0, 0
	for _, h := range hosts {
		end := h[:len(h)-1] + "0" // '0' follows '/': the first id past the host's run
		lo := pos + sort.Search(len(list)-pos, func(i int) bool { return list[pos+i].ID >= h })
		hi := lo + sort.Search(len(list)-lo, func(i int) bool { return list[lo+i].ID >= end })
		out = append(out, list[pos:lo]...)
		for ai < len(added) && added[ai].ID < end {
			out = append(out, added[ai])
			ai++
		}
		pos = hi
	}
	out = append(out, list[pos:]...)
	return append(out, added[ai:]...)
}

// fillKeys and fillBench fill the parts of a snapshot that do not depend on
// nodes.
func fillKeys(snap *fleet.Snapshot, keys []fleet.APIKey) {
	for i := range keys {
		k := &keys[i]
		h, err := hex.DecodeString(k.Hash)
		if err != nil || len(h) != 32 {
			continue
		}
		var hk [32]byte
		copy(hk[:], h)
		snap.Keys[hk] = k
	}
}

func fillBench(snap *fleet.Snapshot, bench []fleet.BenchSummary) {
	for _, b := range bench {
		snap.Bench[b.Model] = append(snap.Bench[b.Model], b)
	}
}

// since is time.Since in seconds, for histograms.
func since(t time.Time) float64 { return time.Since(t).Seconds() }
