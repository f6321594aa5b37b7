# KEYSIGN rules on how much moves: every amount must be a plain decimal
# string, and the transaction's total must not exceed the token's cap in
# data.keysign.max_amount_per_tx (decimal strings, compared exactly).
# Tokens without a cap entry have no amount limit here. Values from the
# request are shown with fmt.show, so a string "1e3" reads `"1e3"` and
# cannot be taken for the number.
package tss.keysign

import data.tss.lib.decimal
import data.tss.lib.fmt

deny contains {
	"code": "keysign.amount_malformed",
	"msg": sprintf("amount `%s` is not a plain decimal string", [fmt.show(a)]),
} if {
	some a in amounts
	not decimal.valid(a)
}

# Too many outputs to total exactly (see decimal.total): fail closed.
deny contains {
	"code": "keysign.amount_malformed",
	"msg": sprintf("cannot total the %d amounts of this transaction", [count(amounts)]),
} if {
	count(amounts) > 0
	every a in amounts { decimal.valid(a) }
	not total_key
}

cap := data.keysign.max_amount_per_tx[tx.token_id]

# has_cap: the token has a cap entry, whatever its value (false and null
# included, so a malformed entry is reported rather than ignored).
has_cap if count([cap]) == 1

# The comparison keys (decimal.key), each computed once. A cap without a
# key (not a decimal string) is reported as malformed.
cap_key := decimal.key(cap)

# Defined exactly when `total` is. One amount (the usual case) is keyed
# directly: `total` is then only formatted if a message needs it.
total_key := decimal.key(amounts[0]) if count(amounts) == 1
else := decimal.key(total)

deny contains {
	"code": "keysign.cap_malformed",
	"msg": sprintf("configured cap `%s` for token `%s` is not a decimal string", [fmt.show(cap), token]),
} if {
	has_cap
	not cap_key
}

# No amount to hold against the cap. Only for a destination type somebody
# allowed: any other (a message signature such as EVM_EIP_191_Signature,
# which carries no amount by nature) is denied by destination.rego as
# `keysign.destination_type_not_allowed`, and "amount missing" would
# send the reader after the wrong problem. Either way the request is
# denied (fail closed).
deny contains {
	"code": "keysign.amount_missing",
	"msg": sprintf("the `%s` destination names no amount, so the per-transaction cap of token `%s` cannot be checked", [destination_type, token]),
} if {
	has_cap
	count(amounts) == 0
	destination_type_allowed
}

within_cap if total_key <= cap_key

deny contains {
	"code": "keysign.amount_over_cap",
	"msg": sprintf("amount `%s` of token `%s` exceeds the per-transaction cap `%s`", [total, token, cap]),
} if {
	cap_key
	total_key
	not within_cap
}
