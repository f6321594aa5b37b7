# KEYSIGN: signing a transaction or message. This file holds the package's
# `allow` (there is a transaction to judge), the shared helpers every
# keysign rule uses, and the request-shape checks. The business rules live
# one per file beside it (token, wallet, destination, amount, usdt_cap).
package tss.keysign

import data.tss.lib.decimal
import data.tss.lib.erc
import data.tss.lib.fmt

# --- helpers shared by the keysign rule files -------------------------------

# The transaction Cobo wants signed (extra_info.transaction).
tx := input.extra.transaction

has_tx if is_object(tx)

# chain: the chain id as sent, for rule bodies (undefined when absent, so
# nothing matches it). The *_text forms below never are undefined: they go
# into deny messages, and a deny whose message is undefined does not fire.
chain := tx.chain_id

chain_text := fmt.field(tx, "chain_id")

token := fmt.field(tx, "token_id")

# `else`, not a negation: `not is_object(tx.destination)` would be
# undefined in OPA when the field is missing (regorus says true), and the
# `{}` branch would never be taken there.
destination := tx.destination if is_object(tx.destination)
else := {}

destination_type := fmt.field(destination, "destination_type")

# outputs: every {address, amount} the transaction pays to, whatever the
# destination shape: account chains (account_output), UTXO chains
# (utxo_outputs) and contract calls (address + value).
# A non-object output becomes {} (so it is reported as having no address)
# rather than dropped: dropping it would let it skip the address checks.
account_outputs := [as_object(o) | o := destination.account_output]

utxo_outputs := [as_object(o) | some o in as_array(destination.utxo_outputs)]

contract_outputs := [{"address": a, "amount": object.get(destination, "value", "0")} |
	a := destination.address
]

outputs := array.concat(array.concat(account_outputs, utxo_outputs), contract_outputs)

# amounts: every amount the transaction moves (`null` where one is absent,
# which the amount rule reports as malformed). Wallet-to-wallet
# destinations carry a single top-level `amount`.
amounts := array.concat(
	[object.get(o, "amount", null) | some o in outputs],
	[a | a := destination.amount],
)

# total: the exact sum of amounts, undefined when any is malformed.
total := decimal.total(amounts)

# address(a): an address as stored in data, for chain `chain`. Chains in
# keysign.lowercase_address_chains (EVM) compare lower-case.
lowercase_chain if chain in data.keysign.lowercase_address_chains

address(a) := lower(a) if lowercase_chain
else := lower(a) if upper_bech32(a)
else := a

# BIP173 allows a bech32 address written all upper-case (QR codes do); it
# is the same address as its lower-case form, the one the allow-lists are
# written in (tss-gate refuses any other spelling there at load).
upper_bech32(a) if regex.match(`^(BC|TB|BCRT)1[02-9AC-HJ-NP-Z]{6,87}$`, a)

# in_address_book(book, a): `book` is {chain_id: {address: true}}.
in_address_book(book, a) if {
	is_string(a)
	book[chain][address(a)] == true
}

# One definition instead of an is_object/not is_object pair: this runs for
# every output, and each extra definition is evaluated on every call.
as_object(x) := object.get({true: x}, is_object(x), {})

# as_array guards iteration: regorus raises an error on `some x in "str"`
# where OPA is merely undefined. A non-array becomes [{}] (fail closed).
as_array(x) := x if is_array(x)

as_array(x) := [{}] if not is_array(x)

# --- allow ---------------------------------------------------------------------

# Fail closed: without a transaction object nothing can be judged.
allow if has_tx

# --- request-shape checks ----------------------------------------------------------

deny contains {
	"code": "keysign.transaction_missing",
	"msg": "extra_info.transaction is missing: nothing to judge",
} if not has_tx

deny contains {
	"code": "keysign.msg_hash_list_empty",
	"msg": "request_detail.msg_hash_list is missing or empty",
} if not has_msg_hashes

has_msg_hashes if {
	is_array(input.detail.msg_hash_list)
	count(input.detail.msg_hash_list) > 0
}

deny contains {
	"code": "keysign.msg_hash_malformed",
	"msg": sprintf("message hash `%s` is not a hex string", [fmt.show(h)]),
} if {
	is_array(input.detail.msg_hash_list)
	some h in input.detail.msg_hash_list
	not hex(h)
}

hex(h) if {
	is_string(h)
	regex.match(`^(0x)?[0-9a-fA-F]+$`, h)
}

# The TSS Node's own embedded switch for KEYSIGN, honoured for parity.
deny contains {
	"code": "keysign.reject_all",
	"msg": sprintf("KEYSIGN is rejected: embedded_risk_control_rules.key_sign.reject_all is `%s` (only an explicit false admits KEYSIGN)", [erc.reject_all_text("key_sign")]),
} if {
	not erc.disabled
	not erc.permits("key_sign")
}
