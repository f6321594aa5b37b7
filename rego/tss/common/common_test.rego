package tss.common_test

import data.tss.common

test_request_id_present_passes if {
	count(common.deny) == 0 with input as {"request_id": "3f2b8c1e-6a4d-4f7b-9e2c-1d5a8b3c7e90", "request_type": "PING", "detail": {}}
}

test_request_id_missing_or_blank_denied if {
	{"code": "request.id_missing", "msg": "request_id is missing or empty"} in common.deny with input as {"request_type": "PING"}
	{"code": "request.id_missing", "msg": "request_id is missing or empty"} in common.deny with input as {"request_id": "  ", "request_type": "PING"}
	{"code": "request.id_missing", "msg": "request_id is missing or empty"} in common.deny with input as {"request_id": 7, "request_type": "PING"}
}

test_detail_required_for_known_non_ping_types if {
	some d in common.deny with input as {"request_id": "r", "request_type": "KEYGEN", "detail": {}}
	d == {"code": "request.detail_missing", "msg": "request_detail is empty for a KEYGEN request"}
}

test_detail_not_required_for_ping_or_unknown if {
	count(common.deny) == 0 with input as {"request_id": "r", "request_type": "PING", "detail": {}}
	count(common.deny) == 0 with input as {"request_id": "r", "request_type": "UNKNOWN", "detail": {}}
	count(common.deny) == 0 with input as {"request_id": "r", "request_type": "KEYSIGN", "detail": {"task_id": "t"}}
}
