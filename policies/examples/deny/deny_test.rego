package geniehive_example_test

_data := {
	"assets": {"m": {"family": "", "kinds": ["chat"], "thinking": false, "qwen3": false}},
	"models": {"m": ["m"]},
	"roles": {},
	"aliases": {},
	"asset_policies": {},
}

_in := {"operation": "chat", "model": "m", "model_key": "m", "max_tokens": 0, "stream": false, "body_bytes": 100, "key": {"id": "k", "scope": "client"}}

decide(over) := d if {
	d := data.geniehive.decision with input as object.union(_in, over)
		with data.assets as _data.assets
		with data.models as _data.models
		with data.roles as _data.roles
		with data.aliases as _data.aliases
		with data.asset_policies as _data.asset_policies
}

test_allowed if {
	d := decide({})
	not d.deny
	count(d.targets) == 1
}

test_large_body_denied if {
	d := decide({"body_bytes": 2000000})
	d.deny == {"status": 413, "code": "body_too_large", "reason": "request body over 1 MiB"}
	d.targets == []
}

test_batch_stream_denied if {
	d := decide({"stream": true, "key": {"id": "batch-7", "scope": "client"}})
	d.deny.code == "policy_denied"
}

test_lowest_priority_wins if {
	d := decide({"stream": true, "body_bytes": 2000000, "key": {"id": "batch-7", "scope": "client"}})
	d.deny.code == "body_too_large"
}

test_shipped_denials_come_first if {
	d := decide({"body_bytes": 2000000, "key": {"id": "batch-7", "scope": "client", "roles": ["writer"]}})
	d.deny.code == "role_not_allowed"
}

test_completions_api_denied if {
	d := decide({"api": "completions"})
	d.deny.reason == "the legacy completions API is disabled for this key"
}

test_completions_api_allowed_for_legacy_keys if {
	d := decide({"api": "completions", "key": {"id": "legacy-1", "scope": "client"}})
	not d.deny
}

test_messages_api_allowed if {
	d := decide({"api": "messages"})
	not d.deny
}
