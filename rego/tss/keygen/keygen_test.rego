package tss.keygen_test

import data.tss.keygen

erc := {"enable": true, "key_gen": {"reject_all": false, "allow_list": [{"threshold": 2, "node_ids": ["coboA", "coboB", "coboC"]}]}}

req(threshold, nodes) := {"request_id": "r", "request_type": "KEYGEN", "detail": {"threshold": threshold, "node_ids": nodes, "curve": 0}}

test_allow_list_match_in_any_order if {
	keygen.allow with input as req(2, ["coboC", "coboA", "coboB"]) with data.embedded_risk_control_rules as erc
	count(keygen.deny) == 0 with input as req(2, ["coboC", "coboA", "coboB"]) with data.embedded_risk_control_rules as erc
}

test_wrong_threshold_denied if {
	not keygen.allow with input as req(3, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
	keygen.deny == {{"code": "keygen.not_in_allow_list", "msg": "keygen threshold `3` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry"}} with input as req(3, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
}

test_unknown_node_denied if {
	some d in keygen.deny with input as req(2, ["coboA", "coboB", "coboX"]) with data.embedded_risk_control_rules as erc
	d.code == "keygen.not_in_allow_list"
}

test_subset_of_nodes_denied if {
	not keygen.allow with input as req(2, ["coboA", "coboB"]) with data.embedded_risk_control_rules as erc
}

test_missing_node_ids_denied if {
	some d in keygen.deny with input as {"request_type": "KEYGEN", "detail": {"threshold": 2}} with data.embedded_risk_control_rules as erc
	d.msg == "keygen threshold `2` with node ids `<missing>` matches no key_gen allow_list entry"
}

test_reject_all_denies if {
	cfg := object.union(erc, {"key_gen": {"reject_all": true}})
	not keygen.allow with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as cfg
	keygen.deny == {{"code": "keygen.reject_all", "msg": "KEYGEN is rejected: embedded_risk_control_rules.key_gen.reject_all is `true` (only an explicit false admits KEYGEN)"}} with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as cfg
}

test_missing_section_fails_closed if {
	some d in keygen.deny with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as {"enable": true}
	d.code == "keygen.reject_all"
}

test_disabled_allows_without_checks if {
	keygen.allow with input as req(7, ["coboZ"]) with data.embedded_risk_control_rules as {"enable": false}
	count(keygen.deny) == 0 with input as req(7, ["coboZ"]) with data.embedded_risk_control_rules as {"enable": false}
}

# The threshold is shown with its JSON type: a string "2" does not match the
# allow-listed number 2, and the message must not make them look alike.
test_string_threshold_is_shown_quoted if {
	some d in keygen.deny with input as req("2", ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
	d.msg == "keygen threshold `\"2\"` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry"
}
