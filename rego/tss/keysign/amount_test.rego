# Tests for amount.rego; each asserts only the codes of its rules.
package tss.keysign_test

# amount.rego's codes.
amount_codes := {"keysign.amount_missing", "keysign.amount_malformed", "keysign.amount_over_cap", "keysign.cap_malformed"}

test_amount_under_and_at_cap_pass if {
	_r1 := all_codes with input as req({"destination": dest_to("0xaaaa", "49.999999999999999999")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r1, amount_codes) == set()
	_r2 := all_codes with input as req({"destination": dest_to("0xaaaa", "50.000")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r2, amount_codes) == set()
}

test_amount_over_cap if {
	_r3 := all_denies with input as req({"destination": dest_to("0xaaaa", "50.000000000000000001")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	msgs_in(_r3, amount_codes) == {"amount `50.000000000000000001` of token `ETH` exceeds the per-transaction cap `50`"}
}

test_amount_beyond_2_pow_53_over_cap if {
	r := req({"token_id": "ETH_USDT", "destination": dest_to("0xtreasury", "9007199254740993")})
	_r4 := all_codes with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r4, amount_codes) == {"keysign.amount_over_cap"}
}

test_amount_malformed if {
	_r5 := all_denies with input as req({"destination": dest_to("0xaaaa", "1e3")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	msgs_in(_r5, amount_codes) == {"amount `\"1e3\"` is not a plain decimal string"}
	_r6 := all_msgs with input as req({"destination": dest_to("0xaaaa", 1.5)}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"amount `1.5` is not a plain decimal string" in _r6
	_r7 := all_msgs with input as req({"destination": {"destination_type": "Address", "account_output": {"address": "0xaaaa"}}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"amount `null` is not a plain decimal string" in _r7
}

test_utxo_total_is_capped if {
	two := [{"address": "bc1qa", "amount": "1.5"}, {"address": "bc1qb", "amount": "1.00000001"}]
	_r8 := all_denies with input as req({"chain_id": "BTC", "token_id": "BTC", "destination": {"destination_type": "Address", "utxo_outputs": two}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	msgs_in(_r8, amount_codes) == {"amount `2.50000001` of token `BTC` exceeds the per-transaction cap `2.5`"}
	ok := [{"address": "bc1qa", "amount": "1.5"}, {"address": "bc1qb", "amount": "1"}]
	_r9 := all_codes with input as req({"chain_id": "BTC", "token_id": "BTC", "destination": {"destination_type": "Address", "utxo_outputs": ok}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r9, amount_codes) == set()
}

test_uncapped_token_has_no_limit if {
	r := req({"token_id": "ETH_USDT", "destination": dest_to("0xtreasury", "999999999999")})
	_r10 := all_codes with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r10, amount_codes) == {"keysign.amount_over_cap"}
	r2 := req({"token_id": "ETH_USDT", "destination": dest_to("0xtreasury", "999999999999")})
	c := {d.code | some d in data.tss.keysign.deny} with input as r2
		with data.keysign as object.union(td, {"max_amount_per_tx": {"ETH_USDT": null}})
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	codes_in(c, amount_codes) == {"keysign.cap_malformed"}
	c2 := {d.code | some d in data.tss.keysign.deny} with input as req({"token_id": "BTC", "chain_id": "BTC", "destination": dest_to("bc1qa", "1000")})
		with data.keysign as json.remove(td, ["max_amount_per_tx/BTC"])
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	codes_in(c2, amount_codes) == set()
}

test_cap_malformed_fails_closed if {
	c := amount_rule_msgs with input as req({})
		with data.keysign as object.union(td, {"max_amount_per_tx": {"ETH": 50}})
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	c == {"configured cap `50` for token `ETH` is not a decimal string"}
}

# amount.rego's messages, evaluated under each test's `with` modifiers.
amount_rule_msgs := {d.msg | some d in data.tss.keysign.deny; d.code in amount_codes}

# A message signature carries no amount. When its destination type is not
# allowed, that is the reason (destination.rego); no amount or cap reason
# may send the reader elsewhere.
test_message_signature_gets_no_amount_reason if {
	r := req({"destination": {"destination_type": "EVM_EIP_191_Signature", "message": "0x00"}})
	m := amount_rule_msgs with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	m == set()
	r2 := req({"destination": {"destination_type": "EVM_EIP_712_Signature", "structured_data": "{}"}})
	m2 := amount_rule_msgs with input as r2 with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	m2 == set()
}

# Once somebody allows such a type, a capped token still cannot go
# unchecked (fail closed), and the reason says why.
test_capped_token_without_amount if {
	r := req({"destination": {"destination_type": "EVM_EIP_191_Signature", "message": "0x00"}})
	allowing := object.union(td, {"allowed_destination_types": ["Address", "EVM_EIP_191_Signature"]})
	m := amount_rule_msgs with input as r with data.keysign as allowing with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	m == {"the `EVM_EIP_191_Signature` destination names no amount, so the per-transaction cap of token `ETH` cannot be checked"}
	r2 := req({"destination": {"destination_type": "Address"}})
	m2 := amount_rule_msgs with input as r2 with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	m2 == {"the `Address` destination names no amount, so the per-transaction cap of token `ETH` cannot be checked"}
}

# Values are shown with their JSON type: the number 1000 and the string
# "1e3" are not confused, nor the string "null" with a missing amount.
test_amount_messages_show_json_types if {
	m1 := amount_rule_msgs with input as req({"destination": dest_to("0xaaaa", 1000)}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	m1 == {"amount `1000` is not a plain decimal string"}
	m2 := amount_rule_msgs with input as req({"destination": dest_to("0xaaaa", "null")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	m2 == {"amount `\"null\"` is not a plain decimal string"}
	m3 := amount_rule_msgs with input as req({"destination": dest_to("0xaaaa", "-5")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	m3 == {"amount `\"-5\"` is not a plain decimal string"}
	m4 := amount_rule_msgs with input as req({})
		with data.keysign as object.union(td, {"max_amount_per_tx": {"ETH": "50 ETH"}})
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	m4 == {"configured cap `50 ETH` for token `ETH` is not a decimal string"}
	m5 := amount_rule_msgs with input as req({})
		with data.keysign as object.union(td, {"max_amount_per_tx": {"ETH": "-50"}})
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	m5 == {"configured cap `\"-50\"` for token `ETH` is not a decimal string"}
}

test_cannot_total_too_many_outputs if {
	many := [{"address": "bc1qa", "amount": "0.00000001"} | some _ in numbers.range(1, 3)]
	r := req({"chain_id": "BTC", "token_id": "BTC", "destination": {"destination_type": "Address", "utxo_outputs": many}})
	m := {d.msg | some d in data.tss.keysign.deny} with input as r
		with data.keysign as td with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
		with data.tss.lib.decimal.max_terms as 2
	"cannot total the 3 amounts of this transaction" in m
}
