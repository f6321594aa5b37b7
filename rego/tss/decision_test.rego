# Tests for the framework (decision.rego): collection, normalisation,
# fail-closed behaviour, ordering.
package tss.decision_test

import data.tss

# docs/input.md's PING, server facts included: a rule added later judges it
# as it judges tests/fixtures/ping_approve.json.
ping := {
	"request_id": "3f2b8c1e-6a4d-4f7b-9e2c-1d5a8b3c7e90", "request_type": "PING", "request_type_code": 0,
	"detail": {}, "extra": {}, "verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
}

# The framework's approval: the type allows and nobody denies. The rules
# are stubbed: whether the library approves a real PING is
# tests/fixtures/ping_approve.json's question.
test_ping_approved if {
	tss.decision == {"allow": true, "reasons": [], "codes": []} with input as ping
		with data.tss.common.deny as set()
		with data.tss.ping.deny as set()
}

# No input at all: a rule added later may deny it too.
test_decision_defined_without_input if {
	d := tss.decision
	d.allow == false
	"request.id_missing" in d.codes
	"request.unknown_type" in d.codes
	"request type `<missing>` (code `<missing>`) is not one this policy handles" in d.reasons
}

test_unknown_type_rejected if {
	d := tss.decision with input as object.union(ping, {"request_type": "UNKNOWN", "request_type_code": 4})
	d.allow == false
	d.codes == ["request.unknown_type"]
	d.reasons == ["request type `UNKNOWN` (code `4`) is not one this policy handles"]
}

test_unlisted_type_name_rejected if {
	d := tss.decision with input as object.union(ping, {"request_type": "ping"})
	d.codes == ["request.unknown_type"]
}

test_type_without_allow_is_not_allowed if {
	d := tss.decision with input as ping with data.tss.ping.allow as false
	d.allow == false
	d.codes == ["policy.no_allow"]
	d.reasons == ["no rule in package `tss.ping` allowed this PING request"]
}

test_non_boolean_allow_is_not_allowed if {
	d := tss.decision with input as ping with data.tss.ping.allow as "yes"
	d.codes == ["policy.no_allow"]
}

test_each_type_collects_its_own_package if {
	tss.type_allowed with input as object.union(ping, {"request_type": "KEYGEN"}) with data.tss.keygen.allow as true
	tss.type_allowed with input as object.union(ping, {"request_type": "KEYSIGN"}) with data.tss.keysign.allow as true
	tss.type_allowed with input as object.union(ping, {"request_type": "KEYRESHARE"}) with data.tss.keyreshare.allow as true
	tss.type_allowed with input as object.union(ping, {"request_type": "KEYSHARESIGN"}) with data.tss.keysharesign.allow as true
	not tss.type_allowed with input as object.union(ping, {"request_type": "KEYGEN"}) with data.tss.keygen.allow as false
}

test_denies_from_type_package_only if {
	ds := {{"code": "keysign.x", "msg": "x"}}
	tss.raw_denies == ds with input as object.union(ping, {"request_type": "KEYSIGN"}) with data.tss.keysign.deny as ds with data.tss.common.deny as set()
	tss.raw_denies == ds with input as object.union(ping, {"request_type": "KEYGEN"}) with data.tss.keygen.deny as ds with data.tss.common.deny as set()
	tss.raw_denies == ds with input as object.union(ping, {"request_type": "KEYRESHARE"}) with data.tss.keyreshare.deny as ds with data.tss.common.deny as set()
	tss.raw_denies == ds with input as object.union(ping, {"request_type": "KEYSHARESIGN"}) with data.tss.keysharesign.deny as ds with data.tss.common.deny as set()
	tss.raw_denies == ds with input as ping with data.tss.ping.deny as ds
	count(tss.raw_denies) == 0 with input as ping with data.tss.keysign.deny as ds
}

test_bare_string_deny_normalised if {
	d := tss.decision with input as ping with data.tss.ping.deny as {"maintenance window"}
	d.allow == false
	d.codes == ["policy.unspecified"]
	d.reasons == ["maintenance window"]
}

test_malformed_deny_fails_closed if {
	d := tss.decision with input as ping with data.tss.ping.deny as {{"code": "Bad Code!", "msg": "m"}, 42}
	d.allow == false
	d.codes == ["policy.malformed_deny"]
	count(d.reasons) == 2
	"malformed deny element `42`" in d.reasons
}

test_object_deny_without_msg_is_malformed if {
	tss.normalize({"code": "a.b"}).code == "policy.malformed_deny"
	tss.normalize({"code": "a.b", "msg": "m", "extra": 1}) == {"code": "a.b", "msg": "m"}
}

test_reasons_sorted_by_code_then_msg if {
	ds := {{"code": "b.two", "msg": "a"}, {"code": "a.one", "msg": "z"}, {"code": "a.one", "msg": "y"}}
	d := tss.decision with input as ping with data.tss.ping.deny as ds
	d.reasons == ["y", "z", "a"]
	d.codes == ["a.one", "b.two"]
}

test_denies_exposed_for_tooling if {
	tss.denies == {{"code": "x.y", "msg": "m"}} with input as ping with data.tss.ping.deny as {{"code": "x.y", "msg": "m"}}
}

test_no_allow_not_added_when_other_denies if {
	d := tss.decision with input as ping with data.tss.ping.allow as false with data.tss.ping.deny as {{"code": "x.y", "msg": "m"}}
	d.codes == ["x.y"]
}
