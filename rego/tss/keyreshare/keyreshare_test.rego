package tss.keyreshare_test

import data.tss.keyreshare

erc := {"enable": true, "key_reshare": {"reject_all": false, "allow_list": [{"xpubkey": "xpubROOT", "new_threshold": 2, "new_node_ids": ["coboA", "coboC", "coboD"]}]}}

req(xpub, nt, nodes) := {"request_id": "r", "request_type": "KEYRESHARE", "detail": {"root_pub_key": xpub, "new_threshold": nt, "new_node_ids": nodes, "used_node_ids": ["coboA", "coboB"], "old_threshold": 2}}

test_allow_list_match if {
	keyreshare.allow with input as req("xpubROOT", 2, ["coboD", "coboA", "coboC"]) with data.embedded_risk_control_rules as erc
	count(keyreshare.deny) == 0 with input as req("xpubROOT", 2, ["coboD", "coboA", "coboC"]) with data.embedded_risk_control_rules as erc
}

test_other_root_key_denied if {
	keyreshare.deny == {{"code": "keyreshare.not_in_allow_list", "msg": "key reshare of root key `xpubOTHER` to threshold `2` with new node ids `coboA, coboC, coboD` matches no key_reshare allow_list entry"}} with input as req("xpubOTHER", 2, ["coboA", "coboC", "coboD"]) with data.embedded_risk_control_rules as erc
}

test_other_threshold_or_nodes_denied if {
	not keyreshare.allow with input as req("xpubROOT", 3, ["coboA", "coboC", "coboD"]) with data.embedded_risk_control_rules as erc
	not keyreshare.allow with input as req("xpubROOT", 2, ["coboA", "coboC", "coboX"]) with data.embedded_risk_control_rules as erc
}

test_missing_fields_denied if {
	some d in keyreshare.deny with input as {"request_type": "KEYRESHARE", "detail": {}} with data.embedded_risk_control_rules as erc
	d.msg == "key reshare of root key `<missing>` to threshold `<missing>` with new node ids `<missing>` matches no key_reshare allow_list entry"
}

test_reject_all_denies if {
	some d in keyreshare.deny with input as req("xpubROOT", 2, ["coboA", "coboC", "coboD"]) with data.embedded_risk_control_rules as {"enable": true, "key_reshare": {"reject_all": true}}
	d.code == "keyreshare.reject_all"
}

test_disabled_allows if {
	keyreshare.allow with input as req("xpubOTHER", 9, []) with data.embedded_risk_control_rules as {"enable": false}
	count(keyreshare.deny) == 0 with input as req("xpubOTHER", 9, []) with data.embedded_risk_control_rules as {"enable": false}
}
