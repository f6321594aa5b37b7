# Tests for keygen.rego (the embedded key_gen rule); each asserts only its
# codes, so a rule added to tss.keygen later cannot make these fail.
package tss.keygen_test

import data.tss.keygen

# The shipped embedded rules with the key_gen block these tests rely on.
erc := object.union(data.embedded_risk_control_rules, {"enable": true, "key_gen": {"reject_all": false, "allow_list": [{"threshold": 2, "node_ids": ["coboA", "coboB", "coboC"]}]}})

# A KEYGEN as tss-gate hands it to the policy (tests/fixtures/
# keygen_allowed_approve.json), with this threshold and node list.
req(threshold, nodes) := {
	"request_id": "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", "request_type": "KEYGEN", "request_type_code": 1,
	"detail": {"threshold": threshold, "node_ids": nodes, "curve": 0, "task_id": "f841c6279037da5599715a223c73770c", "biz_task_id": "20251124160000000123"},
	"extra": {
		"org": {"org_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "Acme Treasury"},
		"project": {"project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops"},
		"vault": {"vault_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops Vault", "type": "OrgControlled"},
		"tss_request": {"tss_request_id": "20251124160000000123", "type": "KeyGen", "status": "KeyGenerating"},
	},
	"verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
}

# keygen.rego's codes, and what it denies with them.
keygen_codes := {"keygen.reject_all", "keygen.not_in_allow_list"}

own_denies := {d | some d in keygen.deny; d.code in keygen_codes}

test_allow_list_match_in_any_order if {
	keygen.allow with input as req(2, ["coboC", "coboA", "coboB"]) with data.embedded_risk_control_rules as erc
	count(own_denies) == 0 with input as req(2, ["coboC", "coboA", "coboB"]) with data.embedded_risk_control_rules as erc
}

test_wrong_threshold_denied if {
	not keygen.allow with input as req(3, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
	own_denies == {{"code": "keygen.not_in_allow_list", "msg": "keygen threshold `3` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry"}} with input as req(3, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
}

test_unknown_node_denied if {
	some d in keygen.deny with input as req(2, ["coboA", "coboB", "coboX"]) with data.embedded_risk_control_rules as erc
	d.code == "keygen.not_in_allow_list"
}

test_subset_of_nodes_denied if {
	not keygen.allow with input as req(2, ["coboA", "coboB"]) with data.embedded_risk_control_rules as erc
}

test_missing_node_ids_denied if {
	some d in keygen.deny with input as json.remove(req(2, []), ["detail/node_ids"]) with data.embedded_risk_control_rules as erc
	d.msg == "keygen threshold `2` with node ids `<missing>` matches no key_gen allow_list entry"
}

test_reject_all_denies if {
	cfg := object.union(erc, {"key_gen": {"reject_all": true}})
	not keygen.allow with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as cfg
	own_denies == {{"code": "keygen.reject_all", "msg": "KEYGEN is rejected: embedded_risk_control_rules.key_gen.reject_all is `true` (only an explicit false admits KEYGEN)"}} with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as cfg
}

test_missing_section_fails_closed if {
	some d in keygen.deny with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as json.remove(erc, ["key_gen"])
	d.code == "keygen.reject_all"
}

test_disabled_allows_without_checks if {
	keygen.allow with input as req(7, ["coboZ"]) with data.embedded_risk_control_rules as object.union(erc, {"enable": false})
	count(own_denies) == 0 with input as req(7, ["coboZ"]) with data.embedded_risk_control_rules as object.union(erc, {"enable": false})
}

# The threshold is shown with its JSON type: a string "2" does not match the
# allow-listed number 2, and the message must not make them look alike.
test_string_threshold_is_shown_quoted if {
	some d in keygen.deny with input as req("2", ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
	d.msg == "keygen threshold `\"2\"` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry"
}
