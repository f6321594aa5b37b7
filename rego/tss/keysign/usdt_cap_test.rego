# Tests for the worked example usdt_cap.rego (see rego/README.md); each
# asserts only the codes of its rules.
package tss.keysign_test

usdt_cap_codes := {"keysign.usdt_cap_exceeded", "keysign.cap_malformed"}

usdt(addr, amount) := req({"token_id": "ETH_USDT", "destination": dest_to(addr, amount)})

test_usdt_under_or_at_cap_to_anyone if {
	_r1 := all_codes with input as usdt("0xaaaa", "9999.99") with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r1, usdt_cap_codes) == set()
	_r2 := all_codes with input as usdt("0xaaaa", "10000.000000") with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r2, usdt_cap_codes) == set()
}

test_usdt_over_cap_to_non_treasury_denied if {
	_r3 := all_denies with input as usdt("0xaaaa", "10000.000001") with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	msgs_in(_r3, usdt_cap_codes) == {"USDT amount `10000.000001` of token `ETH_USDT` exceeds the `10000` per-transaction cap and not every destination is a treasury address"}
}

test_usdt_over_cap_to_treasury_allowed if {
	_r4 := all_codes with input as usdt("0xTreasury", "250000") with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r4, usdt_cap_codes) == set()
}

test_usdt_split_between_treasury_and_other_denied if {
	outs := [{"address": "0xtreasury", "amount": "9000"}, {"address": "0xaaaa", "amount": "2000"}]
	r := req({"token_id": "ETH_USDT", "destination": {"destination_type": "Address", "utxo_outputs": outs}})
	_r5 := all_codes with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r5, usdt_cap_codes) == {"keysign.usdt_cap_exceeded"}
}

test_non_usdt_token_not_subject if {
	_r6 := all_codes with input as req({"token_id": "BTC", "chain_id": "BTC", "destination": dest_to("bc1qa", "2")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r6, usdt_cap_codes) == set()
}

test_usdt_cap_malformed_fails_closed if {
	c := {d.msg | some d in data.tss.keysign.deny; d.code in usdt_cap_codes} with input as usdt("0xaaaa", "1")
		with data.keysign as object.union(td, {"usdt_cap": {"max_amount": "10k"}})
		with data.integrity as no_integrity
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	c == {"configured USDT cap `10k` is not a decimal string"}
}
