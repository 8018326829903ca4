# A small stand-in for the shipped policies (policies/rego), used by the
# wasm tests until / alongside the shared decision table.
package geniehive

import rego.v1

default decision := {"schema_version": 1, "targets": [], "strip_reasoning": false, "deny": {"status": 404, "code": "model_not_found", "reason": "no such model or role"}}

role_name := data.aliases[lower(input.model)]

role := data.roles[role_name]

denied if {
	some p in data.asset_policies
	p.max_tokens > 0
	input.max_tokens > p.max_tokens
}

deny_max := {"status": 400, "code": "max_tokens_exceeded", "reason": sprintf("max_tokens %d above limit", [input.max_tokens])} if denied

decision := {"schema_version": 1, "targets": [], "strip_reasoning": false, "deny": deny_max} if denied

else := {
	"schema_version": 1,
	"targets": [t |
		some i, c in role.candidates
		t := {"kind": "asset", "name": c, "operation": role.operation, "role": role.name, "group": 0, "strategy": object.get(role, "strategy", ""), "patch": patch(c)}
	],
	"strip_reasoning": object.get(role, ["request_policy", "strip_reasoning"], false),
	"tried": [concat("", ["role ", role.name])],
} if {
	role
}

else := {
	"schema_version": 1,
	"targets": [t |
		some a in data.models[input.model_key]
		t := {"kind": "asset", "name": a, "operation": input.operation, "group": 0, "patch": patch(a)}
	],
	"strip_reasoning": false,
} if {
	count(data.models[input.model_key]) > 0
}

patch(a) := p if {
	ap := data.asset_policies[a]
	p := {
		"defaults": object.get(ap, "defaults", {}),
		"overrides": object.get(ap, "overrides", {}),
		"disable_thinking": data.assets[a].qwen3,
	}
} else := {"disable_thinking": data.assets[a].qwen3} if {
	data.assets[a]
} else := null
