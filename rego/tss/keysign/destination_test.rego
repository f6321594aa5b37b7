package tss.keysign_test

test_allowed_destination_case_insensitive_on_evm if {
	codes(req({"destination": destination("0xAaAa", "1")})) == set()
}

test_destination_not_allowed if {
	msgs(req({"destination": destination("0xBBBB", "1")})) == {"destination address `0xBBBB` on chain `ETH` is not in the allowed destination list"}
}

test_non_evm_chain_is_case_sensitive if {
	r := req({"chain_id": "BTC", "token_id": "BTC", "destination": destination("BC1QA", "1")})
	"keysign.destination_not_allowed" in codes(r)
	codes(req({"chain_id": "BTC", "token_id": "BTC", "destination": destination("bc1qa", "1")})) == set()
}

test_every_utxo_output_checked if {
	r := req({"chain_id": "BTC", "token_id": "BTC", "destination": {"destination_type": "Address", "utxo_outputs": [{"address": "bc1qa", "amount": "1"}, {"address": "bc1qzzz", "amount": "1"}]}})
	msgs(r) == {"destination address `bc1qzzz` on chain `BTC` is not in the allowed destination list"}
}

test_destination_type_not_allowed if {
	r := req({"destination": {"destination_type": "EVM_EIP_191_Signature", "message": "0x00"}, "token_id": "BTC_X"})
	"destination type `EVM_EIP_191_Signature` is not in the allowed destination types" in msgs(r)
	"destination type `<missing>` is not in the allowed destination types" in msgs(req({"destination": {}}))
}

test_contract_destination_checked if {
	ok := {"destination_type": "EVM_Contract", "address": "0xContract", "value": "0"}
	codes(req({"destination": ok})) == set()
	bad := {"destination_type": "EVM_Contract", "address": "0xdead", "value": "0"}
	codes(req({"destination": bad})) == {"keysign.destination_not_allowed"}
}

test_address_destination_without_address if {
	"destination of type `Address` names no address" in msgs(req({"destination": {"destination_type": "Address"}}))
	"destination output #0 has no address" in msgs(req({"destination": {"destination_type": "Address", "account_output": {"amount": "1"}}}))
	"destination output #1 has no address" in msgs(req({"destination": {"destination_type": "Address", "utxo_outputs": [{"address": "0xaaaa", "amount": "1"}, {"address": " ", "amount": "1"}]}}))
}
