# Checks that apply to every request type. Collected by data.tss.decision
# for PING, KEYGEN, KEYSIGN, KEYRESHARE and KEYSHARESIGN alike.
package tss.common

# The request id is echoed in the signed answer and keys the decision log.
deny contains {
	"code": "request.id_missing",
	"msg": "request_id is missing or empty",
} if not valid_request_id

valid_request_id if {
	is_string(input.request_id)
	trim_space(input.request_id) != ""
}

# Every known type except PING carries a request_detail to judge. (Unknown
# types are already rejected by the framework; no second reason for them.)
deny contains {
	"code": "request.detail_missing",
	"msg": sprintf("request_detail is empty for a %s request", [input.request_type]),
} if {
	input.request_type in {"KEYGEN", "KEYSIGN", "KEYRESHARE", "KEYSHARESIGN"}
	not has_detail
}

# A rule, not `not non_empty_object(input.detail)`: OPA evaluates the
# argument before the `not`, so a missing detail would make that undefined.
has_detail if non_empty_object(input.detail)

non_empty_object(x) if {
	is_object(x)
	count(x) > 0
}
