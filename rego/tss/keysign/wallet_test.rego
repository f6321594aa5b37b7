# Tests for wallet.rego; each asserts only the codes of its rules.
package tss.keysign_test

wallet_codes := {"keysign.wallet_missing", "keysign.wallet_not_allowed", "keysign.wallet_key_not_pinned"}

test_allowed_wallet_passes if {
	_r1 := all_codes with input as req({}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	codes_in(_r1, wallet_codes) == set()
}

test_wallet_not_allowed if {
	r := object.union(req({"wallet_id": "w-9", "source": {"wallet_id": "w-9"}}), {"extra": {"wallet": {"wallet_id": "w-9"}}})
	_r2 := all_denies with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	msgs_in(_r2, wallet_codes) == {"wallet `w-9` is not in the allowed wallet list"}
}

# A request that names an allowed wallet in one place and another elsewhere
# is denied: every wallet id named must be allowed.
test_wallet_mismatch_denied if {
	_r3 := all_msgs with input as req({"source": {"wallet_id": "w-2"}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	"wallet `w-2` is not in the allowed wallet list" in _r3
}

test_wallet_missing if {
	r := json.remove(req({}), ["extra/wallet", "extra/transaction/wallet_id", "extra/transaction/source"])
	_r4 := all_codes with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	codes_in(_r4, wallet_codes) == {"keysign.wallet_missing"}
}

# The pins replace the shipped wallet_keys (shallow_merge): the shipped
# table pins req's wallet too, and would answer for these tests.
wallet_key_codes(inp, pins) := c if {
	c := {d.code | some d in data.tss.keysign.deny; d.code == "keysign.wallet_key_not_pinned"} with input as inp
		with data.keysign as td
		with data.integrity as shallow_merge(no_integrity, {"wallet_keys": pins})
		with data.embedded_risk_control_rules as erc_cfg
}

keyed(root, group) := object.union(req({}), {"detail": {"root_pub_key": root, "group_id": group}})

test_pinned_wallet_signs_only_with_its_keys if {
	pins := {wallet_id: {"root_pub_keys": ["xpubA"], "group_ids": ["g-1"]}}
	wallet_key_codes(keyed("xpubA", "g-1"), pins) == set()
	wallet_key_codes(keyed("xpubB", "g-1"), pins) == {"keysign.wallet_key_not_pinned"}
	wallet_key_codes(keyed("xpubA", "g-2"), pins) == {"keysign.wallet_key_not_pinned"}
	wallet_key_codes(req({}), pins) == {"keysign.wallet_key_not_pinned"}
	m := {d.msg | some d in data.tss.keysign.deny} with input as keyed("xpubB", "g-1")
		with data.keysign as td
		with data.integrity as shallow_merge(no_integrity, {"wallet_keys": pins})
		with data.embedded_risk_control_rules as erc_cfg
	sprintf("root_pub_key `xpubB` is not pinned for wallet `%s` in data.integrity.wallet_keys", [wallet_id]) in m
}

test_unpinned_wallet_is_not_key_checked if {
	wallet_key_codes(keyed("xpubB", "g-9"), {"w-other": {"root_pub_keys": ["xpubA"], "group_ids": ["g-1"]}}) == set()
	wallet_key_codes(keyed("xpubB", "g-9"), {}) == set()
}
