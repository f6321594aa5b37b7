# Tests for velocity.rego. The facts are written here as tss-gate writes
# them (rego/README.md, "Spending limits (velocity)"); each test asserts
# only the velocity codes and messages, so the other keysign rules (their
# own tests) cannot make these fail or pass.
package tss.keysign_test

# An amount limit, exceeded: 49000 used + 2000 now > 50000.
v_amount_fact := {
	"limit": "eth_usdt_wallet_24h",
	"window": "24h", "window_ms": 86400000,
	"since_ms": 1764000000000,
	"group": {"wallet": "w-1", "token": "ETH_USDT"},
	"group_key": "wallet=w-1,token=ETH_USDT",
	"token": "ETH_USDT",
	"used_amount": "49000", "used_count": 7,
	"amount": "2000", "count": 1,
	"total_amount": "51000", "total_count": 8,
	"max_amount": "50000", "max_count": null,
	"amount_exceeded": true, "count_exceeded": false, "exceeded": true,
	"utilization": 1.02,
}

# A count limit (no token, no amounts, as the server writes them), within.
v_count_fact := {
	"limit": "keysign_wallet_1h",
	"window": "1h", "window_ms": 3600000,
	"since_ms": 1764086400000,
	"group": {"wallet": "w-1"},
	"group_key": "wallet=w-1",
	"token": null,
	"used_amount": null, "used_count": 7,
	"amount": null, "count": 1,
	"total_amount": null, "total_count": 8,
	"max_amount": null, "max_count": 200,
	"amount_exceeded": false, "count_exceeded": false, "exceeded": false,
	"utilization": 0.04,
}

# v_within(total): the amount fact with this total, within the maximum.
v_within(used, amount, total) := object.union(v_amount_fact, {
	"used_amount": used, "amount": amount, "total_amount": total,
	"amount_exceeded": false, "exceeded": false,
})

# A KEYSIGN carrying these facts (its own fields pass every other rule).
v_req(velocity) := object.union(req({}), {"velocity": velocity})

v_codes(inp) := c if {
	c := {d.code | some d in data.tss.keysign.deny; startswith(d.code, "keysign.velocity_")} with input as inp
		with data.keysign as td
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
}

v_msgs(inp) := m if {
	m := {d.msg | some d in data.tss.keysign.deny; startswith(d.code, "keysign.velocity_")} with input as inp
		with data.keysign as td
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
}

# --- no facts, facts within ---------------------------------------------------------

test_velocity_absent_or_empty_approves if {
	v_codes(req({})) == set()
	v_codes(v_req({})) == set()
}

test_velocity_within_limits_approves if {
	v_codes(v_req({"eth_usdt_wallet_24h": [v_within("30000", "2000", "32000")]})) == set()
	v_codes(v_req({"keysign_wallet_1h": [v_count_fact]})) == set()
	v_codes(v_req({"eth_usdt_wallet_24h": [v_within("0", "2000", "2000")], "keysign_wallet_1h": [v_count_fact]})) == set()
}

# The whole decision: facts within their limits change nothing, facts over
# them reject for that reason only. Compared with the same request without
# facts rather than with "approved", so a rule added later cannot make this
# fail.
test_velocity_in_the_decision if {
	plain := data.tss.decision with input as req({})
		with data.keysign as td
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	ok := data.tss.decision with input as v_req({"keysign_wallet_1h": [v_count_fact]})
		with data.keysign as td
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	ok == plain
	over := data.tss.decision with input as v_req({"eth_usdt_wallet_24h": [v_amount_fact]})
		with data.keysign as td
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	over.allow == false
	{c | some c in over.codes} == {c | some c in plain.codes} | {"keysign.velocity_exceeded"}
}

# --- amount limits -------------------------------------------------------------------

test_velocity_amount_exceeded_message if {
	v_msgs(v_req({"eth_usdt_wallet_24h": [v_amount_fact]})) == {"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): 49000 used in the last 24h + 2000 now exceeds the maximum 50000"}
	v_codes(v_req({"eth_usdt_wallet_24h": [v_amount_fact]})) == {"keysign.velocity_exceeded"}
}

test_velocity_first_request_over_the_maximum if {
	f := object.union(v_amount_fact, {"used_amount": "0", "used_count": 0, "amount": "60000", "total_amount": "60000", "total_count": 1})
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): 0 used in the last 24h + 60000 now exceeds the maximum 50000"}
}

# Reaching the maximum exactly is allowed; a millionth more is not.
test_velocity_boundary_total_equal_to_max_approves if {
	v_codes(v_req({"eth_usdt_wallet_24h": [v_within("48000", "2000", "50000")]})) == set()
	v_codes(v_req({"eth_usdt_wallet_24h": [v_within("48000", "2000.000", "50000.000")]})) == set()
	v_codes(v_req({"eth_usdt_wallet_24h": [v_within("49999.999999", "0.000001", "50000")]})) == set()
}

test_velocity_boundary_one_millionth_over_denies if {
	f := object.union(v_amount_fact, {"used_amount": "48000", "amount": "2000.000001", "total_amount": "50000.000001"})
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): 48000 used in the last 24h + 2000.000001 now exceeds the maximum 50000"}
}

# Amounts beyond 2^53 compare exactly.
test_velocity_big_amounts_compare_exactly if {
	big := {"used_amount": "9007199254740991", "amount": "1", "total_amount": "9007199254740992", "max_amount": "9007199254740992"}
	v_codes(v_req({"eth_usdt_wallet_24h": [object.union(v_within("0", "0", "0"), big)]})) == set()
	over := object.union(v_amount_fact, object.union(big, {"amount": "2", "total_amount": "9007199254740993"}))
	v_codes(v_req({"eth_usdt_wallet_24h": [over]})) == {"keysign.velocity_exceeded"}
}

# The server's flags decide (it computes them exactly, in decimal): the
# rules do not re-derive them from the amounts.
test_velocity_flags_decide if {
	over := object.union(v_within("48000", "2000", "50000"), {"amount_exceeded": true, "exceeded": true})
	v_codes(v_req({"eth_usdt_wallet_24h": [over]})) == {"keysign.velocity_exceeded"}
	v_codes(v_req({"eth_usdt_wallet_24h": [v_within("48000", "2000", "50000")]})) == set()
}

# `exceeded` alone (neither sub-flag, numbers within) still denies.
test_velocity_exceeded_flag_alone_denies if {
	f := object.union(v_within("100", "1", "101"), {"exceeded": true})
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT) is exceeded in the last 24h (used amount 100, used count 7; max_amount 50000, max_count null)"}
}

# --- amount unknown ------------------------------------------------------------------

test_velocity_amount_unknown_denies if {
	# As the server writes it: no amount, no total, flagged exceeded.
	f := object.union(v_amount_fact, {"amount": null, "total_amount": null})
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): the amount of this request cannot be read, so the maximum 50000 in the last 24h cannot be checked"}

	# Whatever the flags say.
	g := object.union(f, {"amount_exceeded": false, "exceeded": false})
	v_codes(v_req({"eth_usdt_wallet_24h": [g]})) == {"keysign.velocity_amount_unknown"}

	# No amount field at all counts as unknown.
	v_codes(v_req({"eth_usdt_wallet_24h": [json.remove(g, ["amount"])]})) == {"keysign.velocity_amount_unknown"}

	# The count maximum passed as well: both reasons.
	h := object.union(f, {"max_count": 8, "total_count": 9, "count_exceeded": true})
	v_codes(v_req({"eth_usdt_wallet_24h": [h]})) == {"keysign.velocity_amount_unknown", "keysign.velocity_exceeded"}
}

# The server could not determine the group: it says why in `error`.
test_velocity_group_unknown_denies if {
	f := object.union(v_amount_fact, {
		"group": {"wallet": "", "token": "ETH_USDT"}, "group_key": "wallet=,token=ETH_USDT",
		"used_amount": "0", "used_count": 0, "amount": null, "total_amount": null, "total_count": 1,
		"error": "the request names no `wallet`",
	})
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {"spending limit `eth_usdt_wallet_24h`: the request names no `wallet`, so this request cannot be counted against it"}
	v_codes(v_req({"eth_usdt_wallet_24h": [object.union(f, {"amount": "2000", "total_amount": "2000", "exceeded": false, "amount_exceeded": false})]})) == {"keysign.velocity_group_unknown"}
	c := object.union(v_count_fact, {"error": "a destination output has no usable address", "exceeded": true})
	v_codes(v_req({"keysign_wallet_1h": [c]})) == {"keysign.velocity_group_unknown"}

	# `error: null` is no error.
	v_codes(v_req({"keysign_wallet_1h": [object.union(v_count_fact, {"error": null})]})) == set()
}

test_velocity_unknown_amount_is_fine_for_a_count_limit if {
	v_codes(v_req({"keysign_wallet_1h": [v_count_fact]})) == set()
}

# --- count limits --------------------------------------------------------------------

test_velocity_count_exceeded_message if {
	f := object.union(v_count_fact, {"used_count": 200, "total_count": 201, "count_exceeded": true, "exceeded": true, "utilization": 1.005})
	v_msgs(v_req({"keysign_wallet_1h": [f]})) == {"spending limit `keysign_wallet_1h` (wallet=w-1): 201 requests in the last 1h exceed the maximum 200"}
}

test_velocity_count_boundary if {
	at := object.union(v_count_fact, {"used_count": 199, "total_count": 200})
	v_codes(v_req({"keysign_wallet_1h": [at]})) == set()
	over := object.union(v_count_fact, {"used_count": 200, "total_count": 201, "count_exceeded": true, "exceeded": true})
	v_codes(v_req({"keysign_wallet_1h": [over]})) == {"keysign.velocity_exceeded"}
}

# A limit with both maxima: each passed one is a reason.
test_velocity_amount_and_count_both_exceeded if {
	f := object.union(v_amount_fact, {"max_count": 8, "total_count": 9, "count_exceeded": true})
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {
		"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): 49000 used in the last 24h + 2000 now exceeds the maximum 50000",
		"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): 9 requests in the last 24h exceed the maximum 8",
	}
	only_count := object.union(f, {"total_amount": "100", "amount_exceeded": false})
	v_msgs(v_req({"eth_usdt_wallet_24h": [only_count]})) == {"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): 9 requests in the last 24h exceed the maximum 8"}
}

# --- several limits and groups ---------------------------------------------------------

test_velocity_two_limits_one_exceeded if {
	v := {"eth_usdt_wallet_24h": [v_amount_fact], "keysign_wallet_1h": [v_count_fact]}
	v_msgs(v_req(v)) == {"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): 49000 used in the last 24h + 2000 now exceeds the maximum 50000"}
	w := {"eth_usdt_wallet_24h": [v_within("1", "1", "2")], "keysign_wallet_1h": [object.union(v_count_fact, {"total_count": 201, "count_exceeded": true, "exceeded": true})]}
	v_msgs(v_req(w)) == {"spending limit `keysign_wallet_1h` (wallet=w-1): 201 requests in the last 1h exceed the maximum 200"}
}

# A limit grouped by destination has one fact per address the transaction
# pays; only the address over its maximum is named.
test_velocity_per_destination_groups if {
	base := object.union(v_amount_fact, {"limit": "usdt_destination_7d", "window": "7d", "max_amount": "100000"})
	a := object.union(base, {"group_key": "destination=0xaaaa,token=ETH_USDT", "used_amount": "1000", "amount": "500", "total_amount": "1500", "amount_exceeded": false, "exceeded": false})
	b := object.union(base, {"group_key": "destination=0xbbbb,token=ETH_USDT", "used_amount": "99999", "amount": "1.5", "total_amount": "100000.5"})
	v_msgs(v_req({"usdt_destination_7d": [a, b]})) == {"spending limit `usdt_destination_7d` (destination=0xbbbb,token=ETH_USDT): 99999 used in the last 7d + 1.5 now exceeds the maximum 100000"}
	v_codes(v_req({"usdt_destination_7d": [a]})) == set()
}

# A group key holds request text (a destination address): it is shown with
# its JSON quoting when it could fake the message's own.
test_velocity_group_key_cannot_fake_the_message if {
	f := object.union(v_amount_fact, {"group_key": "destination=0xa`) is fine; `x"})
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {"spending limit `eth_usdt_wallet_24h` (\"destination=0xa`) is fine; `x\"): 49000 used in the last 24h + 2000 now exceeds the maximum 50000"}
}

# --- trust: only input.velocity counts ---------------------------------------------------

# Facts smuggled into the request (extra_info, request_detail) are not
# read: the request can neither add nor soften a fact.
test_velocity_request_fields_are_not_facts if {
	in_extra := object.union(req({"velocity": {"eth_usdt_wallet_24h": [v_amount_fact]}}), {"detail": {"velocity": {"eth_usdt_wallet_24h": [v_amount_fact]}}})
	v_codes(in_extra) == set()
	softened := object.union(v_req({"eth_usdt_wallet_24h": [v_amount_fact]}), {"extra": {"velocity": {}}})
	v_codes(softened) == {"keysign.velocity_exceeded"}
}

# --- malformed facts (fail closed) -------------------------------------------------------

test_velocity_malformed_document_denies if {
	v_msgs(object.union(req({}), {"velocity": null})) == {"input.velocity is `null`, not an object of velocity facts: no spending limit can be checked (fail closed)"}
	v_codes(object.union(req({}), {"velocity": [v_amount_fact]})) == {"keysign.velocity_fact_malformed"}
	v_msgs(v_req({"eth_usdt_wallet_24h": v_amount_fact})) == {sprintf("input.velocity of limit `eth_usdt_wallet_24h` is `%s`, not a non-empty list of facts: the limit cannot be checked (fail closed)", [json.marshal(v_amount_fact)])}
	v_msgs(v_req({"eth_usdt_wallet_24h": []})) == {"input.velocity of limit `eth_usdt_wallet_24h` is `[]`, not a non-empty list of facts: the limit cannot be checked (fail closed)"}
}

test_velocity_fact_not_an_object_denies if {
	v_msgs(v_req({"eth_usdt_wallet_24h": ["exceeded"]})) == {"velocity fact #0 of limit `eth_usdt_wallet_24h` is `exceeded`, not an object: the limit cannot be checked (fail closed)"}
	v_codes(v_req({"eth_usdt_wallet_24h": [v_within("0", "1", "1"), null]})) == {"keysign.velocity_fact_malformed"}
}

test_velocity_flags_must_be_booleans if {
	f := object.union(v_amount_fact, {"exceeded": "true"})
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {
		"velocity fact #0 of limit `eth_usdt_wallet_24h` has exceeded `\"true\"`, not a boolean: the limit cannot be checked (fail closed)",
		"spending limit `eth_usdt_wallet_24h` (wallet=w-1,token=ETH_USDT): 49000 used in the last 24h + 2000 now exceeds the maximum 50000",
	}

	# Within by the numbers, but the flag cannot be read: denied.
	g := object.union(v_within("1", "1", "2"), {"exceeded": 0})
	v_codes(v_req({"eth_usdt_wallet_24h": [g]})) == {"keysign.velocity_fact_malformed"}
	h := json.remove(v_within("1", "1", "2"), ["count_exceeded"])
	v_msgs(v_req({"eth_usdt_wallet_24h": [h]})) == {"velocity fact #0 of limit `eth_usdt_wallet_24h` has count_exceeded `<missing>`, not a boolean: the limit cannot be checked (fail closed)"}
}

test_velocity_fact_filed_under_another_limit_denies if {
	v_msgs(v_req({"keysign_wallet_1h": [object.union(v_count_fact, {"limit": "other"})]})) == {"velocity fact #0 of limit `keysign_wallet_1h` names limit `other`: the limit cannot be checked (fail closed)"}
	v_codes(v_req({"keysign_wallet_1h": [v_count_fact, json.remove(v_count_fact, ["limit"])]})) == {"keysign.velocity_fact_malformed"}
}

# A missing message field is shown as such; the denial still fires.
test_velocity_message_fields_missing_still_deny if {
	f := json.remove(v_amount_fact, ["group_key"])
	v_msgs(v_req({"eth_usdt_wallet_24h": [f]})) == {"spending limit `eth_usdt_wallet_24h` (<missing>): 49000 used in the last 24h + 2000 now exceeds the maximum 50000"}
}

# The shipped denials look only at velocity_suspects, so every way a fact
# can fail to be plainly within its limit must make it one; a fact that is
# within is skipped (and then fires no denial, checked above).
v_suspects(inp) := s if {
	s := data.tss.keysign.velocity_suspects with input as inp
}

test_velocity_suspects_are_every_fact_not_plainly_within if {
	within := v_within("1", "1", "2")
	v_suspects(v_req({"eth_usdt_wallet_24h": [within], "keysign_wallet_1h": [v_count_fact]})) == set()
	every change in [
		{"exceeded": true},
		{"amount_exceeded": true},
		{"count_exceeded": true},
		{"exceeded": "false"},
		{"amount_exceeded": 0},
		{"count_exceeded": null},
		{"error": "the request names no wallet"},
		{"limit": "keysign_wallet_1h"},
		{"amount": null},
	] {
		count(v_suspects(v_req({"eth_usdt_wallet_24h": [object.union(within, change)]}))) == 1
	}
	every field in ["limit", "exceeded", "amount_exceeded", "count_exceeded", "amount"] {
		count(v_suspects(v_req({"eth_usdt_wallet_24h": [json.remove(within, [field])]}))) == 1
	}
	count(v_suspects(v_req({"eth_usdt_wallet_24h": [within, "within"]}))) == 1
}

# velocity_ok guards every velocity denial, so it must fail for every
# input.velocity that some denial would fire on: each fact that is a
# suspect, and each value of the wrong shape.
v_ok(inp) if data.tss.keysign.velocity_ok with input as inp

test_velocity_ok_fails_wherever_a_denial_could_fire if {
	within := v_within("1", "1", "2")
	v_ok(v_req({"eth_usdt_wallet_24h": [within], "keysign_wallet_1h": [v_count_fact]}))
	v_ok(v_req({}))
	every change in [
		{"exceeded": true},
		{"amount_exceeded": 0},
		{"count_exceeded": null},
		{"error": "the request names no wallet"},
		{"limit": "keysign_wallet_1h"},
		{"amount": null},
	] {
		not v_ok(v_req({"eth_usdt_wallet_24h": [within, object.union(within, change)]}))
	}
	every bad in [false, null, [], "x", 0, {"eth_usdt_wallet_24h": []}, {"eth_usdt_wallet_24h": {"a": within}}, {"eth_usdt_wallet_24h": [within, "within"]}] {
		not v_ok(v_req(bad))
		count(v_codes(v_req(bad))) > 0
	}
}
