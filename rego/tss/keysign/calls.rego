# KEYSIGN rules for contract calls (destination_type `EVM_Contract`).
#
# tss-gate decodes the call from the signed bytes through the ABIs the
# operator pinned in data.integrity.contracts and puts it at
# input.derived.call (docs/derived.md, "Contract calls"): the contract, the
# pinned function its selector names, the strictly decoded arguments, and
# for token approvals input.derived.call.approval. Cobo's own description of
# the call (calldata_info) is attacker input: tss-gate compares it with the
# decoded call (violation keysign.calldata_info_mismatch, integrity.rego).
#
# What allowing a contract call means: `EVM_Contract` is NOT in
# keysign.allowed_destination_types. A call is admitted only as one of
# keysign.allowed_calls (chain -> contract -> [function names]) of a
# contract pinned in data.integrity.contracts; every other EVM_Contract
# request is denied (destination.rego, and the rules below). The proof
# covers which contract is called, with which function and arguments, as
# signed; not what the contract's code does with them.
#
# Knobs (rego/data.yaml):
#   keysign.allowed_calls        chain_id -> contract -> [function names]
#   keysign.approval_spenders    token_id -> spender -> {max_amount}
#   keysign.max_amount_per_tx    bounds an approval as it bounds a transfer
package tss.keysign

import data.tss.lib.decimal
import data.tss.lib.fmt

contract_call if destination_type == "EVM_Contract"

call := input.derived.call

call_decoded if is_object(call)

# The pinned function this call makes is one the operator allows. Read by
# destination.rego: only such a call makes EVM_Contract an allowed type and
# its contract an allowed destination.
pinned_call_allowed if {
	contract_call
	call.known_function == true
	call.error == null
	some f in data.keysign.allowed_calls[chain][call.contract]
	f == call.function
}

deny contains {
	"code": "keysign.call_missing",
	"msg": "the description is a contract call, but the raw transaction carries no calldata to a contract",
} if {
	contract_call
	is_object(input.derived)
	input.derived.error == null
	not call_decoded
}

deny contains {
	"code": "keysign.call_unknown_contract",
	"msg": sprintf("contract %s on chain `%s` is not in data.integrity.contracts, so its call cannot be read", [fmt.show(call.contract), chain_text]),
} if {
	contract_call
	call_decoded
	call.known_contract != true
}

deny contains {
	"code": "keysign.call_unknown_function",
	"msg": sprintf("selector %s is not a function pinned for %s (%s)", [fmt.show(call.selector), fmt.show(call.contract_name), fmt.show(call.contract)]),
} if {
	contract_call
	call_decoded
	call.known_contract == true
	call.known_function != true
}

deny contains {
	"code": "keysign.call_malformed",
	"msg": sprintf("call of %s to %s: %s", [fmt.show(call.signature), fmt.show(call.contract), fmt.text(call.error)]),
} if {
	contract_call
	call_decoded
	call.error != null
}

deny contains {
	"code": "keysign.call_not_allowed",
	"msg": sprintf("function `%s` of %s (%s) on chain `%s` is not in keysign.allowed_calls", [fmt.show(call.function), fmt.show(call.contract_name), fmt.show(call.contract), chain_text]),
} if {
	contract_call
	call_decoded
	call.known_function == true
	call.error == null
	not pinned_call_allowed
}

# --- token approvals --------------------------------------------------------

approval := call.approval if {
	contract_call
	call_decoded
	is_object(call.approval)
}

approval_limit := data.keysign.approval_spenders[approval.token_id][approval.spender]

deny contains {
	"code": "keysign.approval_token_unknown",
	"msg": sprintf("the call approves spending of token contract %s, which is not in data.integrity.tokens", [fmt.show(approval.token)]),
} if {
	approval
	not approval_token_known
}

approval_token_known if is_string(approval.token_id)

deny contains {
	"code": "keysign.approval_spender_not_allowed",
	"msg": sprintf("the call lets %s spend `%s`; it is not in keysign.approval_spenders for that token", [fmt.show(approval.spender), fmt.show(approval.token_id)]),
} if {
	approval_token_known
	not approval_limit
}

deny contains {
	"code": "keysign.approval_unlimited",
	"msg": sprintf("the call approves an unlimited amount of `%s` to %s", [fmt.show(approval.token_id), fmt.show(approval.spender)]),
} if {
	approval
	approval.unlimited != false
}

deny contains {
	"code": "keysign.approval_over_cap",
	"msg": sprintf("the call approves %s `%s` to %s, above its cap of %s", [fmt.show(approval.amount_units), fmt.show(approval.token_id), fmt.show(approval.spender), fmt.show(approval_limit.max_amount)]),
} if {
	approval
	approval_limit
	not approval_within_cap
}

approval_within_cap if {
	decimal.valid(approval.amount_units)
	decimal.valid(approval_limit.max_amount)
	decimal.at_most(approval.amount_units, approval_limit.max_amount)
}

# An approval is a transfer the spender makes later: the token's
# per-transaction cap (keysign.max_amount_per_tx) bounds it as it bounds a
# transfer.
deny contains {
	"code": "keysign.approval_over_cap",
	"msg": sprintf("the call approves %s `%s`, above the token's per-transaction cap of %s", [fmt.show(approval.amount_units), fmt.show(approval.token_id), fmt.show(token_tx_cap)]),
} if {
	approval
	token_tx_cap
	not approval_within_token_cap
}

token_tx_cap := data.keysign.max_amount_per_tx[approval.token_id]

approval_within_token_cap if {
	decimal.valid(approval.amount_units)
	decimal.valid(token_tx_cap)
	decimal.at_most(approval.amount_units, token_tx_cap)
}

# A token call has no use for native value: value sent with it goes to the
# token contract, which keeps it or reverts.
deny contains {
	"code": "keysign.call_value_not_allowed",
	"msg": sprintf("the approval call also sends %s base units of the native coin", [fmt.show(call.value)]),
} if {
	approval
	call.value != "0"
}

# A token transfer made through a pinned call (`transfer`, `transferFrom`
# on a token contract an operator lists in allowed_calls) would pay a
# recipient that neither the destination allow-list nor the caps see: they
# judge `destination.address`, the token contract. Until such recipients
# are judged like a plain transfer's, the call is refused: send the
# transfer as an `Address` destination, where every check applies.
deny contains {
	"code": "keysign.call_moves_tokens",
	"msg": sprintf("the call `%s` of %s moves `%s` token units to %s; a transfer inside a contract call is not admitted (describe it as an Address transfer)", [fmt.show(input.derived.token_transfer.method), fmt.show(call.contract), fmt.show(input.derived.token_transfer.amount), fmt.show(input.derived.token_transfer.recipient)]),
} if {
	contract_call
	pinned_call_allowed
	is_object(input.derived.token_transfer)
	input.derived.token_transfer.method != "approve"
}
