# GenieHive shipped policy: role resolution and request policy.
#
# Entry point: data.geniehive.decision (a Decision document, schema v1).
# input.* is the JSON of policies.Input, data.* the JSON of policies.Data
# (see policies/README.md). The Go reference engine (policies.NewGo) makes
# exactly the same decisions; policies/policytest checks both against one
# table.
#
# The policy has two halves:
#
#   - `derived` depends on data only: each role's candidate targets with
#     their merged request policy, each role's fallback walk (order, cycle
#     cut, depth limit), and each asset's direct targets per operation. The
#     rego and wasm engines evaluate it ONCE per data version and hand it
#     back as data.derived (OPA evaluates every rule again on every request
#     and caches nothing across evaluations, so computing it per request
#     would be most of the cost of a decision).
#   - `decision` and the rules it uses depend on input: the model key
#     lookup (service, asset or role), the walk with kind filtering and
#     group numbering, max_tokens ceilings, the thinking choice, key scopes
#     and denials. They read the index through `_ix`, which falls back to
#     computing `derived` when data.derived is absent (Rego unit tests that
#     replace data with `with`), so both paths give the same decisions.
#
# Only builtins that OPA's Wasm target implements natively are used (no
# sprintf, no regex): string munging happens in Go when Data is built.
#
# Extension point: add rules to the partial set `denials` in package
# geniehive (objects {"priority", "status", "code", "reason"}); the lowest
# priority wins. Shipped denials use priorities 10 and 20; use 100 and up.
package geniehive

schema_version := 1

max_fallback_depth := 8

# ---------------------------------------------------------------- helpers

_norm(s) := trim_suffix(lower(trim_space(s)), ":latest")

_arr(x) := x if is_array(x)

else := []

_obj(x) := x if is_object(x)

else := {}

_has_kind(n, op) if op in data.assets[n].kinds

_role_op(role) := role.operation if {
	is_string(role.operation)
	role.operation != ""
}

else := "chat"

# (Big data objects are never passed to functions: OPA hashes function
# arguments for its call cache.)
_asset_pol(n) := p if {
	p := data.asset_policies[n]
	is_object(p)
}

else := {}

_role_pol(role) := _obj(object.get(role, "request_policy", {}))

_resolve(name) := r if {
	r := data.aliases[_norm(name)]
	data.roles[r]
}

else := null

# ================================================================ per data version

derived := {
	"walks": {rn: _walk_of(rn) | some rn, _ in _roles_ix},
	"assets": {n: _asset_ix(n) | some n, _ in _obj(data.assets)},
}

_roles_ix := {rn: _role_ix(rn) | some rn, _ in _obj(data.roles)}

# ---------------------------------------------------------------- request policy

# _limit is the smaller positive max_tokens of the two policies, 0 for none.
_limit(ap, rp) := l if {
	ls := [x | some x in [object.get(ap, "max_tokens", 0), object.get(rp, "max_tokens", 0)]; x > 0]
	count(ls) > 0
	l := min(ls)
}

else := 0

# The role's system prompt wins when both set one.
_prompt(ap, rp) := rp.system_prompt if is_object(rp.system_prompt)

else := ap.system_prompt if is_object(ap.system_prompt)

else := null

# The role's thinking setting wins when it sets one; null = unset.
_thinking(ap, rp) := rp.thinking if is_boolean(rp.thinking)

else := ap.thinking if is_boolean(ap.thinking)

else := null

_capable(ad) if ad.thinking == true

_capable(ad) if ad.qwen3 == true

# _think_mode: "off" disables thinking whatever the request says, "default"
# disables it unless the request asks for thinking, "keep" never disables.
_think_mode(pt, ad, op) := "off" if {
	op == "chat"
	pt == false
	_capable(ad)
}

else := "default" if {
	op == "chat"
	pt == null
	ad.qwen3 == true
}

else := "keep"

_asset_data(n) := a if {
	a := data.assets[n]
	is_object(a)
}

else := {}

_strip_if(ap, _) if ap.strip_reasoning == true

_strip_if(_, rp) if rp.strip_reasoning == true

_strip(ap, rp) := true if _strip_if(ap, rp)

else := false

_keep(v) if {
	v != null
	v != false
	v != {}
}

# _patch merges the role policy rp over the asset policy ap: defaults and
# overrides deep-merged (object.union is recursive; arrays and scalars
# replace), system prompt and thinking from the role when set,
# strip_reasoning when either asks. Empty fields are left out.
_patch(ap, rp, disable) := {k: v |
	fields := {
		"defaults": object.union(_obj(object.get(ap, "defaults", {})), _obj(object.get(rp, "defaults", {}))),
		"overrides": object.union(_obj(object.get(ap, "overrides", {})), _obj(object.get(rp, "overrides", {}))),
		"system_prompt": _prompt(ap, rp),
		"disable_thinking": disable,
		"strip_reasoning": _strip(ap, rp),
	}
	some k, v in fields
	_keep(v)
}

_with_patch(t, p) := object.union(t, {"patch": p}) if count(p) > 0

else := t

# _item is asset n as a target of role (role {} and rn "" for a direct
# match) for operation op: its max_tokens limit, its thinking mode, the
# target without ("keep") and with ("off") thinking disabled, and the
# prefix and limit of its max_tokens message. Targets carry group 0; requests that
# put them in a later group replace it.
_item(n, role, rn, op, prefix) := {"limit": l, "limit_text": format_int(l, 10), "mode": m, "keep": keep, "off": off, "max_prefix": concat("", [prefix, "asset ", n, ": "])} if {
	ap := _asset_pol(n)
	rp := _role_pol(role)
	l := _limit(ap, rp)
	m := _think_mode(_thinking(ap, rp), _asset_data(n), op)
	t0 := {"kind": "asset", "name": n, "operation": op, "role": rn, "strategy": object.get(role, "strategy", ""), "group": 0}
	keep := _with_patch(t0, _patch(ap, rp, false))
	off := _with_patch(t0, _patch(ap, rp, true))
}

# ---------------------------------------------------------------- assets

# _asset_ix: asset n addressed directly, per operation it offers.
_asset_ix(n) := {op: _item(n, {}, "", op, "") | some op in _arr(data.assets[n].kinds)}

# ---------------------------------------------------------------- roles

# _min_pos is the smallest positive number of xs, 0 when there is none.
_min_pos(xs) := min(ps) if {
	ps := [x | some x in xs; x > 0]
	count(ps) > 0
}

else := 0

# Candidates: the role's candidates that are assets of its operation, or,
# when it lists none, its preferred families' assets of that operation
# (family order, then name).
_cands(role, op) := [c | some c in role.candidates; _has_kind(c, op)] if count(_arr(role.candidates)) > 0

else := [n |
	some i
	fam := _arr(role.preferred_families)[i]
	ns := sort([a | some a, ad in data.assets; ad.family == fam; op in ad.kinds])
	some j
	n := ns[j]
]

_cand_msg(prefix, c, _) := concat("", [prefix, "candidate ", c, " is not a live asset"]) if not data.assets[c]

_cand_msg(prefix, c, op) := concat("", [prefix, "candidate ", c, " not of kind ", op]) if {
	data.assets[c]
	not _has_kind(c, op)
}

# _role_ix: role rn's operation, its candidate targets and the messages
# explaining candidates left out.
_role_ix(rn) := {"op": op, "items": items, "msgs": msgs, "min_limit": _min_pos([it.limit | some it in items])} if {
	role := data.roles[rn]
	op := _role_op(role)
	prefix := concat("", ["role ", rn, ": "])
	cands := _cands(role, op)
	items := [_item(n, role, rn, op, prefix) | some n in cands]
	cand_msgs := [m | some c in _arr(role.candidates); m := _cand_msg(prefix, c, op)]
	none_msgs := [concat("", [prefix, "no candidate of kind ", op]) | count(cands) == 0]
	msgs := array.concat(cand_msgs, none_msgs)
}

# Fallback walk from root: breadth first, level by level, each role once,
# at most max_fallback_depth levels below root. Rego has no recursion, so
# the levels are an explicit chain of steps. The result lists the walked
# roles in order, each with the messages of its fallback edges (unknown
# roles, cuts), and the depth-limit message when the walk was cut short.
_step(level, seen) := {"level": [], "seen": seen, "msgs": []} if count(level) == 0

_step(level, seen) := {"level": next, "seen": seen_after, "msgs": msgs} if {
	count(level) > 0
	edges := [e |
		some i
		rn := level[i]
		some j
		f := _arr(data.roles[rn].fallback_roles)[j]
		e := {"from": rn, "name": f, "to": _resolve(f)}
	]
	next := [edges[k].to | some k; _is_new(edges, k, seen)]
	seen_after := seen | {x | some x in next}
	msgs := [{"from": e.from, "msg": m} |
		some k
		e := edges[k]
		not _is_new(edges, k, seen)
		m := _edge_msg(e)
	]
}

_is_new(edges, k, seen) if {
	to := edges[k].to
	to != null
	not to in seen
	not _earlier(edges, k, to)
}

_earlier(edges, k, to) if {
	some m
	edges[m].to == to
	m < k
}

_edge_msg(e) := concat("", ["role ", e.from, ": fallback ", e.name, " is not a role"]) if e.to == null

else := concat("", ["role ", e.from, ": fallback ", e.to, " cut (cycle or already tried)"])

_walk_of(root) := {"steps": steps, "tail": tail} if {
	s1 := _step([root], {root})
	s2 := _step(s1.level, s1.seen)
	s3 := _step(s2.level, s2.seen)
	s4 := _step(s3.level, s3.seen)
	s5 := _step(s4.level, s4.seen)
	s6 := _step(s5.level, s5.seen)
	s7 := _step(s6.level, s6.seen)
	s8 := _step(s7.level, s7.seen)

	# s9 holds the edges leaving level 8; its level is not walked.
	s9 := _step(s8.level, s8.seen)
	order := array.concat(
		array.concat(array.concat([root], s1.level), array.concat(s2.level, s3.level)),
		array.concat(array.concat(s4.level, s5.level), array.concat(array.concat(s6.level, s7.level), s8.level)),
	)
	msgs := array.concat(
		array.concat(array.concat(s1.msgs, s2.msgs), array.concat(s3.msgs, s4.msgs)),
		array.concat(array.concat(s5.msgs, s6.msgs), array.concat(array.concat(s7.msgs, s8.msgs), s9.msgs)),
	)
	steps := [_walk_step(order, i, [x.msg | some x in msgs; x.from == rn]) | some i, rn in order]
	tail := ["fallback walk stopped at depth 8" | count(s9.level) > 0]
}

# _walk_step is role order[i] as step i of a walk, with everything a
# request of the role's operation needs: its targets numbered with the
# group they get when no earlier step loses targets to max_tokens (the
# number of earlier steps of the same operation with targets), as picked
# for a request that does not ask for thinking ("nothink") and, when that
# differs, for one that does ("think"); its messages ("msgs": candidates
# left out ("cand_msgs"), then its fallback edges ("edges")); and, for
# requests with a max_tokens ceiling, each target's limit ("items", in
# the order of the targets).
_walk_step(order, i, edges) := object.union(
	{
		"role": rn,
		"op": r.op,
		"edges": edges,
		"msgs": array.concat(r.msgs, edges),
		"cand_msgs": r.msgs,
		"min_limit": r.min_limit,
		"items": [{"limit": it.limit, "limit_text": it.limit_text, "max_prefix": it.max_prefix} | some it in r.items],
		"nothink": nothink,
	},
	{"think": think | think != nothink},
) if {
	rn := order[i]
	r := _roles_ix[rn]
	g := count([j |
		some j, other in order
		j < i
		_roles_ix[other].op == r.op
		count(_roles_ix[other].items) > 0
	])
	nothink := [_in_group(_pick_for(it, false), g) | some it in r.items]
	think := [_in_group(_pick_for(it, true), g) | some it in r.items]
}

# _pick_for chooses an item's target by its thinking mode, for a request
# that asks for thinking (thinks) or not.
_pick_for(it, thinks) := it.off if it.mode == "off"

else := it.off if {
	it.mode == "default"
	thinks == false
}

else := it.keep

# ================================================================ per request

# _ix is the data-only index: data.derived as the engine precomputed it,
# or `derived` computed now when data carries none.
_ix := data.derived if is_object(data.derived)

else := derived

_req_max_tokens := input.max_tokens if is_number(input.max_tokens)

else := 0

# _over: a target with limit l is dropped for this request.
_over(l) if {
	l > 0
	_req_max_tokens > l
}

# _fits_all: no target of a role whose smallest positive limit is ml is
# dropped (the common case: the request sets no max_tokens).
_fits_all(ml) := true if ml == 0

else := _req_max_tokens <= ml

# (format_int is slow in OPA's Wasm runtime: limits come formatted in the
# index, the request's number is formatted once.)
_req_max_text := format_int(_req_max_tokens, 10)

_max_msg(l) := concat("", ["max_tokens ", _req_max_text, " exceeds the limit ", format_int(l, 10)])

# _item_max_msg: item it is dropped for this request's max_tokens.
_item_max_msg(it) := concat("", [it.max_prefix, "max_tokens ", _req_max_text, " exceeds the limit ", it.limit_text])

_thinks := true if input.thinking == true

else := false

# _pick chooses an item's target for this request.
_pick(it) := _pick_for(it, _thinks)

# ---------------------------------------------------------------- model key and mode

model_key := input.model_key if {
	is_string(input.model_key)
	input.model_key != ""
}

else := _norm(object.get(input, "model", ""))

mode := "service" if input.service

else := "asset" if data.models[model_key]

else := "role" if data.roles[data.aliases[model_key]]

else := "none"

# _res is what resolution found: targets, tried messages, and the limits
# of targets dropped for max_tokens.
_res := _service_res if mode == "service"

else := _direct_res if mode == "asset"

else := _role_res if mode == "role"

else := {"targets": [], "tried": [concat("", ["no asset, service or role named ", object.get(input, "model", "")])], "dropped": []}

# ---------------------------------------------------------------- service

_service_res := {"targets": [{"kind": "service", "name": s.id, "operation": s.kind, "group": 0}], "tried": [], "dropped": []} if {
	s := input.service
	s.kind == input.operation
}

else := {"targets": [], "tried": [concat("", ["service ", s.id, ": kind ", s.kind, ", not ", input.operation])], "dropped": []} if {
	s := input.service
}

# ---------------------------------------------------------------- asset

_direct_item(n) := it if {
	it := _ix.assets[n][input.operation]
} else := {"msg": concat("", ["asset ", n, ": not of kind ", input.operation])}

_direct_res := {"targets": targets, "tried": tried, "dropped": dropped} if {
	items := [_direct_item(n) | some n in data.models[model_key]]
	targets := [_pick(x) | some x in items; not x.msg; not _over(x.limit)]
	tried := [_direct_msg(x) | some x in items; _direct_failed(x)]
	dropped := [x.limit | some x in items; not x.msg; _over(x.limit)]
}

_direct_failed(x) if x.msg

_direct_failed(x) if _over(x.limit)

_direct_msg(x) := x.msg if x.msg

else := _item_max_msg(x)

# ---------------------------------------------------------------- role

_root := data.aliases[model_key] if mode == "role"

# _role_eval is step s of the walk for this request: the role's targets of
# the request's operation that fit its max_tokens, and its messages.
_role_eval(s, op) := {"targets": [], "msgs": array.concat([concat("", ["role ", s.role, ": candidates not of kind ", op])], s.edges), "dropped": []} if {
	s.op != op
}

else := {"targets": _step_targets(s), "msgs": s.msgs, "dropped": []} if {
	_fits_all(s.min_limit)
}

else := {"targets": targets, "msgs": msgs, "dropped": [it.limit | some it in over]} if {
	ts := _step_targets(s)
	targets := [ts[i] | some i, it in s.items; not _over(it.limit)]
	over := [it | some it in s.items; _over(it.limit)]
	max_msgs := [_item_max_msg(it) | some it in over]
	msgs := array.concat(array.concat(s.cand_msgs, max_msgs), s.edges)
}

# _step_targets: step s's targets as picked for this request's thinking.
_step_targets(s) := s.think if {
	_thinks
	s.think
}

else := s.nothink

_role_res := {"targets": targets, "tried": tried, "dropped": dropped} if {
	w := _ix.walks[_root]
	op := input.operation
	results := [_role_eval(s, op) | some s in w.steps]
	tried := array.concat([m | some r in results; some m in r.msgs], w.tail)
	dropped := [l | some r in results; some l in r.dropped]
	targets := _grouped(results, count(dropped))
}

# Roles with targets get group numbers in walk order. Targets come
# numbered for the case where no step loses targets to max_tokens; when
# some did, the ones whose group changed are rebuilt.
_grouped(results, 0) := [t | some r in results; some t in r.targets]

_grouped(results, n) := [_in_group(t, g) | some g, ts in groups; some t in ts] if {
	n > 0
	groups := [r.targets | some r in results; count(r.targets) > 0]
}

_in_group(t, g) := t if t.group == g

else := {"kind": t.kind, "name": t.name, "operation": t.operation, "role": t.role, "strategy": t.strategy, "group": g, "patch": t.patch} if t.patch

else := {"kind": t.kind, "name": t.name, "operation": t.operation, "role": t.role, "strategy": t.strategy, "group": g}

# ---------------------------------------------------------------- decision

_key_roles := input.key.roles if is_array(input.key.roles)

else := []

_key_allows if {
	some kr in _key_roles
	data.aliases[_norm(kr)] == _root
}

denials contains {"priority": 10, "status": 403, "code": "role_not_allowed", "reason": reason} if {
	count(_key_roles) > 0
	mode in {"service", "asset"}
	reason := concat("", ["key ", input.key.id, " may only use roles, not model ", input.model])
}

denials contains {"priority": 10, "status": 403, "code": "role_not_allowed", "reason": reason} if {
	count(_key_roles) > 0
	mode == "role"
	not _key_allows
	reason := concat("", ["key ", input.key.id, " may not use role ", _root])
}

denials contains {"priority": 20, "status": 400, "code": "max_tokens_exceeded", "reason": _max_msg(max(_res.dropped))} if {
	count(_res.dropped) > 0
	count(_res.targets) == 0
}

deny := {"status": x[1], "code": x[2], "reason": x[3]} if {
	count(denials) > 0
	x := sort([[d.priority, d.status, d.code, d.reason] | some d in denials])[0]
}

# The walk and the final targets, for rules operators add (the decision
# below does not use them).
walk := [s.role | some s in _ix.walks[_root].steps]

final_targets := [] if deny

else := _res.targets

strip_reasoning := true if _strips(final_targets)

else := false

_strips(ts) if {
	some t in ts
	t.patch.strip_reasoning == true
}

decision := {
	"schema_version": schema_version,
	"targets": [],
	"strip_reasoning": false,
	"tried": _res.tried,
	"deny": deny,
} if deny

else := {
	"schema_version": schema_version,
	"targets": _res.targets,
	"strip_reasoning": true,
	"tried": _res.tried,
} if _strips(_res.targets)

else := {
	"schema_version": schema_version,
	"targets": _res.targets,
	"strip_reasoning": false,
	"tried": _res.tried,
}
