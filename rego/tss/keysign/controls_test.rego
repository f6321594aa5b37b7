# Tests for controls.rego: the KEYSIGN freeze and the destination
# cool-down. Each test asserts only the codes these controls (and the
# destination listing they build on) can produce.
package tss.keysign_test

control_code_set := {
	"keysign.frozen",
	"keysign.destination_cooling_down",
	"keysign.destination_entry_malformed",
	"keysign.destination_cooldown_malformed",
	"keysign.destination_not_allowed",
}

# 0xaaaa (cd_base's destination) listed on 2025-11-30T10:00:00Z under a
# 24h cool-down: usable from 2025-12-01T10:00:00Z (1764583200000).
cd_added := "2025-11-30T10:00:00Z"

cd_td(entry, cooldown) := object.union(td, {
	"destination_cooldown": cooldown,
	"allowed_destinations": {"ETH": {"0xaaaa": entry}},
})

# td without a cool-down (the shipped data.yaml configures one).
no_cd_td := json.remove(td, ["destination_cooldown"])

cd_base := req({"destination": dest_to("0xAAAA", "1.5")})

cd_req(ms) := object.union(cd_base, {"decided_at_ms": ms})

# cd_base as an input built without a decision time (tss-gate always sets
# one; `opa eval` inputs may not).
cd_timeless := json.remove(cd_base, ["decided_at_ms", "received_at_ms", "received_at"])

c_codes(inp, keysign_data, freeze) := c if {
	c := {d.code | some d in data.tss.keysign.deny; d.code in control_code_set} with input as inp
		with data.keysign as keysign_data
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as freeze
}

c_msgs(inp, keysign_data, freeze) := m if {
	m := {d.msg | some d in data.tss.keysign.deny; d.code in control_code_set} with input as inp
		with data.keysign as keysign_data
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as freeze
}

off := {"keysign": false}

# --- freeze ------------------------------------------------------------------------

test_freeze_off_approves if {
	c_codes(req({}), td, off) == set()

	# No `keysign` key: not frozen (absent data.freeze is the same).
	c_codes(req({}), td, {}) == set()
	c_codes(req({}), td, {"reason": "not frozen"}) == set()
}

test_freeze_denies_every_keysign if {
	c_msgs(req({}), td, {"keysign": true}) == {"every KEYSIGN is frozen: data.freeze.keysign is true"}

	# Whatever the request: even one with nothing else wrong, or no transaction.
	"keysign.frozen" in c_codes(json.remove(req({}), ["extra/transaction"]), td, {"keysign": true})
	c_codes(req({"chain_id": "BTC", "token_id": "BTC", "destination": dest_to("bc1qa", "1")}), td, {"keysign": true}) == {"keysign.frozen"}
}

test_freeze_names_its_reason if {
	c_msgs(req({}), td, {"keysign": true, "reason": "incident 42: key rotation"}) == {"every KEYSIGN is frozen: data.freeze.keysign is true (reason: incident 42: key rotation)"}

	# A reason that is not a string is left out, the freeze stands.
	c_msgs(req({}), td, {"keysign": true, "reason": 42}) == {"every KEYSIGN is frozen: data.freeze.keysign is true"}
}

test_freeze_malformed_switch_freezes if {
	c_msgs(req({}), td, {"keysign": "false"}) == {"data.freeze.keysign is `\"false\"`, not true or false: every KEYSIGN is frozen until the switch is a boolean (malformed switch, fail closed)"}
	c_codes(req({}), td, {"keysign": null}) == {"keysign.frozen"}
	c_codes(req({}), td, {"keysign": 0}) == {"keysign.frozen"}
	c_msgs(req({}), td, true) == {"data.freeze is `true`, not an object such as {keysign: false}: every KEYSIGN is frozen until it is fixed or removed (malformed switch, fail closed)"}
	c_codes(req({}), td, null) == {"keysign.frozen"}
}

# Compared with the same PING unfrozen rather than with "approved", so a
# PING rule added later cannot make this fail.
test_freeze_only_governs_keysign if {
	ping := {
		"request_id": "3f2b8c1e-6a4d-4f7b-9e2c-1d5a8b3c7e90", "request_type": "PING", "request_type_code": 0,
		"detail": {}, "extra": {}, "verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
		"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
	}
	frozen := data.tss.decision with input as ping with data.freeze as {"keysign": true}
	thawed := data.tss.decision with input as ping with data.freeze as off
	frozen == thawed
	not "keysign.frozen" in frozen.codes
}

# --- cool-down ---------------------------------------------------------------------

test_cooling_down_destination_denied if {
	c_msgs(cd_req(1764496800000), cd_td({"added_at": cd_added}, "24h"), off) == {"destination address `0xAAAA` on chain `ETH` was added at 2025-11-30T10:00:00Z and is in its 24h cool-down: usable from 2025-12-01T10:00:00Z"}
	c_codes(cd_req(1764583199999), cd_td({"added_at": cd_added}, "24h"), off) == {"keysign.destination_cooling_down"}
}

# Usable exactly when the cool-down has passed, and after.
test_cooled_down_destination_allowed if {
	c_codes(cd_req(1764583200000), cd_td({"added_at": cd_added}, "24h"), off) == set()
	c_codes(cd_req(1764583200001), cd_td({"added_at": cd_added}, "24h"), off) == set()
	c_codes(cd_req(1795856197403), cd_td({"added_at": cd_added}, "24h"), off) == set()
}

test_cooldown_units if {
	c_codes(cd_req(1764496800000 + 89999), cd_td({"added_at": cd_added}, "90s"), off) == {"keysign.destination_cooling_down"}
	c_codes(cd_req(1764496800000 + 90000), cd_td({"added_at": cd_added}, "90s"), off) == set()
	c_codes(cd_req(1764496800000 + 1799999), cd_td({"added_at": cd_added}, "30m"), off) == {"keysign.destination_cooling_down"}
	c_codes(cd_req(1764496800000 + 1800000), cd_td({"added_at": cd_added}, "30m"), off) == set()
	c_msgs(cd_req(1764583200000), cd_td({"added_at": cd_added}, "7d"), off) == {"destination address `0xAAAA` on chain `ETH` was added at 2025-11-30T10:00:00Z and is in its 7d cool-down: usable from 2025-12-07T10:00:00Z"}
	c_codes(cd_req(1764496800000 + 604800000), cd_td({"added_at": cd_added}, "7d"), off) == set()
	c_codes(cd_req(1764496800000), cd_td({"added_at": cd_added}, "0s"), off) == set()
}

# Offsets and fractions: the instant counts; "usable from" is in UTC,
# rounded up to the second.
test_added_at_offsets_and_fractions if {
	c_msgs(cd_req(1764496800000), cd_td({"added_at": "2025-11-30T12:00:00+02:00"}, "24h"), off) == {"destination address `0xAAAA` on chain `ETH` was added at 2025-11-30T12:00:00+02:00 and is in its 24h cool-down: usable from 2025-12-01T10:00:00Z"}
	c_codes(cd_req(1764583200000), cd_td({"added_at": "2025-11-30T12:00:00+02:00"}, "24h"), off) == set()
	c_msgs(cd_req(1764583200000), cd_td({"added_at": "2025-11-30T10:00:00.25Z"}, "24h"), off) == {"destination address `0xAAAA` on chain `ETH` was added at 2025-11-30T10:00:00.25Z and is in its 24h cool-down: usable from 2025-12-01T10:00:01Z"}
	c_codes(cd_req(1764583200250), cd_td({"added_at": "2025-11-30T10:00:00.25Z"}, "24h"), off) == set()
}

# An object entry counts as listed; `true` entries never cool down; without
# destination_cooldown nothing cools down.
test_object_entry_is_listed if {
	c_codes(cd_req(1764496800000), object.union(no_cd_td, {"allowed_destinations": {"ETH": {"0xaaaa": {"added_at": cd_added}}}}), off) == set()
	c_codes(cd_req(1764496800000), object.union(td, {"destination_cooldown": "24h"}), off) == set()
	c_codes(cd_req(1764496800000), cd_td(true, "24h"), off) == set()

	# Other entry values still do not list an address.
	c_codes(cd_req(1764496800000), cd_td(false, "24h"), off) == {"keysign.destination_not_allowed"}
	c_codes(cd_req(1764496800000), cd_td("yes", "24h"), off) == {"keysign.destination_not_allowed"}
}

# Every output is checked: one cooling address among listed ones denies.
test_cooldown_checks_every_output if {
	kd := object.union(td, {"destination_cooldown": "24h", "allowed_destinations": {"BTC": {"bc1qb": {"added_at": cd_added}}}})
	r := object.union(req({"chain_id": "BTC", "token_id": "BTC", "destination": {"destination_type": "Address", "utxo_outputs": [{"address": "bc1qa", "amount": "1"}, {"address": "bc1qb", "amount": "1"}]}}), {"decided_at_ms": 1764496800000})
	c_msgs(r, kd, off) == {"destination address `bc1qb` on chain `BTC` was added at 2025-11-30T10:00:00Z and is in its 24h cool-down: usable from 2025-12-01T10:00:00Z"}
}

test_malformed_added_at_denies if {
	c_msgs(cd_req(1795856197403), cd_td({"added_at": "yesterday"}, "24h"), off) == {"destination address `0xAAAA` on chain `ETH` is listed with added_at `yesterday`, which is not an RFC 3339 time such as 2025-06-02T09:00:00Z: it cannot be used until the entry is fixed"}
	c_msgs(cd_req(1795856197403), cd_td({}, "24h"), off) == {"destination address `0xAAAA` on chain `ETH` is listed with added_at `<missing>`, which is not an RFC 3339 time such as 2025-06-02T09:00:00Z: it cannot be used until the entry is fixed"}
	every bad in [
		1764496800000, null, "2025-02-29T00:00:00Z", "2025-04-31T00:00:00Z", "2025-13-01T00:00:00Z",
		"2025-11-30 10:00:00Z", "2025-11-30T10:00:00", "2025-11-30t10:00:00z", "2025-11-30T24:00:00Z",
		"2025-11-30T10:00:60Z", "2025-11-30T10:00:00.1234567890Z", "9999-01-01T00:00:00Z", "2025-11-30",
	] {
		c_codes(cd_req(1795856197403), cd_td({"added_at": bad}, "24h"), off) == {"keysign.destination_entry_malformed"}
	}

	# Without a cool-down too: the entry itself is wrong.
	c_codes(cd_req(1795856197403), object.union(no_cd_td, {"allowed_destinations": {"ETH": {"0xaaaa": {"added_at": "soon"}}}}), off) == {"keysign.destination_entry_malformed"}
}

test_valid_added_at_forms if {
	every good in ["2024-02-29T00:00:00Z", "2000-02-29T23:59:59Z", "1970-01-01T00:00:00Z", "2025-12-31T23:59:59.999999999-05:30"] {
		c_codes(cd_req(1795856197403), cd_td({"added_at": good}, "24h"), off) == set()
	}

	# Century years are leap years only every 400 (2000 above); 1969 is
	# before the range.
	c_codes(cd_req(1795856197403), cd_td({"added_at": "2100-02-29T00:00:00Z"}, "24h"), off) == {"keysign.destination_entry_malformed"}
	c_codes(cd_req(1795856197403), cd_td({"added_at": "1969-12-31T23:59:59Z"}, "24h"), off) == {"keysign.destination_entry_malformed"}
}

test_malformed_cooldown_denies_cooling_entries if {
	c_msgs(cd_req(1795856197403), cd_td({"added_at": cd_added}, "1w"), off) == {"data.keysign.destination_cooldown is `1w`, not a duration such as 24h (<n>s, <n>m, <n>h or <n>d): destination `0xAAAA` on chain `ETH` listed with added_at cannot be used until it is fixed"}
	every bad in ["24", 24, "", "24 h", "024h", "-1h", "1.5h", "10000d", null] {
		c_codes(cd_req(1795856197403), cd_td({"added_at": cd_added}, bad), off) == {"keysign.destination_cooldown_malformed"}
	}

	# `true` entries are not affected by it.
	c_codes(cd_req(1795856197403), cd_td(true, "1w"), off) == set()
}

# The decision time is input.decided_at_ms; received_at_ms stands in when
# it is missing, and with neither the cool-down cannot be judged.
test_cooldown_decision_time if {
	kd := cd_td({"added_at": cd_added}, "24h")
	r := object.union(cd_timeless, {"received_at_ms": 1764496800000})
	c_codes(r, kd, off) == {"keysign.destination_cooling_down"}
	c_codes(object.union(r, {"decided_at_ms": 1764583200000}), kd, off) == set()
	c_msgs(cd_timeless, kd, off) == {"destination address `0xAAAA` on chain `ETH` was added at 2025-11-30T10:00:00Z and has a 24h cool-down, but the input carries no decision time (decided_at_ms) to tell whether it is over"}
	c_codes(object.union(cd_timeless, {"decided_at_ms": "1764583200000"}), kd, off) == {"keysign.destination_cooling_down"}

	# No cool-down configured: no decision time needed.
	c_codes(cd_timeless, object.union(no_cd_td, {"allowed_destinations": {"ETH": {"0xaaaa": {"added_at": cd_added}}}}), off) == set()
}

test_duration_parsing if {
	data.tss.keysign.duration_ns("1s") == 1000000000
	data.tss.keysign.duration_ns("15m") == 900000000000
	data.tss.keysign.duration_ns("24h") == 86400000000000
	data.tss.keysign.duration_ns("30d") == 2592000000000000
	data.tss.keysign.duration_ns("0s") == 0
	not data.tss.keysign.duration_valid("1y")
	not data.tss.keysign.duration_valid("h")
}
