package geniehive_test

import data.geniehive

_swgib := 1073741824

_swm(name, loaded, size) := {"name": name, "loaded": loaded, "size": size, "in_flight": 0, "idle_ms": 600000, "resident_ms": 600000}

_swsvc(id, used, models) := {"id": id, "host": id, "vram_total": 4 * _swgib, "vram_used": used, "busy": false, "cooldown_until_ms": 0, "pending": "", "models": models}

_swin(services, demand) := {
	"schema_version": 1, "now_ms": 1000000,
	"settings": {"min_residency_ms": 60000, "idle_ms": 30000, "cooldown_ms": 10000},
	"pinned": ["p"], "demand": demand, "services": services,
}

test_swap_loads_where_it_fits if {
	inp := _swin(
		[
			_swsvc("a/o", 4 * _swgib, [_swm("x", true, 2 * _swgib), _swm("y", true, 2 * _swgib), _swm("w", false, 2 * _swgib)]),
			_swsvc("b/o", 2 * _swgib, [_swm("z", true, 2 * _swgib), _swm("w", false, 2 * _swgib)]),
		],
		[{"model": "w", "waiting": 3}],
	)
	geniehive.swap.actions == [{"op": "load", "service": "b/o", "model": "w", "reason": "requests wait for w; it fits in the free VRAM of b/o"}] with input as inp
}

test_swap_unloads_the_idlest_to_make_room if {
	x := object.union(_swm("x", true, 2 * _swgib), {"idle_ms": 40000})
	inp := _swin([_swsvc("a/o", 4 * _swgib, [x, _swm("y", true, 2 * _swgib), _swm("w", false, 2 * _swgib)])], [{"model": "w", "waiting": 1}])
	acts := geniehive.swap.actions with input as inp
	count(acts) == 1
	acts[0].op == "unload"
	acts[0].model == "y"
	acts[0]["for"] == "w"
}

test_swap_never_evicts_in_flight_pinned_or_young if {
	busy := object.union(_swm("x", true, 2 * _swgib), {"in_flight": 1})
	young := object.union(_swm("y", true, 1 * _swgib), {"resident_ms": 1000})
	inp := _swin([_swsvc("a/o", 4 * _swgib, [busy, young, _swm("p", true, 1 * _swgib), _swm("w", false, 1 * _swgib)])], [{"model": "w", "waiting": 5}])
	geniehive.swap.actions == [] with input as inp
}

test_swap_recently_used_is_not_idle if {
	recent := object.union(_swm("x", true, 4 * _swgib), {"idle_ms": 5000})
	inp := _swin([_swsvc("a/o", 4 * _swgib, [recent, _swm("w", false, 2 * _swgib)])], [{"model": "w", "waiting": 1}])
	geniehive.swap.actions == [] with input as inp
}

test_swap_busy_or_cooling_service_waits if {
	s := object.union(_swsvc("a/o", 0, [_swm("w", false, 1 * _swgib)]), {"busy": true})
	geniehive.swap.actions == [] with input as _swin([s], [{"model": "w", "waiting": 1}])
	c := object.union(_swsvc("a/o", 0, [_swm("w", false, 1 * _swgib)]), {"cooldown_until_ms": 2000000})
	geniehive.swap.actions == [] with input as _swin([c], [{"model": "w", "waiting": 1}])
	# ... unless it is making room for that very model.
	p := object.union(c, {"pending": "w"})
	acts := geniehive.swap.actions with input as _swin([p], [{"model": "w", "waiting": 1}])
	acts[0].op == "load"
}

test_swap_nothing_when_loaded_somewhere_or_no_budget if {
	inp := _swin([_swsvc("a/o", 2 * _swgib, [_swm("w", true, 2 * _swgib)]), _swsvc("b/o", 0, [_swm("w", false, 2 * _swgib)])], [{"model": "w", "waiting": 9}])
	geniehive.swap.actions == [] with input as inp
	nobudget := object.union(_swsvc("b/o", 0, [_swm("w", false, 2 * _swgib)]), {"vram_total": 0})
	geniehive.swap.actions == [] with input as _swin([nobudget], [{"model": "w", "waiting": 9}])
}

test_swap_most_wanted_first if {
	inp := _swin([_swsvc("a/o", 0, [_swm("u", false, 1 * _swgib), _swm("w", false, 1 * _swgib)])], [{"model": "u", "waiting": 1}, {"model": "w", "waiting": 4}])
	acts := geniehive.swap.actions with input as inp
	acts[0].model == "w"
}

test_swap_one_swap_per_model if {
	# A load of w is in flight on a/o (busy, pending w): b/o, with room,
	# must not load it too.
	a := object.union(_swsvc("a/o", 0, [_swm("w", false, 1 * _swgib)]), {"busy": true, "pending": "w"})
	b := _swsvc("b/o", 0, [_swm("w", false, 1 * _swgib)])
	geniehive.swap.actions == [] with input as _swin([a, b], [{"model": "w", "waiting": 2}])
}
