# Tests for keyreshare.rego (the embedded key_reshare rule); each asserts
# only its codes, so a rule added to tss.keyreshare later cannot make these
# fail.
package tss.keyreshare_test

import data.tss.keyreshare

# The shipped embedded rules with the key_reshare block these tests rely on.
erc := object.union(data.embedded_risk_control_rules, {"enable": true, "key_reshare": {"reject_all": false, "allow_list": [{"xpubkey": "xpubROOT", "new_threshold": 2, "new_node_ids": ["coboA", "coboC", "coboD"]}]}})

# The embedded checks off, the rest of the shipped block kept.
erc_off := object.union(data.embedded_risk_control_rules, {"enable": false})

# A KEYRESHARE as tss-gate hands it to the policy (tests/fixtures/
# keyreshare_allowed_approve.json), with this root key and new group.
req(xpub, nt, nodes) := {
	"request_id": "0b8f6e7a-8dbf-4ac1-bdef-a51423889fd3", "request_type": "KEYRESHARE", "request_type_code": 3,
	"detail": {
		"root_pub_key": xpub, "new_threshold": nt, "new_node_ids": nodes, "used_node_ids": ["coboA", "coboB"],
		"old_threshold": 2, "old_group_id": "cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19", "curve": 0,
		"task_id": "b29f64e081d6382f59a24194526c76a7", "biz_task_id": "20251124160500000456",
	},
	"extra": {
		"org": {"org_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "Acme Treasury"},
		"project": {"project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops"},
		"vault": {"vault_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops Vault", "type": "OrgControlled"},
		"tss_request": {"tss_request_id": "20251124160500000456", "type": "KeyReshare", "status": "KeyReSharing"},
	},
	"verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
}

# keyreshare.rego's codes, and what it denies with them.
keyreshare_codes := {"keyreshare.reject_all", "keyreshare.not_in_allow_list"}

own_denies := {d | some d in keyreshare.deny; d.code in keyreshare_codes}

test_allow_list_match if {
	keyreshare.allow with input as req("xpubROOT", 2, ["coboD", "coboA", "coboC"]) with data.embedded_risk_control_rules as erc
	count(own_denies) == 0 with input as req("xpubROOT", 2, ["coboD", "coboA", "coboC"]) with data.embedded_risk_control_rules as erc
}

test_other_root_key_denied if {
	own_denies == {{"code": "keyreshare.not_in_allow_list", "msg": "key reshare of root key `xpubOTHER` to threshold `2` with new node ids `coboA, coboC, coboD` matches no key_reshare allow_list entry"}} with input as req("xpubOTHER", 2, ["coboA", "coboC", "coboD"]) with data.embedded_risk_control_rules as erc
}

test_other_threshold_or_nodes_denied if {
	not keyreshare.allow with input as req("xpubROOT", 3, ["coboA", "coboC", "coboD"]) with data.embedded_risk_control_rules as erc
	not keyreshare.allow with input as req("xpubROOT", 2, ["coboA", "coboC", "coboX"]) with data.embedded_risk_control_rules as erc
}

test_missing_fields_denied if {
	some d in keyreshare.deny with input as json.remove(req("x", 2, []), ["detail/root_pub_key", "detail/new_threshold", "detail/new_node_ids"]) with data.embedded_risk_control_rules as erc
	d.msg == "key reshare of root key `<missing>` to threshold `<missing>` with new node ids `<missing>` matches no key_reshare allow_list entry"
}

test_reject_all_denies if {
	some d in keyreshare.deny with input as req("xpubROOT", 2, ["coboA", "coboC", "coboD"]) with data.embedded_risk_control_rules as object.union(erc, {"key_reshare": {"reject_all": true}})
	d.code == "keyreshare.reject_all"
}

test_disabled_allows if {
	keyreshare.allow with input as req("xpubOTHER", 9, []) with data.embedded_risk_control_rules as erc_off
	count(own_denies) == 0 with input as req("xpubOTHER", 9, []) with data.embedded_risk_control_rules as erc_off
}
