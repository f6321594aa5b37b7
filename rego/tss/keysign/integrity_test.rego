package tss.keysign_test

# Integrity rules read `input.derived`, which the server computes from the
# raw transaction; these tests state the derived facts directly.

integrity_cfg := {
	"enforce_chains": ["ETH"],
	"require_raw_tx_chains": ["ETH"],
	"token_contracts": {"ETH": {"ETH_USDT": "0xdac17f958d2ee523a2206206994597c13d831ec7"}},
}

raw_tx := {"unsigned_raw_tx": "0x02f0"}

good_derived := {
	"family": "evm",
	"error": null,
	"signing_hashes": ["0xaa"],
	"msg_hashes_match": true,
	"unmatched_msg_hashes": [],
	"description_agrees": true,
	"disagreements": [],
	"token_transfer": null,
}

with_derived(tx_patch, derived) := object.union(req(tx_patch), {"derived": derived})

integrity_codes(inp) := c if {
	c := {d.code | some d in data.tss.keysign.deny; startswith(d.code, "keysign.raw_tx")} | {d.code | some d in data.tss.keysign.deny; d.code in {"keysign.msg_hash_mismatch", "keysign.token_contract_mismatch"}} with input as inp
		with data.keysign as td
		with data.integrity as integrity_cfg
		with data.embedded_risk_control_rules as erc_cfg
}

integrity_msgs(inp) := m if {
	m := {d.msg | some d in data.tss.keysign.deny} with input as inp
		with data.keysign as td
		with data.integrity as integrity_cfg
		with data.embedded_risk_control_rules as erc_cfg
}

test_agreeing_raw_tx_passes if {
	integrity_codes(with_derived({"raw_tx_info": raw_tx}, good_derived)) == set()
}

test_raw_tx_missing_on_required_chain if {
	integrity_codes(req({})) == {"keysign.raw_tx_missing"}
	"chain `ETH` requires `unsigned_raw_tx` to verify what is signed, but the transaction has none" in integrity_msgs(req({}))
}

test_raw_tx_not_required_for_message_signatures if {
	r := req({"destination": {"destination_type": "EVM_EIP_191_Signature", "message": "hi"}})
	integrity_codes(r) == set()
}

test_raw_tx_not_required_on_other_chains if {
	integrity_codes(req({"chain_id": "BTC", "token_id": "BTC"})) == set()
}

test_raw_tx_without_derived_facts_denied if {
	integrity_codes(req({"raw_tx_info": raw_tx})) == {"keysign.raw_tx_not_derived"}
}

test_undecodable_raw_tx_denied if {
	d := object.union(good_derived, {"error": "input too short", "msg_hashes_match": false, "description_agrees": false})
	r := with_derived({"raw_tx_info": raw_tx}, d)
	integrity_codes(r) == {"keysign.raw_tx_undecodable"}
	"`unsigned_raw_tx` on chain `ETH` cannot be decoded: input too short" in integrity_msgs(r)
}

test_msg_hash_mismatch_names_both_hashes if {
	d := object.union(good_derived, {"msg_hashes_match": false, "unmatched_msg_hashes": ["0xbb"]})
	r := with_derived({"raw_tx_info": raw_tx}, d)
	integrity_codes(r) == {"keysign.msg_hash_mismatch"}
	"msg_hash_list entries [0xbb] are not signing hashes of unsigned_raw_tx (computed [0xaa])" in integrity_msgs(r)
}

test_disagreement_is_reported_verbatim if {
	d := object.union(good_derived, {"description_agrees": false, "disagreements": ["recipient: raw tx pays 0xbad but the description says 0xaaaa"]})
	r := with_derived({"raw_tx_info": raw_tx}, d)
	integrity_codes(r) == {"keysign.raw_tx_disagrees"}
	"raw transaction disagrees with the description: recipient: raw tx pays 0xbad but the description says 0xaaaa" in integrity_msgs(r)
}

test_disagreement_without_detail_still_denied if {
	d := object.union(good_derived, {"description_agrees": false, "disagreements": []})
	r := with_derived({"raw_tx_info": raw_tx}, d)
	integrity_codes(r) == {"keysign.raw_tx_disagrees"}
	"raw transaction disagrees with the description" in integrity_msgs(r)
}

test_token_contract_must_match_data if {
	tt := {"standard": "erc20", "method": "transfer", "contract": "0x1111111111111111111111111111111111111111"}
	r := with_derived({"token_id": "ETH_USDT", "raw_tx_info": raw_tx}, object.union(good_derived, {"token_transfer": tt}))
	integrity_codes(r) == {"keysign.token_contract_mismatch"}
	ok := with_derived(
		{"token_id": "ETH_USDT", "raw_tx_info": raw_tx},
		object.union(good_derived, {"token_transfer": object.union(tt, {"contract": "0xDAC17F958D2EE523A2206206994597C13D831EC7"})}),
	)
	integrity_codes(ok) == set()
}

test_integrity_off_for_chains_not_enforced if {
	d := object.union(good_derived, {"msg_hashes_match": false, "description_agrees": false})
	r := with_derived({"chain_id": "TRON", "token_id": "TRON_USDT", "raw_tx_info": raw_tx}, d)
	integrity_codes(r) == set()
}
