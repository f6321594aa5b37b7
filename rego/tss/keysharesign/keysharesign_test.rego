package tss.keysharesign_test

import data.tss.keysharesign

req := {"request_id": "r", "request_type": "KEYSHARESIGN", "detail": {"node_id": "coboA", "details": [{"group_id": "g", "message": "00"}]}}

test_reject_all_denies if {
	not keysharesign.allow with input as req with data.embedded_risk_control_rules as {"enable": true, "key_share_sign": {"reject_all": true}}
	keysharesign.deny == {{"code": "keysharesign.reject_all", "msg": "KEYSHARESIGN is rejected: embedded_risk_control_rules.key_share_sign.reject_all is `true` (only an explicit false admits KEYSHARESIGN)"}} with input as req with data.embedded_risk_control_rules as {"enable": true, "key_share_sign": {"reject_all": true}}
}

test_explicit_false_allows if {
	keysharesign.allow with input as req with data.embedded_risk_control_rules as {"enable": true, "key_share_sign": {"reject_all": false}}
	count(keysharesign.deny) == 0 with input as req with data.embedded_risk_control_rules as {"enable": true, "key_share_sign": {"reject_all": false}}
}

test_missing_reject_all_fails_closed if {
	some d in keysharesign.deny with input as req with data.embedded_risk_control_rules as {"enable": true, "key_share_sign": {}}
	d.msg == "KEYSHARESIGN is rejected: embedded_risk_control_rules.key_share_sign.reject_all is `<missing>` (only an explicit false admits KEYSHARESIGN)"
}

test_disabled_allows if {
	keysharesign.allow with input as req with data.embedded_risk_control_rules as {"enable": false, "key_share_sign": {"reject_all": true}}
	count(keysharesign.deny) == 0 with input as req with data.embedded_risk_control_rules as {"enable": false, "key_share_sign": {"reject_all": true}}
}
