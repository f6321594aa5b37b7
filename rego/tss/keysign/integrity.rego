# KEYSIGN rule: what the node signs must be what was described.
#
# tss-gate decodes `transaction.raw_tx_info.unsigned_raw_tx` in Rust before
# evaluation and puts the facts at `input.derived` (docs/derived.md): the
# signing hashes computed from the bytes, whether every `msg_hash_list` entry
# is one of them, and whether the decoded recipient/amount/asset agree with
# the description. These rules turn those facts into denials for the chains
# listed in data.integrity.enforce_chains (the EVM chains by default), so no
# other rule ever judges a description that the signed bytes contradict.
package tss.keysign

import data.tss.lib.fmt

integrity_enforced if chain in data.integrity.enforce_chains

# Destination kinds that move value and so must come with the bytes that
# move it; message signatures carry no transaction.
value_moving_destinations := {"Address", "EVM_Contract"}

has_raw_tx if {
	is_string(tx.raw_tx_info.unsigned_raw_tx)
	tx.raw_tx_info.unsigned_raw_tx != ""
}

deny contains {
	"code": "keysign.raw_tx_missing",
	"msg": sprintf("chain `%s` requires `unsigned_raw_tx` to verify what is signed, but the transaction has none", [chain_text]),
} if {
	has_tx
	chain in data.integrity.require_raw_tx_chains
	destination.destination_type in value_moving_destinations
	not has_raw_tx
}

# The server derives facts for every raw transaction it sees; a raw
# transaction without them (derivation disabled or failed) is not trusted.
deny contains {
	"code": "keysign.raw_tx_not_derived",
	"msg": sprintf("`unsigned_raw_tx` on chain `%s` was not decoded, so what is signed cannot be verified", [chain_text]),
} if {
	has_tx
	integrity_enforced
	has_raw_tx
	not has_derived
}

# Rules, not calls on input.derived inside `not` (see keysign.rego). Every
# field is read with a default that fails closed, so hand-written or partial
# facts (an `opa eval` input, a test) deny instead of skipping the checks.
has_derived if is_object(input.derived)

derived_error := object.get(input.derived, "error", "facts carry no `error` field") if has_derived

deny contains {
	"code": "keysign.raw_tx_undecodable",
	"msg": sprintf("`unsigned_raw_tx` on chain `%s` cannot be decoded: %s", [chain_text, fmt.show(derived_error)]),
} if {
	has_tx
	integrity_enforced
	derived_error != null
}

derived_ok if derived_error == null

deny contains {
	"code": "keysign.msg_hash_mismatch",
	"msg": sprintf(
		"msg_hash_list entries [%s] are not signing hashes of unsigned_raw_tx (computed [%s])",
		[fmt.list(unmatched), fmt.list(object.get(input.derived, "signing_hashes", []))],
	),
} if {
	has_tx
	integrity_enforced
	derived_ok
	object.get(input.derived, "msg_hashes_match", false) != true
	unmatched := object.get(input.derived, "unmatched_msg_hashes", [])
}

deny contains {
	"code": "keysign.raw_tx_disagrees",
	"msg": sprintf("raw transaction disagrees with the description: %s", [fmt.show(d)]),
} if {
	has_tx
	integrity_enforced
	derived_ok
	description_disagrees
	some d in disagreements
}

# Disagreeing without saying why still denies.
deny contains {
	"code": "keysign.raw_tx_disagrees",
	"msg": "raw transaction disagrees with the description",
} if {
	has_tx
	integrity_enforced
	derived_ok
	description_disagrees
	count(disagreements) == 0
}

# Read only once the facts are a decoded object (derived_ok).
description_disagrees if object.get(input.derived, "description_agrees", false) != true

disagreements := as_list(object.get(input.derived, "disagreements", [])) if has_derived

# A token transfer must go through the contract data names for the token:
# a look-alike contract with the same transfer() moves a worthless token
# while the description claims USDT.
deny contains {
	"code": "keysign.token_contract_mismatch",
	"msg": sprintf(
		"token `%s` on chain `%s` must use contract `%s`, but the raw transaction calls `%s`",
		[token, chain_text, expected, token_contract],
	),
} if {
	has_tx
	integrity_enforced
	derived_ok
	expected := data.integrity.token_contracts[chain][tx.token_id]
	lower(token_contract) != lower(expected)
}

token_contract := fmt.show(object.get(input.derived.token_transfer, "contract", null)) if {
	is_object(input.derived.token_transfer)
}

as_list(x) := x if is_array(x)

as_list(x) := [] if not is_array(x)
