package tss.keysign_test

# Integrity rules read `input.derived`, which the server computes from the
# raw transaction; these tests state the derived facts directly. Each test
# asserts only the integrity codes, so the business rules (their own tests)
# cannot make these fail or pass.

# The library's test data.integrity (testdata_test.rego) with the tables
# these tests rely on pinned (merged into its tables; lists replaced).
integrity_cfg := object.union(testdata_integrity, {
	"chains": {
		"ETH": {"family": "evm", "evm_chain_id": 1, "native_token": "ETH", "coin_type": 60, "max_fee": "0.05"},
		"BTC": {"family": "bitcoin", "network": "bitcoin", "native_token": "BTC", "coin_type": 0, "max_fee": "0.01"},
	},
	"tokens": {
		"ETH": {"chain": "ETH", "decimals": 18, "native": true},
		"ETH_USDT": {"chain": "ETH", "decimals": 6, "contract": "0xdac17f958d2ee523a2206206994597c13d831ec7"},
		"BTC": {"chain": "BTC", "decimals": 8, "native": true},
		"SOL_USDC": {"chain": "SOL", "decimals": 6, "mint": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"},
		"ETH_LOOSE": {"chain": "ETH", "decimals": 18},
	},
	"evm_tx_kinds": ["legacy_eip155", "eip2930", "eip1559"],
	"unverified_chains": [],
})

raw_tx := {"unsigned_raw_tx": "0x02f0"}

good_derived := {
	"family": "evm",
	"kind": "eip1559",
	"error": null,
	"signing_hashes": ["0xaa"],
	"msg_hashes_match": true,
	"unmatched_msg_hashes": [],
	"description_agrees": true,
	"disagreements": [],
	"token_transfer": null,
	"fee_max": "630000000000000",
	"fee_max_native": "0.00063",
	"violations": [],
}

# Replaces req's facts (those of the approving fixture) wholesale: merged,
# they would fill in the fields a test leaves out on purpose.
with_derived(tx_patch, derived) := shallow_merge(req(tx_patch), {"derived": derived})

# req without a raw transaction, hence without derived facts (a message
# signature, or an upstream that sent none).
no_raw_tx(tx_patch) := json.remove(req(tx_patch), ["extra/transaction/raw_tx_info", "derived"])

# req with a raw transaction but no facts (derivation off or failed).
no_facts(tx_patch) := json.remove(req(tx_patch), ["derived"])

good := with_derived({"raw_tx_info": raw_tx}, good_derived)

with_facts(patch) := with_derived({"raw_tx_info": raw_tx}, object.union(good_derived, patch))

# The codes this file's rules own: everything integrity.rego can deny.
integrity_code_set := {
	"keysign.chain_unknown", "keysign.token_unknown", "keysign.token_wrong_chain",
	"keysign.token_not_pinned", "keysign.raw_tx_missing", "keysign.raw_tx_not_derived",
	"keysign.raw_tx_undecodable", "keysign.msg_hash_mismatch", "keysign.raw_tx_disagrees",
	"keysign.evm_tx_kind_not_admitted", "keysign.fee_cap_missing", "keysign.fee_unbounded",
	"keysign.fee_over_cap", "keysign.chain_id_mismatch", "keysign.token_contract_mismatch",
	"keysign.signer_mismatch", "keysign.source_mismatch", "keysign.path_coin_type_mismatch",
}

integrity_codes(inp) := c if {
	c := {d.code | some d in data.tss.keysign.deny; d.code in integrity_code_set} with input as inp
		with data.keysign as td
		with data.integrity as integrity_cfg
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
}

integrity_msgs(inp) := m if {
	m := {d.msg | some d in data.tss.keysign.deny} with input as inp
		with data.keysign as td
		with data.integrity as integrity_cfg
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
}

test_agreeing_raw_tx_passes if {
	integrity_codes(good) == set()

	# req carries the approving fixture's raw transaction and facts.
	integrity_codes(req({})) == set()
}

test_raw_tx_missing_on_every_chain if {
	integrity_codes(no_raw_tx({})) == {"keysign.raw_tx_missing"}
	"chain `ETH` requires `unsigned_raw_tx` to verify what is signed, but this `Address` transaction has none (only data.integrity.unverified_chains exempts a chain)" in integrity_msgs(no_raw_tx({}))
	integrity_codes(no_raw_tx({"chain_id": "BTC", "token_id": "BTC"})) == {"keysign.raw_tx_missing"}
	integrity_codes(no_facts({"raw_tx_info": {"unsigned_raw_tx": ""}})) == {"keysign.raw_tx_missing"}
	integrity_codes(no_facts({"raw_tx_info": {"unsigned_raw_tx": null}})) == {"keysign.raw_tx_missing"}
}

# A message signature carries no transaction to verify: it is rejected
# unless its chain is exempted (and its destination type allowed).
test_message_signatures_need_an_exemption if {
	r := no_raw_tx({"destination": {"destination_type": "EVM_EIP_191_Signature", "message": "hi"}})
	integrity_codes(r) == {"keysign.raw_tx_missing"}
	"chain `ETH` requires `unsigned_raw_tx` to verify what is signed, but this `EVM_EIP_191_Signature` transaction has none (only data.integrity.unverified_chains exempts a chain)" in integrity_msgs(r)
	c := {d.code | some d in data.tss.keysign.deny; d.code in integrity_code_set} with input as r
		with data.keysign as td
		with data.integrity as object.union(integrity_cfg, {"unverified_chains": ["ETH"]})
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	c == set()
}

test_missing_tables_fail_closed if {
	c := {d.code | some d in data.tss.keysign.deny; d.code in integrity_code_set} with input as good
		with data.keysign as td
		with data.integrity as json.remove(integrity_cfg, ["chains", "tokens", "evm_tx_kinds"])
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	c == {"keysign.chain_unknown", "keysign.token_unknown", "keysign.evm_tx_kind_not_admitted"}
}

test_unknown_chain_and_token if {
	r := with_derived({"chain_id": "DOGE", "token_id": "DOGE", "raw_tx_info": raw_tx}, good_derived)
	integrity_codes(r) == {"keysign.chain_unknown", "keysign.token_unknown"}
	"chain `DOGE` is not in data.integrity.chains, so nothing binds what is signed to it" in integrity_msgs(r)
}

test_token_of_another_chain if {
	r := with_derived({"token_id": "SOL_USDC", "raw_tx_info": raw_tx}, good_derived)
	integrity_codes(r) == {"keysign.token_wrong_chain"}
	"token `SOL_USDC` belongs to chain `SOL`, not to the described chain `ETH`" in integrity_msgs(r)
	r2 := with_derived({"token_id": "BTC", "raw_tx_info": raw_tx}, good_derived)
	integrity_codes(r2) == {"keysign.token_wrong_chain"}
}

test_unpinned_token_denied if {
	r := with_derived({"token_id": "ETH_LOOSE", "raw_tx_info": raw_tx}, good_derived)
	integrity_codes(r) == {"keysign.token_not_pinned"}
}

test_raw_tx_without_derived_facts_denied if {
	integrity_codes(no_facts({"raw_tx_info": raw_tx})) == {"keysign.raw_tx_not_derived"}
}

test_undecodable_raw_tx_denied if {
	r := with_facts({"error": "input too short", "msg_hashes_match": false, "description_agrees": false})
	integrity_codes(r) == {"keysign.raw_tx_undecodable"}
	"`unsigned_raw_tx` on chain `ETH` cannot be decoded: input too short" in integrity_msgs(r)
}

test_msg_hash_mismatch_names_both_hashes if {
	r := with_facts({"msg_hashes_match": false, "unmatched_msg_hashes": ["0xbb"]})
	integrity_codes(r) == {"keysign.msg_hash_mismatch"}
	"msg_hash_list entries [0xbb] are not signing hashes of unsigned_raw_tx (computed [0xaa])" in integrity_msgs(r)
}

test_disagreement_is_reported_verbatim if {
	r := with_facts({"description_agrees": false, "disagreements": ["recipient: raw tx pays 0xbad but the description says 0xaaaa"]})
	integrity_codes(r) == {"keysign.raw_tx_disagrees"}
	"raw transaction disagrees with the description: recipient: raw tx pays 0xbad but the description says 0xaaaa" in integrity_msgs(r)
}

test_disagreement_without_detail_still_denied if {
	r := with_facts({"description_agrees": false, "disagreements": []})
	integrity_codes(r) == {"keysign.raw_tx_disagrees"}
	"raw transaction disagrees with the description" in integrity_msgs(r)
}

test_server_violations_become_denies_with_their_codes if {
	v := [
		{"code": "keysign.chain_id_mismatch", "msg": "raw tx is for chain id 56 but `ETH` is chain id 1"},
		{"code": "keysign.signer_mismatch", "msg": "the key at bip32 path `m/44/60/0/0/5` of root_pub_key signs for 0xb, not the source address 0xa"},
	]
	r := with_facts({"violations": v})
	integrity_codes(r) == {"keysign.chain_id_mismatch", "keysign.signer_mismatch"}
	"raw tx is for chain id 56 but `ETH` is chain id 1" in integrity_msgs(r)
}

test_facts_without_violations_are_partial if {
	r := with_derived({"raw_tx_info": raw_tx}, json.remove(good_derived, ["violations"]))
	integrity_codes(r) == {"keysign.raw_tx_not_derived"}
	r2 := with_facts({"violations": "none"})
	integrity_codes(r2) == {"keysign.raw_tx_not_derived"}
}

test_evm_kinds_outside_the_list_denied if {
	every kind in ["eip4844", "eip7702", "legacy"] {
		r := with_facts({"kind": kind})
		integrity_codes(r) == {"keysign.evm_tx_kind_not_admitted"}
	}
	"EVM transaction kind `eip7702` is not admitted (data.integrity.evm_tx_kinds: [eip1559, eip2930, legacy_eip155])" in integrity_msgs(with_facts({"kind": "eip7702"}))
	c := {d.code | some d in data.tss.keysign.deny; d.code in integrity_code_set} with input as with_facts({"kind": "eip7702"})
		with data.keysign as td
		with data.integrity as object.union(integrity_cfg, {"evm_tx_kinds": ["eip1559", "eip7702"]})
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	c == set()
}

test_fee_over_cap_denied if {
	r := with_facts({"fee_max_native": "1000.000021"})
	integrity_codes(r) == {"keysign.fee_over_cap"}
	"the transaction may spend up to 1000.000021 ETH on fees, over the cap 0.05 for chain `ETH`" in integrity_msgs(r)
	integrity_codes(with_facts({"fee_max_native": "0.05"})) == set()
	integrity_codes(with_facts({"fee_max_native": "0.050000000000000001"})) == {"keysign.fee_over_cap"}
}

test_unbounded_fee_denied if {
	every v in [null, "", "-1", 5, "1e3"] {
		integrity_codes(with_facts({"fee_max_native": v})) == {"keysign.fee_unbounded"}
	}
	integrity_codes(with_derived({"raw_tx_info": raw_tx}, json.remove(good_derived, ["fee_max_native"]))) == {"keysign.fee_unbounded"}
}

test_missing_fee_cap_denied if {
	c := {d.code | some d in data.tss.keysign.deny; d.code in integrity_code_set} with input as good
		with data.keysign as td
		with data.integrity as json.remove(integrity_cfg, ["chains/ETH/max_fee"])
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	c == {"keysign.fee_cap_missing"}
}

test_exempt_chain_skips_integrity if {
	r := with_facts({"msg_hashes_match": false, "description_agrees": false})
	c := {d.code | some d in data.tss.keysign.deny; d.code in integrity_code_set} with input as r
		with data.keysign as td
		with data.integrity as object.union(integrity_cfg, {"unverified_chains": ["ETH"]})
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
	c == set()
}
