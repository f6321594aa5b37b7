# Tests for ping.rego. Full data.tss.ping paths, never an import alias
# (rego/README.md, "regorus vs OPA"). ping.rego reads no data and has no
# deny of its own, so the test asserts only its `allow`: a PING rule added
# later may deny (whether the whole library approves a PING is
# tests/fixtures/ping_approve.json's question).
package tss.ping_test

# docs/input.md's PING, server facts included: a PING rule added later
# judges it as it judges tests/fixtures/ping_approve.json.
ping_req := {
	"request_id": "3f2b8c1e-6a4d-4f7b-9e2c-1d5a8b3c7e90", "request_type": "PING", "request_type_code": 0,
	"detail": {}, "extra": {}, "verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
}

test_ping_allowed if {
	data.tss.ping.allow with input as ping_req
}
