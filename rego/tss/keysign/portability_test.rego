# Fail-closed cases where OPA and regorus used to part ways: a deny written
# as `not f(<missing reference>)` fires in regorus but is undefined in OPA
# (OPA evaluates the argument before the negation). Each case below is a
# missing field or a missing data list that must still deny in BOTH
# engines; scripts/opa-check.sh runs these tests under OPA.
package tss.keysign_test

deny_codes(inp, keysign_data, integrity_data) := c if {
	c := {d.code | some d in data.tss.keysign.deny} with input as inp
		with data.keysign as keysign_data
		with data.integrity as integrity_data
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
}

test_missing_allow_lists_deny if {
	"keysign.wallet_not_allowed" in deny_codes(req({}), json.remove(td, ["allowed_wallet_ids"]), no_integrity)
	"keysign.token_not_allowed" in deny_codes(req({}), json.remove(td, ["allowed_token_ids"]), no_integrity)
	"keysign.destination_not_allowed" in deny_codes(req({}), json.remove(td, ["allowed_destinations"]), no_integrity)
	"keysign.destination_type_not_allowed" in deny_codes(req({}), json.remove(td, ["allowed_destination_types"]), no_integrity)
}

test_missing_destination_denies if {
	c := deny_codes(json.remove(req({}), ["extra/transaction/destination"]), td, no_integrity)
	"keysign.destination_type_not_allowed" in c
}

test_usdt_cap_without_max_amount_denies if {
	r := req({"token_id": "ETH_USDT", "destination": dest_to("0xaaaa", "5")})
	"keysign.cap_malformed" in deny_codes(r, json.remove(td, ["usdt_cap/max_amount"]), no_integrity)
}

test_cap_false_is_malformed if {
	"keysign.cap_malformed" in deny_codes(req({}), object.union(td, {"max_amount_per_tx": {"ETH": false}}), no_integrity)
}

test_partial_derived_facts_deny if {
	tx := {"raw_tx_info": raw_tx}

	# No `error` field: not trusted as decoded.
	"keysign.raw_tx_undecodable" in deny_codes(with_derived(tx, json.remove(good_derived, ["error"])), td, integrity_cfg)

	# Disagreeing without a disagreements list.
	no_list := json.remove(object.union(good_derived, {"description_agrees": false}), ["disagreements"])
	"keysign.raw_tx_disagrees" in deny_codes(with_derived(tx, no_list), td, integrity_cfg)

	# Agreement or hash match not stated at all.
	"keysign.raw_tx_disagrees" in deny_codes(with_derived(tx, json.remove(good_derived, ["description_agrees"])), td, integrity_cfg)
	"keysign.msg_hash_mismatch" in deny_codes(with_derived(tx, json.remove(good_derived, ["msg_hashes_match", "signing_hashes"])), td, integrity_cfg)

	# No violations list: the bindings were never checked.
	"keysign.raw_tx_not_derived" in deny_codes(with_derived(tx, json.remove(good_derived, ["violations"])), td, integrity_cfg)
}

test_request_without_type_is_not_allowed if {
	d := data.tss.decision with input as json.remove(req({}), ["request_type", "request_type_code"]) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	d.allow == false
	"request.unknown_type" in d.codes
}
