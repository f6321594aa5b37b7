# Tests for calls.rego (contract calls and token approvals) on their own
# data, the shipped example's: USDT `approve` allowed only to Permit2, at
# most 50,000, never unlimited. Each asserts only the codes of the call rules and of the
# destination rules a call passes through.
package tss.keysign_calls_test

usdt := "0xdac17f958d2ee523a2206206994597c13d831ec7"

permit2 := "0x000000000022d473030f116ddee9f6b43ac78ba3"

call_codes := {
	"keysign.call_missing", "keysign.call_unknown_contract", "keysign.call_unknown_function",
	"keysign.call_malformed", "keysign.call_not_allowed", "keysign.approval_token_unknown",
	"keysign.approval_spender_not_allowed", "keysign.approval_unlimited", "keysign.approval_over_cap",
	"keysign.call_value_not_allowed", "keysign.destination_type_not_allowed",
	"keysign.destination_not_allowed", "keysign.call_moves_tokens",
}

approval(spender, units, unlimited) := {
	"kind": "approve", "token": usdt, "token_id": "ETH_USDT", "spender": spender,
	"amount": "0", "amount_units": units, "unlimited": unlimited, "expiration": null,
}

approve_call := {
	"contract": usdt, "contract_name": "Tether USD", "known_contract": true, "known_function": true,
	"function": "approve", "signature": "approve(address,uint256)", "selector": "0x095ea7b3",
	"args": {"spender": permit2, "amount": "25000000000"}, "value": "0",
	"approval": approval(permit2, "25000", false), "error": null,
}

req(dest_type, address, call) := {
	"request_type": "KEYSIGN",
	"detail": {"msg_hash_list": ["00"]},
	"extra": {"transaction": {
		"chain_id": "ETH", "token_id": "ETH",
		"destination": {"destination_type": dest_type, "address": address, "value": "0"},
	}},
	"derived": {"error": null, "call": call},
}

# The tests' own data: the shipped example's call knobs, nothing else.
calls_td := {
	"allowed_destination_types": ["Address"],
	"lowercase_address_chains": ["ETH"],
	"allowed_destinations": {"ETH": {"0xd8da6bf26964af9d7eed9e03e53415d37aa96045": true}},
	"allowed_calls": {"ETH": {usdt: ["approve"]}},
	"approval_spenders": {"ETH_USDT": {permit2: {"max_amount": "50000"}}},
}

codes(r) := c if {
	denies := data.tss.keysign.deny with input as r with data.keysign as calls_td
	c := {d.code | some d in denies; d.code in call_codes}
}

test_the_shipped_approve_passes_every_call_rule if {
	codes(req("EVM_Contract", "0xdAC17F958D2ee523a2206206994597C13D831ec7", approve_call)) == set()
}

test_at_the_cap_passes_and_one_unit_over_is_denied if {
	codes(req("EVM_Contract", usdt, object.union(approve_call, {"approval": approval(permit2, "50000", false)}))) == set()
	codes(req("EVM_Contract", usdt, object.union(approve_call, {"approval": approval(permit2, "50000.000001", false)}))) == {"keysign.approval_over_cap"}
}

test_the_tokens_per_transaction_cap_bounds_an_approval if {
	r := req("EVM_Contract", usdt, object.union(approve_call, {"approval": approval(permit2, "20000", false)}))
	denies := data.tss.keysign.deny with input as r with data.keysign as object.union(calls_td, {"max_amount_per_tx": {"ETH_USDT": "10000"}})
	{d.msg | some d in denies; d.code == "keysign.approval_over_cap"} == {"the call approves \"20000\" `ETH_USDT`, above the token's per-transaction cap of \"10000\""}
	ok := data.tss.keysign.deny with input as r with data.keysign as object.union(calls_td, {"max_amount_per_tx": {"ETH_USDT": "20000"}})
	{d | some d in ok; d.code == "keysign.approval_over_cap"} == set()
}

test_another_spender_is_denied if {
	c := object.union(approve_call, {"approval": approval("0xd8da6bf26964af9d7eed9e03e53415d37aa96045", "1", false)})
	codes(req("EVM_Contract", usdt, c)) == {"keysign.approval_spender_not_allowed"}
}

test_unlimited_is_denied_whatever_the_units if {
	c := object.union(approve_call, {"approval": approval(permit2, "1", true)})
	codes(req("EVM_Contract", usdt, c)) == {"keysign.approval_unlimited"}
	# Not a boolean: fail closed.
	d := object.union(approve_call, {"approval": approval(permit2, "1", "false")})
	codes(req("EVM_Contract", usdt, d)) == {"keysign.approval_unlimited"}
}

test_an_unknown_token_is_denied if {
	a := object.union(approval(permit2, null, false), {"token_id": null})
	codes(req("EVM_Contract", usdt, object.union(approve_call, {"approval": a}))) == {"keysign.approval_token_unknown"}
}

test_value_with_an_approval_is_denied if {
	codes(req("EVM_Contract", usdt, object.union(approve_call, {"value": "1"}))) == {"keysign.call_value_not_allowed"}
}

test_unknown_contract_is_denied_and_not_a_destination if {
	c := object.union(approve_call, {"contract": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "known_contract": false, "known_function": false, "contract_name": null, "function": null, "signature": null, "approval": null, "args": {}})
	codes(req("EVM_Contract", "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", c)) == {
		"keysign.call_unknown_contract",
		"keysign.destination_type_not_allowed",
		"keysign.destination_not_allowed",
	}
}

test_unknown_function_is_denied if {
	c := object.union(approve_call, {"known_function": false, "function": null, "signature": null, "approval": null, "args": {}, "selector": "0xa9059cbb"})
	codes(req("EVM_Contract", usdt, c)) == {
		"keysign.call_unknown_function",
		"keysign.destination_type_not_allowed",
		"keysign.destination_not_allowed",
	}
}

test_malformed_calldata_is_denied if {
	c := object.union(approve_call, {"error": "calldata is not the canonical encoding", "approval": null, "args": {}})
	codes(req("EVM_Contract", usdt, c)) == {
		"keysign.call_malformed",
		"keysign.destination_type_not_allowed",
		"keysign.destination_not_allowed",
	}
}

test_a_pinned_function_not_in_allowed_calls_is_denied if {
	c := object.union(approve_call, {"function": "increaseAllowance"})
	codes(req("EVM_Contract", usdt, c)) == {
		"keysign.call_not_allowed",
		"keysign.destination_type_not_allowed",
		"keysign.destination_not_allowed",
	}
}

test_a_contract_call_without_calldata_is_denied if {
	codes(req("EVM_Contract", usdt, null)) == {
		"keysign.call_missing",
		"keysign.destination_type_not_allowed",
		"keysign.destination_not_allowed",
	}
}

# The pinned call admits its own contract, not another address named
# as the destination.
test_the_destination_must_be_the_called_contract if {
	codes(req("EVM_Contract", "0x00000000000000000000000000000000deadbeef", approve_call)) == {"keysign.destination_not_allowed"}
}

# An Address transfer is not judged by the call rules (check_description
# refuses anything but a plain transfer there).
test_address_destinations_are_not_call_governed if {
	codes(req("Address", usdt, approve_call)) == {"keysign.destination_not_allowed"}
}

# An operator who lists `transfer` in allowed_calls still cannot pay a
# recipient through it that no destination check sees.
test_a_transfer_through_an_allowed_call_is_denied if {
	mallory := "0x00000000000000000000000000000000000badd0"
	c := object.union(approve_call, {"function": "transfer", "signature": "transfer(address,uint256)", "selector": "0xa9059cbb", "args": {"to": mallory, "amount": "1000000000000"}, "approval": null})
	r := object.union(req("EVM_Contract", usdt, c), {"derived": {"token_transfer": {"standard": "erc20", "method": "transfer", "contract": usdt, "from": null, "recipient": mallory, "amount": "1000000000000"}}})
	denies := data.tss.keysign.deny with input as r with data.keysign as object.union(calls_td, {"allowed_calls": {"ETH": {usdt: ["approve", "transfer"]}}})
	c2 := {d.code | some d in denies; d.code in call_codes}
	c2 == {"keysign.call_moves_tokens"}
	msgs := {d.msg | some d in denies; d.code == "keysign.call_moves_tokens"}
	msgs == {sprintf("the call `transfer` of %s moves `\"1000000000000\"` token units to %s; a transfer inside a contract call is not admitted (describe it as an Address transfer)", [usdt, mallory])}

	# An approval is not a token transfer: the rule stays silent.
	ok := object.union(req("EVM_Contract", usdt, approve_call), {"derived": {"token_transfer": {"standard": "erc20", "method": "approve", "contract": usdt, "from": null, "recipient": permit2, "amount": "25000000000"}}})
	codes(ok) == set()
}
