package tss.ping_test

import data.tss.ping

test_ping_allowed_without_denies if {
	ping.allow with input as {"request_id": "r", "request_type": "PING"}
	count(object.get(data.tss.ping, "deny", set())) == 0 with input as {"request_id": "r", "request_type": "PING"}
}
