package policies

import (
	"sort"
	"strings"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
)

// BuildData builds the policy data document from a snapshot: roles and
// aliases from the catalog, and assets and the model-name index from the
// services whose heartbeat is live at snap.BuiltAt (health and
// cooldown are routing's business, not the policy's). The edge calls it once
// per snapshot version and hands the result to Engine.SetData.
//
// Normalisations done here so that policies stay simple: role names in
// Aliases and Services keys are lower-cased; families and preferred
// families are lower-cased; an empty role operation becomes "chat"; a role
// candidate that is not an exact asset name but whose NormalizeModel form
// names exactly one asset is replaced by that asset's name; duplicate
// candidates are dropped.
func BuildData(snap *fleet.Snapshot) *policy.Data {
	d := &policy.Data{
		SchemaVersion: policy.SchemaVersion,
		Roles:         map[string]fleet.Role{},
		Aliases:       map[string]string{},
		Models:        map[string][]string{},
		Assets:        map[string]policy.AssetData{},
		AssetPolicies: map[string]*fleet.RequestPolicy{},
	}
	if snap == nil {
		return d
	}
	type acc struct {
		family   string
		kinds    map[fleet.Kind]bool
		thinking bool
		// byDefault: an upstream says the model thinks (Ollama's
		// "thinking" capability), and Ollama thinks by default (v0.12.4+).
		byDefault bool
		tags      map[string]bool
	}
	assets := map[string]*acc{}
	for _, se := range snap.Services {
		if !liveAtBuild(snap, se) {
			continue
		}
		for i := range se.Assets {
			a := &se.Assets[i]
			if a.Name == "" {
				continue
			}
			x := assets[a.Name]
			if x == nil {
				x = &acc{kinds: map[fleet.Kind]bool{}, tags: map[string]bool{}}
				assets[a.Name] = x
			}
			if x.family == "" {
				x.family = strings.ToLower(a.Family)
			}
			if se.Kind != "" {
				x.kinds[se.Kind] = true
			}
			x.thinking = x.thinking || a.Thinking
			x.byDefault = x.byDefault || a.Can(fleet.CapThinking)
			for _, t := range a.Tags {
				x.tags[t] = true
			}
		}
	}
	for name, x := range assets {
		ad := policy.AssetData{Family: x.family, Thinking: x.thinking}
		for k := range x.kinds {
			ad.Kinds = append(ad.Kinds, k)
		}
		sort.Slice(ad.Kinds, func(i, j int) bool { return ad.Kinds[i] < ad.Kinds[j] })
		for t := range x.tags {
			ad.Tags = append(ad.Tags, t)
		}
		sort.Strings(ad.Tags)
		ad.Qwen3 = IsQwen3(x.family, name) || x.byDefault
		d.Assets[name] = ad
	}
	d.Models = BuildModelIndex(assets)

	if c := snap.Catalog; c != nil {
		for name, p := range c.AssetPolicies {
			if p != nil {
				d.AssetPolicies[name] = p
			}
		}
		for _, r := range c.Roles {
			addRole(d, r)
		}
	}
	return d
}

// ServiceIndex maps a lower-cased service id to what a policy learns of
// that service when a request names it (policy.Input.Service). The edge
// builds it with the data document and looks the request's ModelKey up in
// it (a map lookup, no allocation); it is kept out of the data document,
// which would otherwise grow with every service of the fleet.
type ServiceIndex map[string]*policy.ServiceData

// BuildServiceIndex indexes the services of snap whose heartbeat is live at
// snap.BuiltAt, as BuildData sees them.
func BuildServiceIndex(snap *fleet.Snapshot) ServiceIndex {
	if snap == nil {
		return ServiceIndex{}
	}
	ix := make(ServiceIndex, len(snap.Services))
	// One array for every entry (appends within its capacity never move
	// it): one object for the GC instead of one per service.
	all := make([]policy.ServiceData, 0, len(snap.Services))
	for _, se := range snap.Services {
		if !liveAtBuild(snap, se) {
			continue
		}
		all = append(all, policy.ServiceData{ID: se.ID, Kind: se.Kind})
		ix[strings.ToLower(se.ID)] = &all[len(all)-1]
	}
	return ix
}

// FindService is BuildServiceIndex(snap)[key] without the index: a scan
// for callers off the request path (the cluster API's role views).
func FindService(snap *fleet.Snapshot, key string) *policy.ServiceData {
	if snap == nil || key == "" {
		return nil
	}
	for _, se := range snap.Services {
		if !liveAtBuild(snap, se) || len(se.ID) != len(key) || strings.ToLower(se.ID) != key {
			continue
		}
		return &policy.ServiceData{ID: se.ID, Kind: se.Kind}
	}
	return nil
}

// BuildModelIndex maps every ModelKeys form of the given asset names to the
// asset names it matches, sorted. Exact forms (the lower-cased name, with or
// without ":latest") win: a key that is some asset's exact form maps only
// to the assets whose exact form it is.
func BuildModelIndex[V any](assets map[string]V) map[string][]string {
	exact := map[string][]string{}
	derived := map[string][]string{}
	for name := range assets {
		keys := ModelKeys(name)
		for i, k := range keys {
			if i < 2 && (k == strings.ToLower(strings.TrimSpace(name)) || k == NormalizeModel(name)) {
				exact[k] = appendUnique(exact[k], name)
			} else {
				derived[k] = appendUnique(derived[k], name)
			}
		}
	}
	for k, v := range derived {
		if _, ok := exact[k]; !ok {
			exact[k] = v
		}
	}
	for _, v := range exact {
		sort.Strings(v)
	}
	return exact
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// IsQwen3 reports whether a model of that family and name belongs to the
// Qwen3 / Qwen3.5 families, whose chat templates think by default.
func IsQwen3(family, name string) bool {
	f := strings.ToLower(family)
	if strings.HasPrefix(f, "qwen3") {
		return true
	}
	n := strings.ToLower(name)
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:]
	}
	return strings.HasPrefix(n, "qwen3")
}

// addRole copies r into d with the normalisations BuildData documents.
// Call after assets and models are filled.
func addRole(d *policy.Data, r fleet.Role) {
	if r.Name == "" {
		return
	}
	if r.Operation == "" {
		r.Operation = fleet.KindChat
	}
	if len(r.PreferredFamilies) > 0 {
		fams := make([]string, len(r.PreferredFamilies))
		for i, f := range r.PreferredFamilies {
			fams[i] = strings.ToLower(f)
		}
		r.PreferredFamilies = fams
	}
	if len(r.Candidates) > 0 {
		cands := make([]string, 0, len(r.Candidates))
		for _, c := range r.Candidates {
			if _, ok := d.Assets[c]; !ok {
				if m := d.Models[NormalizeModel(c)]; len(m) == 1 {
					c = m[0]
				}
			}
			if !contains(cands, c) {
				cands = append(cands, c)
			}
		}
		r.Candidates = cands
	}
	d.Roles[r.Name] = r
	if _, taken := d.Aliases[NormalizeModel(r.Name)]; !taken || !isRoleName(d, NormalizeModel(r.Name)) {
		d.Aliases[NormalizeModel(r.Name)] = r.Name
	}
	for _, a := range r.Aliases {
		k := NormalizeModel(a)
		if _, taken := d.Aliases[k]; !taken {
			d.Aliases[k] = r.Name
		}
	}
}

// isRoleName reports whether the alias key k currently points at a role
// whose own name is k (names win over other roles' aliases).
func isRoleName(d *policy.Data, k string) bool {
	n, ok := d.Aliases[k]
	return ok && NormalizeModel(n) == k
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// liveAtBuild: se's heartbeat is live at snap.BuiltAt (any service of a
// snapshot without a build time): the services the policy sees.
func liveAtBuild(snap *fleet.Snapshot, se *fleet.ServiceEntry) bool {
	return se != nil && (snap.BuiltAt.IsZero() || se.Live(snap.BuiltAt))
}
