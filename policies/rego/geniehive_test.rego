# Unit tests of the shipped policy. Run: geniehive policy test policies/rego
# (go test ./policies/... runs them too).
package geniehive_test

_assets := {
	"qwen3:8b": {"family": "qwen3", "kinds": ["chat"], "thinking": false, "qwen3": true},
	"llama3:8b": {"family": "llama", "kinds": ["chat"], "thinking": false, "qwen3": false},
	"llama3:70b": {"family": "llama", "kinds": ["chat"], "thinking": false, "qwen3": false},
	"r1:8b": {"family": "qwen2", "kinds": ["chat"], "thinking": true, "qwen3": false},
	"embed": {"family": "bert", "kinds": ["embeddings"], "thinking": false, "qwen3": false},
}

_models := {
	"qwen3:8b": ["qwen3:8b"], "qwen3": ["qwen3:8b"],
	"llama3:8b": ["llama3:8b"], "llama3:70b": ["llama3:70b"], "llama3": ["llama3:70b", "llama3:8b"],
	"r1:8b": ["r1:8b"], "embed": ["embed"],
}

# The services a request may name: the edge looks model_key up and passes
# the match as input.service (not in data: it would grow with the fleet).
_services := {"h1/ollama": {"id": "h1/ollama", "kind": "chat"}}

_roles := {
	"coder": {
		"name": "coder", "operation": "chat", "candidates": ["qwen3:8b", "nope", "embed"],
		"fallback_roles": ["general"],
		"request_policy": {"defaults": {"temperature": 0.2, "options": {"num_ctx": 8192, "seed": 1}}, "system_prompt": {"mode": "prepend", "text": "Code."}, "max_tokens": 4096},
	},
	"general": {"name": "general", "operation": "chat", "preferred_families": ["llama"], "fallback_roles": ["coder", "ghost"]},
	"think": {"name": "think", "operation": "chat", "candidates": ["r1:8b"], "request_policy": {"thinking": false, "strip_reasoning": true}},
	"embedder": {"name": "embedder", "operation": "embeddings", "candidates": ["embed"]},
}

_aliases := {"coder": "coder", "general": "general", "default": "general", "think": "think", "embedder": "embedder"}

_asset_policies := {"llama3:70b": {
	"defaults": {"options": {"num_ctx": 4096, "top_p": 0.9}},
	"overrides": {"options": {"top_k": 40}, "stop": ["</s>"]},
	"system_prompt": {"mode": "append", "text": "Brief."},
	"max_tokens": 2048,
}}

_in_base(model) := {"schema_version": 1, "operation": "chat", "model": model, "model_key": lower(model), "max_tokens": 0, "key": {"id": "k", "scope": "client"}}

_in(model) := object.union(_in_base(model), {"service": _services[lower(model)]}) if _services[lower(model)]

else := _in_base(model)

decide(inp) := d if {
	d := data.geniehive.decision with input as inp
		with data.assets as _assets
		with data.models as _models
		with data.roles as _roles
		with data.aliases as _aliases
		with data.asset_policies as _asset_policies
}

# decide_precomputed evaluates like the engines do: `derived` once for the
# data, handed back as data.derived.
decide_precomputed(inp) := d if {
	ix := data.geniehive.derived with data.assets as _assets
		with data.models as _models
		with data.roles as _roles
		with data.aliases as _aliases
		with data.asset_policies as _asset_policies
	d := data.geniehive.decision with input as inp
		with data.derived as ix
		with data.assets as _assets
		with data.models as _models
		with data.roles as _roles
		with data.aliases as _aliases
		with data.asset_policies as _asset_policies
}

_names(d) := [concat("@", [t.name, format_int(t.group, 10)]) | some t in d.targets]

test_direct_asset_qwen3_thinking_off if {
	d := decide(_in("qwen3:8b"))
	_names(d) == ["qwen3:8b@0"]
	d.targets[0].role == ""
	d.targets[0].patch == {"disable_thinking": true}
	d.tried == []
}

test_request_asks_for_thinking if {
	d := decide(object.union(_in("qwen3"), {"thinking": true}))
	_names(d) == ["qwen3:8b@0"]
	not d.targets[0].patch
}

test_model_key_computed_when_missing if {
	d := decide(object.remove(_in("  QWEN3:latest "), ["model_key"]))
	_names(d) == ["qwen3:8b@0"]
}

test_base_name_matches_all_tags if {
	d := decide(_in("llama3"))
	_names(d) == ["llama3:70b@0", "llama3:8b@0"]
}

test_service_id if {
	d := decide(_in("H1/Ollama"))
	d.targets == [{"kind": "service", "name": "h1/ollama", "operation": "chat", "group": 0}]
}

test_service_other_kind if {
	d := decide(object.union(_in("h1/ollama"), {"operation": "embeddings"}))
	d.targets == []
	d.tried == ["service h1/ollama: kind chat, not embeddings"]
}

test_role_candidates_then_fallback_families if {
	d := decide(_in("coder"))
	_names(d) == ["qwen3:8b@0", "llama3:70b@1", "llama3:8b@1"]
	d.targets[0].role == "coder"
	d.targets[1].role == "general"
	d.tried == [
		"role coder: candidate nope is not a live asset",
		"role coder: candidate embed not of kind chat",
		"role general: fallback coder cut (cycle or already tried)",
		"role general: fallback ghost is not a role",
	]
}

test_alias_and_cycle_cut if {
	d := decide(_in("default"))
	_names(d) == ["llama3:70b@0", "llama3:8b@0", "qwen3:8b@1"]
	"role coder: fallback general cut (cycle or already tried)" in d.tried
}

test_kind_mismatch if {
	d := decide(object.union(_in("coder"), {"operation": "embeddings"}))
	d.targets == []
	d.tried[0] == "role coder: candidates not of kind embeddings"
	d.tried[1] == "role general: candidates not of kind embeddings"
}

test_embeddings_role if {
	d := decide(object.union(_in("embedder"), {"operation": "embeddings"}))
	_names(d) == ["embed@0"]
	not d.targets[0].patch
}

test_nothing_found if {
	d := decide(_in("gpt-4o"))
	d.targets == []
	d.tried == ["no asset, service or role named gpt-4o"]
	not d.deny
}

test_role_defaults_and_prompt if {
	d := decide(_in("coder"))
	p := d.targets[0].patch
	p.defaults == {"temperature": 0.2, "options": {"num_ctx": 8192, "seed": 1}}
	p.system_prompt == {"mode": "prepend", "text": "Code."}
	p.disable_thinking == true
	not p.overrides
}

test_deep_merge_role_over_asset if {
	d := decide(_in("coder"))
	p := d.targets[1].patch # llama3:70b via general: asset policy only
	p.defaults == {"options": {"num_ctx": 4096, "top_p": 0.9}}
	p.overrides == {"options": {"top_k": 40}, "stop": ["</s>"]}
	p.system_prompt.mode == "append"

	# coder laid over the same asset: objects merge key by key, the role's
	# prompt wins.
	roles := object.union(_roles, {"coder": object.union(_roles.coder, {"candidates": ["llama3:70b"]})})
	d2 := data.geniehive.decision with input as _in("coder")
		with data.assets as _assets
		with data.models as _models
		with data.roles as roles
		with data.aliases as _aliases
		with data.asset_policies as _asset_policies
	q := d2.targets[0].patch
	q.defaults == {"temperature": 0.2, "options": {"num_ctx": 8192, "top_p": 0.9, "seed": 1}}
	q.system_prompt == {"mode": "prepend", "text": "Code."}
}

test_policy_thinking_false_forces_off_and_strips if {
	d := decide(object.union(_in("think"), {"thinking": true}))
	d.targets[0].patch == {"disable_thinking": true, "strip_reasoning": true}
	d.strip_reasoning == true
}

test_role_scope_denied if {
	d := decide(object.union(_in("coder"), {"key": {"id": "k1", "scope": "client", "roles": ["default"]}}))
	d.targets == []
	d.deny == {"status": 403, "code": "role_not_allowed", "reason": "key k1 may not use role coder"}
}

test_role_scope_allowed_by_alias if {
	d := decide(object.union(_in("general"), {"key": {"id": "k1", "scope": "client", "roles": ["Default"]}}))
	not d.deny
	count(d.targets) == 3
}

test_role_scope_blocks_direct_models if {
	d := decide(object.union(_in("qwen3:8b"), {"key": {"id": "k1", "scope": "client", "roles": ["general"]}}))
	d.deny.code == "role_not_allowed"
}

test_max_tokens_ceiling if {
	d := decide(object.union(_in("coder"), {"max_tokens": 5000}))
	_names(d) == ["llama3:8b@0"]
	"role coder: asset qwen3:8b: max_tokens 5000 exceeds the limit 4096" in d.tried
	"role general: asset llama3:70b: max_tokens 5000 exceeds the limit 2048" in d.tried
	not d.deny
}

test_max_tokens_denied if {
	d := decide(object.union(_in("llama3:70b"), {"max_tokens": 3000}))
	d.targets == []
	d.deny == {"status": 400, "code": "max_tokens_exceeded", "reason": "max_tokens 3000 exceeds the limit 2048"}
}

test_precomputed_index_gives_the_same_decisions if {
	inputs := [
		_in("coder"), _in("default"), _in("qwen3:8b"), _in("llama3"), _in("H1/Ollama"), _in("gpt-4o"),
		object.union(_in("think"), {"thinking": true}),
		object.union(_in("coder"), {"max_tokens": 5000}),
		object.union(_in("coder"), {"operation": "embeddings"}),
		object.union(_in("coder"), {"key": {"id": "k1", "scope": "client", "roles": ["default"]}}),
	]
	every inp in inputs {
		decide_precomputed(inp) == decide(inp)
	}
}

test_index_is_data_only if {
	ix := data.geniehive.derived with input as {"model": "coder"}
		with data.assets as _assets
		with data.models as _models
		with data.roles as _roles
		with data.aliases as _aliases
		with data.asset_policies as _asset_policies
	[s.role | some s in ix.walks.coder.steps] == ["coder", "general"]
	ix.walks.coder.steps[1].edges == ["role general: fallback coder cut (cycle or already tried)", "role general: fallback ghost is not a role"]
	[t.name | some t in ix.walks.general.steps[0].nothink] == ["llama3:70b", "llama3:8b"]
	[t.group | some t in ix.walks.coder.steps[1].nothink] == [1, 1]
	ix.walks.coder.steps[0].nothink[0].patch.disable_thinking == true
	not ix.walks.coder.steps[0].think[0].patch.disable_thinking
	not ix.walks.general.steps[0].think
	ix.assets["qwen3:8b"].chat.mode == "default"
	ix.assets["qwen3:8b"].chat.off.patch == {"disable_thinking": true}
}
