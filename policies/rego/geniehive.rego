# GenieHive shipped policy: role resolution and request policy.
#
# Entry point: data.geniehive.decision (a Decision document, schema v1).
# input.* is the JSON of policies.Input, data.* the JSON of policies.Data
# (see policies/README.md). The Go reference engine (policies.NewGo) makes
# exactly the same decisions; policies/policytest checks both against one
# table.
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

_req_max_tokens := object.get(input, "max_tokens", 0)

# ---------------------------------------------------------------- model key and mode

_has_model_key if {
	is_string(input.model_key)
	input.model_key != ""
}

model_key := input.model_key if _has_model_key

model_key := _norm(object.get(input, "model", "")) if not _has_model_key

default mode := "none"

mode := "service" if data.services[model_key]

mode := "asset" if {
	not data.services[model_key]
	data.models[model_key]
}

mode := "role" if {
	not data.services[model_key]
	not data.models[model_key]
	data.roles[data.aliases[model_key]]
}

# ---------------------------------------------------------------- request policy

# _limit is the smaller positive max_tokens of the two policies, 0 for none.
_limit(ap, rp) := l if {
	ls := [x | some x in [object.get(ap, "max_tokens", 0), object.get(rp, "max_tokens", 0)]; x > 0]
	count(ls) > 0
	l := min(ls)
}

else := 0

_exceeds(l) := true if {
	l > 0
	_req_max_tokens > l
}

else := false

_max_msg(l) := concat("", ["max_tokens ", format_int(_req_max_tokens, 10), " exceeds the limit ", format_int(l, 10)])

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

_disable_if(pt, ad, op) if {
	op == "chat"
	pt == false
	_capable(ad)
}

_disable_if(pt, ad, op) if {
	op == "chat"
	pt == null
	ad.qwen3 == true
	not input.thinking == true
}

_disable(pt, ad, op) := true if _disable_if(pt, ad, op)

else := false

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

# _patch merges the role policy rp over the asset policy ap for asset n:
# defaults and overrides deep-merged (object.union is recursive; arrays
# and scalars replace), system prompt and thinking from the role when set,
# strip_reasoning when either asks. Empty fields are left out.
_patch(ap, rp, n, op) := {k: v |
	fields := {
		"defaults": object.union(_obj(object.get(ap, "defaults", {})), _obj(object.get(rp, "defaults", {}))),
		"overrides": object.union(_obj(object.get(ap, "overrides", {})), _obj(object.get(rp, "overrides", {}))),
		"system_prompt": _prompt(ap, rp),
		"disable_thinking": _disable(_thinking(ap, rp), _asset_data(n), op),
		"strip_reasoning": _strip(ap, rp),
	}
	some k, v in fields
	_keep(v)
}

# _item evaluates asset n as a target of role (role {} and rn "" for a
# direct match).
_item(n, role, rn, op) := {"name": n, "limit": l, "exceeded": _exceeds(l), "target": t} if {
	ap := _asset_pol(n)
	rp := _role_pol(role)
	l := _limit(ap, rp)
	t0 := {"kind": "asset", "name": n, "operation": op, "role": rn, "strategy": object.get(role, "strategy", "")}
	p := _patch(ap, rp, n, op)
	t := _with_patch(t0, p)
}

_with_patch(t, p) := object.union(t, {"patch": p}) if count(p) > 0

else := t

# ---------------------------------------------------------------- service

_service_targets := [t |
	mode == "service"
	s := data.services[model_key]
	s.kind == input.operation
	t := {"kind": "service", "name": s.id, "operation": s.kind, "group": 0}
]

_service_tried := [m |
	mode == "service"
	s := data.services[model_key]
	s.kind != input.operation
	m := concat("", ["service ", s.id, ": kind ", s.kind, ", not ", input.operation])
]

# ---------------------------------------------------------------- asset

_direct_item(n) := {"msg": concat("", ["asset ", n, ": not of kind ", input.operation])} if not _has_kind(n, input.operation)

_direct_item(n) := _item(n, {}, "", input.operation) if _has_kind(n, input.operation)

_direct := [x |
	mode == "asset"
	some n in data.models[model_key]
	x := _direct_item(n)
]

_direct_targets := [object.union(x.target, {"group": 0}) |
	some x in _direct
	not x.msg
	x.exceeded == false
]

_direct_msg(x) := x.msg if x.msg

else := concat("", ["asset ", x.name, ": ", _max_msg(x.limit)])

_direct_tried := [m |
	some x in _direct
	_direct_failed(x)
	m := _direct_msg(x)
]

_direct_failed(x) if x.msg

_direct_failed(x) if x.exceeded == true

_direct_dropped := [x.limit | some x in _direct; x.exceeded == true]

# ---------------------------------------------------------------- role

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

_role_eval(rn) := {"targets": [], "msgs": [concat("", ["role ", rn, ": candidates not of kind ", input.operation])], "dropped": []} if {
	_role_op(data.roles[rn]) != input.operation
}

_role_eval(rn) := {"targets": targets, "msgs": msgs, "dropped": dropped} if {
	role := data.roles[rn]
	op := _role_op(role)
	op == input.operation
	prefix := concat("", ["role ", rn, ": "])
	cands := _cands(role, op)
	items := [_item(n, role, rn, op) | some n in cands]
	targets := [it.target | some it in items; it.exceeded == false]
	cand_msgs := [m | some c in _arr(role.candidates); m := _cand_msg(prefix, c, op)]
	none_msgs := [concat("", [prefix, "no candidate of kind ", op]) | count(cands) == 0]
	max_msgs := [concat("", [prefix, "asset ", it.name, ": ", _max_msg(it.limit)]) | some it in items; it.exceeded == true]
	msgs := array.concat(array.concat(cand_msgs, none_msgs), max_msgs)
	dropped := [it.limit | some it in items; it.exceeded == true]
}

# Fallback walk: breadth first, level by level, each role once, at most
# max_fallback_depth levels below the requested role. Rego has no
# recursion, so the levels are an explicit chain of steps.
_root := data.aliases[model_key] if mode == "role"

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

_s1 := _step([_root], {_root})

_s2 := _step(_s1.level, _s1.seen)

_s3 := _step(_s2.level, _s2.seen)

_s4 := _step(_s3.level, _s3.seen)

_s5 := _step(_s4.level, _s4.seen)

_s6 := _step(_s5.level, _s5.seen)

_s7 := _step(_s6.level, _s6.seen)

_s8 := _step(_s7.level, _s7.seen)

# _s9 holds the edges leaving level 8; its level is not walked.
_s9 := _step(_s8.level, _s8.seen)

walk := array.concat(
	array.concat(array.concat([_root], _s1.level), array.concat(_s2.level, _s3.level)),
	array.concat(array.concat(_s4.level, _s5.level), array.concat(array.concat(_s6.level, _s7.level), _s8.level)),
)

_edge_msgs := array.concat(
	array.concat(array.concat(_s1.msgs, _s2.msgs), array.concat(_s3.msgs, _s4.msgs)),
	array.concat(array.concat(_s5.msgs, _s6.msgs), array.concat(array.concat(_s7.msgs, _s8.msgs), _s9.msgs)),
)

_role_results := [r | some rn in walk; r := _role_eval(rn)]

_nonempty := [i | some i; count(_role_results[i].targets) > 0]

_role_targets := [object.union(t, {"group": g}) |
	some g
	i := _nonempty[g]
	some t in _role_results[i].targets
]

_role_tried := array.concat(
	[m |
		some i
		rn := walk[i]
		own := _role_results[i].msgs
		edge := [x.msg | some x in _edge_msgs; x.from == rn]
		some m in array.concat(own, edge)
	],
	["fallback walk stopped at depth 8" | count(_s9.level) > 0],
)

default _role_dropped := []

_role_dropped := [l | some r in _role_results; some l in r.dropped]

# ---------------------------------------------------------------- decision

_targets := _service_targets if mode == "service"

_targets := _direct_targets if mode == "asset"

_targets := _role_targets if mode == "role"

_targets := [] if mode == "none"

_tried := _service_tried if mode == "service"

_tried := _direct_tried if mode == "asset"

_tried := _role_tried if mode == "role"

_tried := [concat("", ["no asset, service or role named ", object.get(input, "model", "")])] if mode == "none"

_dropped := array.concat(_direct_dropped, _role_dropped)

_key_roles := _arr(object.get(object.get(input, "key", {}), "roles", []))

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

denials contains {"priority": 20, "status": 400, "code": "max_tokens_exceeded", "reason": _max_msg(max(_dropped))} if {
	count(_targets) == 0
	count(_dropped) > 0
}

_deny_sorted := sort([[d.priority, d.status, d.code, d.reason] | some d in denials])

deny := {"status": x[1], "code": x[2], "reason": x[3]} if {
	count(_deny_sorted) > 0
	x := _deny_sorted[0]
}

final_targets := [] if deny

else := _targets

_strip_any if {
	some t in final_targets
	t.patch.strip_reasoning == true
}

strip_reasoning := true if _strip_any

else := false

_base := {
	"schema_version": schema_version,
	"targets": final_targets,
	"strip_reasoning": strip_reasoning,
	"tried": _tried,
}

decision := object.union(_base, {"deny": deny}) if deny

else := _base
