# Tests for destination.rego; each asserts only the codes of its rules.
package tss.keysign_test

destination_codes := {"keysign.destination_type_not_allowed", "keysign.destination_missing", "keysign.destination_not_allowed"}

test_allowed_destination_case_insensitive_on_evm if {
	_r1 := all_codes with input as req({"destination": dest_to("0xAaAa", "1")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r1, destination_codes) == set()
}

test_destination_not_allowed if {
	_r2 := all_denies with input as req({"destination": dest_to("0xBBBB", "1")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	msgs_in(_r2, destination_codes) == {"destination address `0xBBBB` on chain `ETH` is not in the allowed destination list"}
}

test_non_evm_chain_is_case_sensitive if {
	r := req({"chain_id": "BTC", "token_id": "BTC", "destination": dest_to("BC1QA", "1")})
	_r3 := all_codes with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"keysign.destination_not_allowed" in _r3
	_r4 := all_codes with input as req({"chain_id": "BTC", "token_id": "BTC", "destination": dest_to("bc1qa", "1")}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r4, destination_codes) == set()
}

test_every_utxo_output_checked if {
	r := req({"chain_id": "BTC", "token_id": "BTC", "destination": {"destination_type": "Address", "utxo_outputs": [{"address": "bc1qa", "amount": "1"}, {"address": "bc1qzzz", "amount": "1"}]}})
	_r5 := all_denies with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	msgs_in(_r5, destination_codes) == {"destination address `bc1qzzz` on chain `BTC` is not in the allowed destination list"}
}

test_destination_type_not_allowed if {
	r := req({"destination": {"destination_type": "EVM_EIP_191_Signature", "message": "0x00"}, "token_id": "BTC_X"})
	_r6 := all_msgs with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"destination type `EVM_EIP_191_Signature` is not in the allowed destination types" in _r6
	_r7 := all_msgs with input as req({"destination": {}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"destination type `<missing>` is not in the allowed destination types" in _r7
}

test_contract_destination_checked if {
	ok := {"destination_type": "EVM_Contract", "address": "0xContract", "value": "0"}
	_r8 := all_codes with input as req({"destination": ok}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r8, destination_codes) == set()
	bad := {"destination_type": "EVM_Contract", "address": "0xdead", "value": "0"}
	_r9 := all_codes with input as req({"destination": bad}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r9, destination_codes) == {"keysign.destination_not_allowed"}
}

test_address_destination_without_address if {
	_r10 := all_msgs with input as req({"destination": {"destination_type": "Address"}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"destination of type `Address` names no address" in _r10
	_r11 := all_msgs with input as req({"destination": {"destination_type": "Address", "account_output": {"amount": "1"}}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"destination output #0 has no address" in _r11
	_r12 := all_msgs with input as req({"destination": {"destination_type": "Address", "utxo_outputs": [{"address": "0xaaaa", "amount": "1"}, {"address": " ", "amount": "1"}]}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"destination output #1 has no address" in _r12
}
