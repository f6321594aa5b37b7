# KEYSIGN rules on where the value goes: the destination type must be one
# somebody allowed, and every destination address (account output, each
# UTXO output, contract address) must be in the per-chain allow-list
# data.keysign.allowed_destinations (entry `true` or {added_at: ...}).
package tss.keysign

import data.tss.lib.fmt

deny contains {
	"code": "keysign.destination_type_not_allowed",
	"msg": sprintf("destination type `%s` is not in the allowed destination types", [destination_type]),
} if {
	has_tx
	not destination_type_allowed
}

destination_type_allowed if destination.destination_type in data.keysign.allowed_destination_types

# `EVM_Contract` is not listed: a contract call is admitted only as a
# pinned call the operator allows (calls.rego), and its contract is then
# the destination that call names, nothing else.
destination_type_allowed if pinned_call_allowed

deny contains {
	"code": "keysign.destination_missing",
	"msg": "destination of type `Address` names no address",
} if {
	has_tx
	destination.destination_type == "Address"
	count(outputs) == 0
}

deny contains {
	"code": "keysign.destination_missing",
	"msg": sprintf("destination output #%d has no address", [i]),
} if {
	some i, o in outputs
	not valid_address(object.get(o, "address", null))
}

valid_address(a) if {
	is_string(a)
	trim_space(a) != ""
}

deny contains {
	"code": "keysign.destination_not_allowed",
	"msg": sprintf("destination address `%s` on chain `%s` is not in the allowed destination list", [fmt.show(a), chain_text]),
} if {
	some o in outputs
	a := o.address
	valid_address(a)
	not destination_allowed(a)
}

destination_allowed(a) if in_address_book(data.keysign.allowed_destinations, a)

destination_allowed(a) if {
	pinned_call_allowed
	is_string(a)
	address(a) == call.contract
}

# An entry may also be {added_at: ...}: listed, under the cool-down that
# controls.rego applies (which also denies a malformed added_at).
destination_allowed(a) if {
	is_string(a)
	is_object(data.keysign.allowed_destinations[chain][address(a)])
}
