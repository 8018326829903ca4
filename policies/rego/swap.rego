# GenieHive shipped swap policy (issue 14): which models the fleet loads
# and unloads.
#
# Entry point: data.geniehive.swap, evaluated by the swap controller (one
# edge at a time, about once a second) with input = policy.SwapInput:
#
#   now_ms, settings {min_residency_ms, idle_ms, cooldown_ms},
#   pinned [model], demand [{model, waiting}] (most wanted first),
#   services [{id, host, vram_total, vram_used, busy, cooldown_until_ms,
#              pending, models [{name, loaded, size, in_flight, idle_ms,
#              resident_ms}]}]
#
# Output: {"schema_version": 1, "actions": [{op, service, model, for,
# reason}]}, at most one per service; the controller checks each against
# the hard limits (VRAM budget, in-flight, pins, one command per node)
# before sending it, so a policy chooses but cannot break them.
#
# The shipped rule: for each model requests wait for and nobody has
# loaded, most wanted first — unless a swap for it is under way on a
# service (then only that service goes on with it) — pick a service that offers it, is not busy
# and not cooling down (or is already making room for it): one where it
# fits in free VRAM (load it), else one where unloading idle models makes
# it fit (unload the idlest first; the load follows once there is room).
# A model is unloaded only when it has no request in flight, is not
# pinned, has been resident at least min_residency_ms and idle at least
# idle_ms. A service with no VRAM figure (vram_total 0) is never chosen.
package geniehive

swap := {"schema_version": 1, "actions": _swap_actions}

_swap_pinned(m) if {
	some p in input.pinned
	p == m
}

_swap_loaded_somewhere(m) if {
	some s in input.services
	some x in s.models
	x.name == m
	x.loaded
}

_swap_evictable(x) if {
	x.loaded
	x.in_flight == 0
	not _swap_pinned(x.name)
	x.resident_ms >= input.settings.min_residency_ms
	x.idle_ms >= input.settings.idle_ms
}

# The service may act for m now: idle, and either already making room for
# m or free to start a new swap.
_swap_may_act(s, m) if {
	not s.busy
	s.pending == m
}

_swap_may_act(s, m) if {
	not s.busy
	s.pending == ""
	s.cooldown_until_ms <= input.now_ms
}

_swap_offer(s, m) := x if {
	some x in s.models
	x.name == m
	not x.loaded
}

_swap_free(s) := s.vram_total - s.vram_used

_swap_room(s) := sum([x.size | some x in s.models; _swap_evictable(x)])

# Cost of m on s: -1 continues the swap under way, 0 fits now, 1 needs
# unloads first.
_swap_cost(s, m, size) := -1 if {
	s.pending == m
} else := 0 if {
	size <= _swap_free(s)
} else := 1 if {
	size <= _swap_free(s) + _swap_room(s)
}

# A swap under way for m (a load in flight, or unloads making room)
# continues where it started; no second one starts elsewhere.
_swap_pending_somewhere(m) if {
	some s in input.services
	s.pending == m
}

_swap_eligible(s, m) if not _swap_pending_somewhere(m)

_swap_eligible(s, m) if s.pending == m

_swap_options(m) := sort([[c, s.id] |
	some s in input.services
	s.vram_total > 0
	_swap_eligible(s, m)
	x := _swap_offer(s, m)
	_swap_may_act(s, m)
	c := _swap_cost(s, m, x.size)
])

_swap_wanted := [p[1] | some p in sort([[0 - d.waiting, d.model] |
	some d in input.demand
	d.waiting > 0
	not _swap_loaded_somewhere(d.model)
])]

_swap_service(id) := s if {
	some s in input.services
	s.id == id
}

_swap_victim(s) := sort([[0 - x.idle_ms, x.name] | some x in s.models; _swap_evictable(x)])[0][1]

_swap_action(s, m) := {"op": "load", "service": s.id, "model": m, "reason": concat("", ["requests wait for ", m, "; it fits in the free VRAM of ", s.id])} if {
	x := _swap_offer(s, m)
	x.size <= _swap_free(s)
}

_swap_action(s, m) := {"op": "unload", "service": s.id, "model": v, "for": m, "reason": concat("", ["make room on ", s.id, " for ", m, ": ", v, " is the idlest model without requests"])} if {
	x := _swap_offer(s, m)
	x.size > _swap_free(s)
	v := _swap_victim(s)
}

_swap_actions := [a |
	some m in _swap_wanted
	opts := _swap_options(m)
	count(opts) > 0
	a := _swap_action(_swap_service(opts[0][1]), m)
]
