# Tests for the framework (decision.rego): collection, normalisation,
# fail-closed behaviour, ordering. The framework reads no data, and the
# rules of the type packages are stubbed where a test needs them, so these
# hold for any operator data. A test that pins an exact outcome stubs the
# rules it does not test (`with data.tss.common.deny as set()`), so a rule
# added to any package later cannot make it fail (tests/extra_file.rs).
# Full data.tss paths, never an import alias (rego/README.md, "regorus vs
# OPA").
package tss.decision_test

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
	data.tss.decision == {"allow": true, "reasons": [], "codes": []} with input as ping
		with data.tss.common.deny as set()
		with data.tss.ping.deny as set()
}

# No input at all: a rule added later may deny it too.
test_decision_defined_without_input if {
	d := data.tss.decision
	d.allow == false
	"request.id_missing" in d.codes
	"request.unknown_type" in d.codes
	"request type `<missing>` (code `<missing>`) is not one this policy handles" in d.reasons
}

test_unknown_type_rejected if {
	d := data.tss.decision with input as object.union(ping, {"request_type": "UNKNOWN", "request_type_code": 4}) with data.tss.common.deny as set()
	d.allow == false
	d.codes == ["request.unknown_type"]
	d.reasons == ["request type `UNKNOWN` (code `4`) is not one this policy handles"]
}

test_unlisted_type_name_rejected if {
	d := data.tss.decision with input as object.union(ping, {"request_type": "ping"}) with data.tss.common.deny as set()
	d.codes == ["request.unknown_type"]
}

test_type_without_allow_is_not_allowed if {
	d := data.tss.decision with input as ping with data.tss.ping.allow as false with data.tss.common.deny as set() with data.tss.ping.deny as set()
	d.allow == false
	d.codes == ["policy.no_allow"]
	d.reasons == ["no rule in package `tss.ping` allowed this PING request"]
}

test_non_boolean_allow_is_not_allowed if {
	d := data.tss.decision with input as ping with data.tss.ping.allow as "yes" with data.tss.common.deny as set() with data.tss.ping.deny as set()
	d.codes == ["policy.no_allow"]
}

test_each_type_collects_its_own_package if {
	data.tss.type_allowed with input as object.union(ping, {"request_type": "KEYGEN"}) with data.tss.keygen.allow as true
	data.tss.type_allowed with input as object.union(ping, {"request_type": "KEYSIGN"}) with data.tss.keysign.allow as true
	data.tss.type_allowed with input as object.union(ping, {"request_type": "KEYRESHARE"}) with data.tss.keyreshare.allow as true
	data.tss.type_allowed with input as object.union(ping, {"request_type": "KEYSHARESIGN"}) with data.tss.keysharesign.allow as true
	not data.tss.type_allowed with input as object.union(ping, {"request_type": "KEYGEN"}) with data.tss.keygen.allow as false
}

test_denies_from_type_package_only if {
	ds := {{"code": "keysign.x", "msg": "x"}}
	data.tss.raw_denies == ds with input as object.union(ping, {"request_type": "KEYSIGN"}) with data.tss.keysign.deny as ds with data.tss.common.deny as set()
	data.tss.raw_denies == ds with input as object.union(ping, {"request_type": "KEYGEN"}) with data.tss.keygen.deny as ds with data.tss.common.deny as set()
	data.tss.raw_denies == ds with input as object.union(ping, {"request_type": "KEYRESHARE"}) with data.tss.keyreshare.deny as ds with data.tss.common.deny as set()
	data.tss.raw_denies == ds with input as object.union(ping, {"request_type": "KEYSHARESIGN"}) with data.tss.keysharesign.deny as ds with data.tss.common.deny as set()
	data.tss.raw_denies == ds with input as ping with data.tss.ping.deny as ds with data.tss.common.deny as set()
	count(data.tss.raw_denies) == 0 with input as ping with data.tss.keysign.deny as ds with data.tss.common.deny as set() with data.tss.ping.deny as set()
}

test_bare_string_deny_normalised if {
	d := data.tss.decision with input as ping with data.tss.ping.deny as {"maintenance window"} with data.tss.common.deny as set()
	d.allow == false
	d.codes == ["policy.unspecified"]
	d.reasons == ["maintenance window"]
}

test_malformed_deny_fails_closed if {
	d := data.tss.decision with input as ping with data.tss.ping.deny as {{"code": "Bad Code!", "msg": "m"}, 42} with data.tss.common.deny as set()
	d.allow == false
	d.codes == ["policy.malformed_deny"]
	count(d.reasons) == 2
	"malformed deny element `42`" in d.reasons
}

test_object_deny_without_msg_is_malformed if {
	data.tss.normalize({"code": "a.b"}).code == "policy.malformed_deny"
	data.tss.normalize({"code": "a.b", "msg": "m", "extra": 1}) == {"code": "a.b", "msg": "m"}
}

test_reasons_sorted_by_code_then_msg if {
	ds := {{"code": "b.two", "msg": "a"}, {"code": "a.one", "msg": "z"}, {"code": "a.one", "msg": "y"}}
	d := data.tss.decision with input as ping with data.tss.ping.deny as ds with data.tss.common.deny as set()
	d.reasons == ["y", "z", "a"]
	d.codes == ["a.one", "b.two"]
}

test_denies_exposed_for_tooling if {
	data.tss.denies == {{"code": "x.y", "msg": "m"}} with input as ping with data.tss.ping.deny as {{"code": "x.y", "msg": "m"}} with data.tss.common.deny as set()
}

test_no_allow_not_added_when_other_denies if {
	d := data.tss.decision with input as ping with data.tss.ping.allow as false with data.tss.ping.deny as {{"code": "x.y", "msg": "m"}} with data.tss.common.deny as set()
	d.codes == ["x.y"]
}
