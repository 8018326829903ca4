package policies

import (
	"context"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
)

// MaxFallbackDepth is how many levels of fallback roles resolution walks
// below the requested role (the root is level 0).
const MaxFallbackDepth = 8

// GoEngineVersion is the Version of the built-in Go engine.
const GoEngineVersion = "builtin-go-v1"

// Tried messages shared by every engine (the Rego policy builds the same).
const (
	msgNothing    = "no asset, service or role named "
	msgDepthLimit = "fallback walk stopped at depth 8"
)

// NewGo returns the reference engine: the shipped policy written in plain
// Go. SetData precompiles everything that does not depend on the request
// (role walks, candidate lists, merged patches), so Eval only looks up the
// model and copies targets; it allocates only when it has to explain a
// failure or when out has no capacity yet.
//
// Patches in its decisions are shared between requests and must be treated
// as read-only.
func NewGo() policy.Engine {
	e := &goEngine{}
	e.st.Store(compileGo(&policy.Data{SchemaVersion: policy.SchemaVersion}))
	return e
}

type goEngine struct {
	st atomic.Pointer[goState]
}

type goState struct {
	data   *policy.Data
	assets map[string]*goAsset
	roles  map[string]*goRole
	walks  map[string]*goWalk // by root role name
}

// goAsset is an asset addressed directly (asset policy only).
type goAsset struct {
	data policy.AssetData
	pol  mergedPolicy
	keep *policy.Patch // DisableThinking false
	off  *policy.Patch // DisableThinking true
}

type goTarget struct {
	t         policy.Target // Group and policy.Patch filled per request
	data      policy.AssetData
	pol       mergedPolicy
	keep, off *policy.Patch
	mode      int
}

type goRole struct {
	name    string
	op      fleet.Kind
	targets []goTarget
	tried   []string // candidate messages, "no candidate" when targets is empty
	prefix  string   // "role <name>: "
}

type goStep struct {
	role     *goRole
	edgeMsgs []string
}

type goWalk struct {
	steps []goStep
	tail  []string
}

func (e *goEngine) Name() string    { return "go" }
func (e *goEngine) Version() string { return GoEngineVersion }
func (e *goEngine) Close() error    { return nil }

func (e *goEngine) SetData(_ context.Context, d *policy.Data) error {
	if d == nil {
		d = &policy.Data{SchemaVersion: policy.SchemaVersion}
	}
	e.st.Store(compileGo(d))
	return nil
}

func compileGo(d *policy.Data) *goState {
	st := &goState{
		data:   d,
		assets: make(map[string]*goAsset, len(d.Assets)),
		roles:  make(map[string]*goRole, len(d.Roles)),
		walks:  make(map[string]*goWalk, len(d.Roles)),
	}
	for name, ad := range d.Assets {
		a := &goAsset{data: ad, pol: mergePolicies(d.AssetPolicies[name], nil)}
		a.keep, a.off = a.pol.patch(false), a.pol.patch(true)
		st.assets[name] = a
	}
	for name := range d.Roles {
		st.roles[name] = compileRole(d, name)
	}
	for name := range d.Roles {
		st.walks[name] = compileWalk(d, st, name)
	}
	return st
}

func roleOp(r *fleet.Role) fleet.Kind {
	if r.Operation == "" {
		return fleet.KindChat
	}
	return r.Operation
}

func hasKind(kinds []fleet.Kind, k fleet.Kind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// RoleCandidates returns the asset names a role resolves to, in order:
// its Candidates that are assets offering its operation, or, when it lists
// no candidates, the assets of its preferred families offering the
// operation (family preference, then name). The second result explains
// each candidate left out.
func RoleCandidates(d *policy.Data, r *fleet.Role) (names []string, tried []string) {
	op := roleOp(r)
	prefix := "role " + r.Name + ": "
	if len(r.Candidates) > 0 {
		for _, c := range r.Candidates {
			ad, ok := d.Assets[c]
			switch {
			case !ok:
				tried = append(tried, prefix+"candidate "+c+" is not a live asset")
			case !hasKind(ad.Kinds, op):
				tried = append(tried, prefix+"candidate "+c+" not of kind "+string(op))
			default:
				names = append(names, c)
			}
		}
	} else {
		for _, fam := range r.PreferredFamilies {
			var fn []string
			for n, ad := range d.Assets {
				if ad.Family == fam && hasKind(ad.Kinds, op) {
					fn = append(fn, n)
				}
			}
			sort.Strings(fn)
			names = append(names, fn...)
		}
	}
	if len(names) == 0 {
		tried = append(tried, prefix+"no candidate of kind "+string(op))
	}
	return names, tried
}

func compileRole(d *policy.Data, name string) *goRole {
	r := d.Roles[name]
	gr := &goRole{name: name, op: roleOp(&r), prefix: "role " + name + ": "}
	names, tried := RoleCandidates(d, &r)
	gr.tried = tried
	for _, n := range names {
		ad := d.Assets[n]
		t := goTarget{
			t:    policy.Target{Kind: policy.TargetAsset, Name: n, Operation: gr.op, Role: name, Strategy: r.Strategy},
			data: ad,
			pol:  mergePolicies(d.AssetPolicies[n], r.RequestPolicy),
		}
		t.mode = thinkingMode(&t.pol, ad, gr.op)
		t.keep, t.off = t.pol.patch(false), t.pol.patch(true)
		gr.targets = append(gr.targets, t)
	}
	return gr
}

// lookupRole resolves a role name or alias to a role present in d.
func lookupRole(d *policy.Data, nameOrAlias string) (string, bool) {
	n, ok := d.Aliases[NormalizeModel(nameOrAlias)]
	if !ok {
		return "", false
	}
	_, ok = d.Roles[n]
	return n, ok
}

// compileWalk walks root's fallback roles breadth first, level by level,
// each role once, down to MaxFallbackDepth.
func compileWalk(d *policy.Data, st *goState, root string) *goWalk {
	w := &goWalk{}
	seen := map[string]bool{root: true}
	cur := []string{root}
	for depth := 0; ; depth++ {
		var next []string
		for _, rn := range cur {
			var msgs []string
			for _, f := range d.Roles[rn].FallbackRoles {
				to, ok := lookupRole(d, f)
				switch {
				case !ok:
					msgs = append(msgs, "role "+rn+": fallback "+f+" is not a role")
				case seen[to]:
					msgs = append(msgs, "role "+rn+": fallback "+to+" cut (cycle or already tried)")
				default:
					seen[to] = true
					next = append(next, to)
				}
			}
			w.steps = append(w.steps, goStep{role: st.roles[rn], edgeMsgs: msgs})
		}
		if len(next) == 0 {
			break
		}
		if depth == MaxFallbackDepth {
			w.tail = []string{msgDepthLimit}
			break
		}
		cur = next
	}
	return w
}

func (e *goEngine) Eval(ctx context.Context, in *policy.Input, out *policy.Decision) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st := e.st.Load()
	out.SchemaVersion = policy.SchemaVersion
	out.Targets = out.Targets[:0]
	out.StripReasoning = false
	out.Headers = nil
	out.Deny = nil
	out.Tried = out.Tried[:0]

	key := in.ModelKey
	if key == "" {
		key = NormalizeModel(in.Model)
	}
	op := in.Operation
	d := st.data
	direct := false
	root := ""
	dropped, droppedMax := 0, 0

	if sd := in.Service; sd != nil {
		direct = true
		if sd.Kind == op {
			out.Targets = append(out.Targets, policy.Target{Kind: policy.TargetService, Name: sd.ID, Operation: sd.Kind})
		} else {
			out.Tried = append(out.Tried, "service "+sd.ID+": kind "+string(sd.Kind)+", not "+string(op))
		}
	} else if names, ok := d.Models[key]; ok {
		direct = true
		for _, n := range names {
			a := st.assets[n]
			if a == nil || !hasKind(a.data.Kinds, op) {
				out.Tried = append(out.Tried, "asset "+n+": not of kind "+string(op))
				continue
			}
			if exceeds(in.MaxTokens, a.pol.maxTokens) {
				out.Tried = append(out.Tried, "asset "+n+": "+maxTokensMsg(in.MaxTokens, a.pol.maxTokens))
				dropped++
				droppedMax = max(droppedMax, a.pol.maxTokens)
				continue
			}
			p := a.keep
			if m := thinkingMode(&a.pol, a.data, op); m == thinkOff || m == thinkDefault && !isTrue(in.Thinking) {
				p = a.off
			}
			out.Targets = append(out.Targets, policy.Target{Kind: policy.TargetAsset, Name: n, Operation: op, Patch: p})
		}
	} else if rn, ok := lookupRole(d, key); ok {
		root = rn
		w := st.walks[rn]
		group := 0
		for i := range w.steps {
			s := &w.steps[i]
			r := s.role
			if r.op != op {
				out.Tried = append(out.Tried, r.prefix+"candidates not of kind "+string(op))
			} else {
				out.Tried = append(out.Tried, r.tried...)
				emitted := 0
				for j := range r.targets {
					t := &r.targets[j]
					if exceeds(in.MaxTokens, t.pol.maxTokens) {
						out.Tried = append(out.Tried, r.prefix+"asset "+t.t.Name+": "+maxTokensMsg(in.MaxTokens, t.pol.maxTokens))
						dropped++
						droppedMax = max(droppedMax, t.pol.maxTokens)
						continue
					}
					tt := t.t
					tt.Group = group
					tt.Patch = t.keep
					if t.mode == thinkOff || t.mode == thinkDefault && !isTrue(in.Thinking) {
						tt.Patch = t.off
					}
					out.Targets = append(out.Targets, tt)
					emitted++
				}
				if emitted > 0 {
					group++
				}
			}
			out.Tried = append(out.Tried, s.edgeMsgs...)
		}
		out.Tried = append(out.Tried, w.tail...)
	} else {
		out.Tried = append(out.Tried, msgNothing+in.Model)
	}

	if len(in.Key.Roles) > 0 && (direct || root != "") && !keyAllows(d, in.Key.Roles, root) {
		out.Targets = out.Targets[:0]
		reason := "key " + in.Key.ID + " may only use roles, not model " + in.Model
		if root != "" {
			reason = "key " + in.Key.ID + " may not use role " + root
		}
		out.Deny = &policy.Denial{Status: 403, Code: "role_not_allowed", Reason: reason}
	} else if len(out.Targets) == 0 && dropped > 0 {
		out.Deny = &policy.Denial{Status: 400, Code: "max_tokens_exceeded", Reason: maxTokensMsg(in.MaxTokens, droppedMax)}
	}
	for i := range out.Targets {
		if p := out.Targets[i].Patch; p != nil && p.StripReasoning {
			out.StripReasoning = true
			break
		}
	}
	return nil
}

func isTrue(b *bool) bool { return b != nil && *b }

func exceeds(req, limit int) bool { return limit > 0 && req > limit }

func maxTokensMsg(req, limit int) string {
	return "max_tokens " + strconv.Itoa(req) + " exceeds the limit " + strconv.Itoa(limit)
}

func keyAllows(d *policy.Data, roles []string, root string) bool {
	if root == "" {
		return false
	}
	for _, kr := range roles {
		if n, ok := d.Aliases[NormalizeModel(kr)]; ok && n == root {
			return true
		}
	}
	return false
}
