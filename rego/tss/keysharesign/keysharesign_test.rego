# Tests for keysharesign.rego (the embedded key_share_sign rule); each
# asserts only its code, so a rule added to tss.keysharesign later cannot
# make these fail. Library tests: every test puts its own embedded rules in
# place of data.embedded_risk_control_rules (the operator's), so they pass
# whatever rego/data.yaml says. Full data.tss.keysharesign paths, never an
# import alias: with the alias, a second file in tss.keysharesign made
# regorus see only some of the package's `allow` definitions (rego/README.md,
# "regorus vs OPA").
package tss.keysharesign_test

# A KEYSHARESIGN as tss-gate hands it to the policy
# (tests/fixtures/keysharesign_reject.json).
req := {
	"request_id": "2da18a9c-af01-4ce3-9f12-c7364aaab1f5", "request_type": "KEYSHARESIGN", "request_type_code": 5,
	"detail": {
		"node_id": "coboAhX2rTbqKDKaN7fMQqCLg6vHsBEJZvW3dyx1Uq5G8sYpN4e", "task_id": "ae82903d6c2f0fb4384ba8bf737114e3", "biz_task_id": "20251124161000000789",
		"details": [{"group_id": "cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19", "message": "24eac4b2c91c4e8c81f69bf3786863ed612da7dcd0a515a628cfe4b3811dbcb2"}],
	},
	"extra": {
		"org": {"org_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "Acme Treasury"},
		"project": {"project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops"},
		"vault": {"vault_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops Vault", "type": "OrgControlled"},
	},
	"verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
}

# The library's own embedded rules for these tests: the node's block with
# every section, shaped like the example organisation's.
testdata_erc := {
	"enable": true,
	"key_gen": {"reject_all": false, "allow_list": []},
	"key_sign": {"reject_all": false},
	"key_reshare": {"reject_all": false, "allow_list": []},
	"key_share_sign": {"reject_all": true},
}

# erc(patch): the test data's embedded rules with the settings a test needs.
erc(patch) := object.union(testdata_erc, patch)

own_denies := {d | some d in data.tss.keysharesign.deny; d.code == "keysharesign.reject_all"}

test_reject_all_denies if {
	not data.tss.keysharesign.allow with input as req with data.embedded_risk_control_rules as erc({"enable": true, "key_share_sign": {"reject_all": true}})
	own_denies == {{"code": "keysharesign.reject_all", "msg": "KEYSHARESIGN is rejected: embedded_risk_control_rules.key_share_sign.reject_all is `true` (only an explicit false admits KEYSHARESIGN)"}} with input as req with data.embedded_risk_control_rules as erc({"enable": true, "key_share_sign": {"reject_all": true}})
}

test_explicit_false_allows if {
	data.tss.keysharesign.allow with input as req with data.embedded_risk_control_rules as erc({"enable": true, "key_share_sign": {"reject_all": false}})
	count(own_denies) == 0 with input as req with data.embedded_risk_control_rules as erc({"enable": true, "key_share_sign": {"reject_all": false}})
}

test_missing_reject_all_fails_closed if {
	some d in data.tss.keysharesign.deny with input as req with data.embedded_risk_control_rules as json.remove(erc({"enable": true}), ["key_share_sign/reject_all"])
	d.msg == "KEYSHARESIGN is rejected: embedded_risk_control_rules.key_share_sign.reject_all is `<missing>` (only an explicit false admits KEYSHARESIGN)"
}

test_disabled_allows if {
	data.tss.keysharesign.allow with input as req with data.embedded_risk_control_rules as erc({"enable": false, "key_share_sign": {"reject_all": true}})
	count(own_denies) == 0 with input as req with data.embedded_risk_control_rules as erc({"enable": false, "key_share_sign": {"reject_all": true}})
}
