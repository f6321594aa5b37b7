# Tests for common.rego; each asserts only the codes of its rules, so a rule
# added to tss.common later cannot make these fail. Full data.tss.common
# paths, never an import alias (rego/README.md, "regorus vs OPA"). The
# common rules read no data, so these hold for any operator data.
package tss.common_test

# docs/input.md's PING, server facts included.
ping := {
	"request_id": "3f2b8c1e-6a4d-4f7b-9e2c-1d5a8b3c7e90", "request_type": "PING", "request_type_code": 0,
	"detail": {}, "extra": {}, "verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
}

# with_fields(patch): ping with top-level fields replaced.
with_fields(patch) := object.union(ping, patch)

common_codes := {"request.id_missing", "request.detail_missing"}

codes := {d.code | some d in data.tss.common.deny; d.code in common_codes}

test_request_id_present_passes if {
	codes == set() with input as ping
}

test_request_id_missing_or_blank_denied if {
	{"code": "request.id_missing", "msg": "request_id is missing or empty"} in data.tss.common.deny with input as json.remove(ping, ["request_id"])
	{"code": "request.id_missing", "msg": "request_id is missing or empty"} in data.tss.common.deny with input as with_fields({"request_id": "  "})
	{"code": "request.id_missing", "msg": "request_id is missing or empty"} in data.tss.common.deny with input as with_fields({"request_id": 7})
}

test_detail_required_for_known_non_ping_types if {
	some d in data.tss.common.deny with input as with_fields({"request_type": "KEYGEN", "request_type_code": 1})
	d == {"code": "request.detail_missing", "msg": "request_detail is empty for a KEYGEN request"}
}

test_detail_not_required_for_ping_or_unknown if {
	codes == set() with input as ping
	codes == set() with input as with_fields({"request_type": "UNKNOWN", "request_type_code": 4})
	codes == set() with input as with_fields({"request_type": "KEYSIGN", "request_type_code": 2, "detail": {"task_id": "t"}})
}
