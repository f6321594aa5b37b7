# KEYSIGN rule: what the node signs must be what was described, on the
# described chain, in the described token, with the described key.
#
# tss-gate decodes `transaction.raw_tx_info.unsigned_raw_tx` in Rust before
# evaluation and puts the facts at `input.derived` (docs/derived.md): the
# signing hashes computed from the bytes, whether every `msg_hash_list` entry
# is one of them, whether the decoded recipient/amount/asset agree with the
# description, the most the bytes can spend on fees, and `violations`: the
# bindings the server checked against data.integrity (numeric chain id,
# pinned contract or mint, BIP-44 coin type, the address the key signs for,
# the source account). These rules turn those facts into denials.
#
# Fail closed: EVERY KEYSIGN is checked, on every chain, unless the operator
# names the chain in data.integrity.unverified_chains (empty by default). A
# chain or token the tables do not know, a missing raw transaction, a raw
# transaction that does not decode, and facts that are missing or partial
# all deny.
package tss.keysign

import data.tss.lib.decimal
import data.tss.lib.fmt

chain_exempt if chain in data.integrity.unverified_chains

integrity_enforced if {
	has_tx
	not chain_exempt
}

chain_info := data.integrity.chains[chain]

token_info := data.integrity.tokens[tx.token_id]

chain_known if is_object(chain_info)

token_known if is_object(token_info)

deny contains {
	"code": "keysign.chain_unknown",
	"msg": sprintf("chain `%s` is not in data.integrity.chains, so nothing binds what is signed to it", [chain_text]),
} if {
	integrity_enforced
	not chain_known
}

deny contains {
	"code": "keysign.token_unknown",
	"msg": sprintf("token `%s` is not in data.integrity.tokens, so the asset the bytes move cannot be checked", [token]),
} if {
	integrity_enforced
	not token_known
}

deny contains {
	"code": "keysign.token_wrong_chain",
	"msg": sprintf("token `%s` belongs to chain `%s`, not to the described chain `%s`", [token, fmt.show(token_info.chain), chain_text]),
} if {
	integrity_enforced
	token_known
	token_info.chain != chain
}

# The Rust loader refuses an unpinned token; this covers data given to OPA
# directly, so the library is fail-closed on its own too.
deny contains {
	"code": "keysign.token_not_pinned",
	"msg": sprintf("token `%s` pins no contract or mint in data.integrity.tokens and is not native", [token]),
} if {
	integrity_enforced
	token_known
	not token_pinned
}

token_pinned if token_info.native == true

token_pinned if is_string(token_info.contract)

token_pinned if is_string(token_info.mint)

has_raw_tx if {
	is_string(tx.raw_tx_info.unsigned_raw_tx)
	tx.raw_tx_info.unsigned_raw_tx != ""
}

deny contains {
	"code": "keysign.raw_tx_missing",
	"msg": sprintf("chain `%s` requires `unsigned_raw_tx` to verify what is signed, but this `%s` transaction has none (only data.integrity.unverified_chains exempts a chain)", [chain_text, destination_type]),
} if {
	integrity_enforced
	not has_raw_tx
}

# The server derives facts for every raw transaction it sees; a raw
# transaction without them (derivation disabled or failed) is not trusted.
deny contains {
	"code": "keysign.raw_tx_not_derived",
	"msg": sprintf("`unsigned_raw_tx` on chain `%s` was not decoded, so what is signed cannot be verified", [chain_text]),
} if {
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
	"msg": sprintf("`unsigned_raw_tx` on chain `%s` cannot be decoded: %s", [chain_text, fmt.text(derived_error)]),
} if {
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
	integrity_enforced
	derived_ok
	object.get(input.derived, "msg_hashes_match", false) != true
	unmatched := object.get(input.derived, "unmatched_msg_hashes", [])
}

deny contains {
	"code": "keysign.raw_tx_disagrees",
	"msg": sprintf("raw transaction disagrees with the description: %s", [fmt.text(d)]),
} if {
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
	integrity_enforced
	derived_ok
	description_disagrees
	count(disagreements) == 0
}

# Read only once the facts are a decoded object (derived_ok).
description_disagrees if object.get(input.derived, "description_agrees", false) != true

disagreements := as_list(object.get(input.derived, "disagreements", [])) if has_derived

# --- bindings the server proved or refuted ---------------------------------

# Each violation carries its own stable code (keysign.chain_id_mismatch,
# keysign.token_contract_mismatch, keysign.path_coin_type_mismatch,
# keysign.signer_mismatch, ...: docs/derived.md lists them).
deny contains {"code": v.code, "msg": v.msg} if {
	integrity_enforced
	derived_ok
	some v in derived_violations
}

# Facts without a violations list are partial: they prove no binding.
deny contains {
	"code": "keysign.raw_tx_not_derived",
	"msg": "the derived facts carry no `violations` list, so the chain, token and key bindings are unproven",
} if {
	integrity_enforced
	derived_ok
	not violations_listed
}

violations_listed if is_array(input.derived.violations)

derived_violations := as_list(object.get(input.derived, "violations", [])) if has_derived

# --- transaction kinds ---------------------------------------------------------

deny contains {
	"code": "keysign.evm_tx_kind_not_admitted",
	"msg": sprintf("EVM transaction kind `%s` is not admitted (data.integrity.evm_tx_kinds: [%s])", [fmt.show(kind), fmt.list(object.get(data.integrity, "evm_tx_kinds", []))]),
} if {
	integrity_enforced
	derived_ok
	object.get(input.derived, "family", null) == "evm"
	kind := object.get(input.derived, "kind", null)
	not evm_kind_admitted
}

evm_kind_admitted if input.derived.kind in data.integrity.evm_tx_kinds

# --- fees ------------------------------------------------------------------------

fee_cap_key := decimal.key(chain_info.max_fee)

fee_key := decimal.key(input.derived.fee_max_native)

deny contains {
	"code": "keysign.fee_cap_missing",
	"msg": sprintf("chain `%s` has no valid max_fee in data.integrity.chains, so the fee cannot be bounded", [chain_text]),
} if {
	integrity_enforced
	chain_known
	not fee_cap_key
}

deny contains {
	"code": "keysign.fee_unbounded",
	"msg": sprintf("the most the raw transaction can spend on fees is unknown (fee_max_native is %s)", [fmt.show(object.get(input.derived, "fee_max_native", null))]),
} if {
	integrity_enforced
	derived_ok
	not fee_key
}

deny contains {
	"code": "keysign.fee_over_cap",
	"msg": sprintf("the transaction may spend up to %s %s on fees, over the cap %s for chain `%s`", [input.derived.fee_max_native, fmt.show(chain_info.native_token), chain_info.max_fee, chain_text]),
} if {
	integrity_enforced
	derived_ok
	fee_key > fee_cap_key
}

as_list(x) := x if is_array(x)

as_list(x) := [] if not is_array(x)
