# Tests for wallet.rego; each asserts only the codes of its rules.
package tss.keysign_test

wallet_codes := {"keysign.wallet_missing", "keysign.wallet_not_allowed", "keysign.wallet_key_not_pinned"}

test_allowed_wallet_passes if {
	_r1 := all_codes with input as req({}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r1, wallet_codes) == set()
}

test_wallet_not_allowed if {
	r := object.union(req({"wallet_id": "w-9", "source": {"wallet_id": "w-9"}}), {"extra": {"wallet": {"wallet_id": "w-9"}}})
	_r2 := all_denies with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	msgs_in(_r2, wallet_codes) == {"wallet `w-9` is not in the allowed wallet list"}
}

# A request that names an allowed wallet in one place and another elsewhere
# is denied: every wallet id named must be allowed.
test_wallet_mismatch_denied if {
	_r3 := all_msgs with input as req({"source": {"wallet_id": "w-2"}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"wallet `w-2` is not in the allowed wallet list" in _r3
}

test_wallet_missing if {
	r := json.remove(req({}), ["extra/wallet", "extra/transaction/wallet_id", "extra/transaction/source"])
	_r4 := all_codes with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r4, wallet_codes) == {"keysign.wallet_missing"}
}

# The pins replace the shipped wallet_keys (shallow_merge): the shipped
# table pins req's wallet too, and would answer for these tests.
wallet_key_codes(inp, pins) := c if {
	c := {d.code | some d in data.tss.keysign.deny; d.code == "keysign.wallet_key_not_pinned"} with input as inp
		with data.keysign as td
		with data.integrity as shallow_merge(no_integrity, {"wallet_keys": pins})
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
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
		with data.freeze as no_freeze
	sprintf("root_pub_key `xpubB` is not pinned for wallet `%s` in data.integrity.wallet_keys", [wallet_id]) in m
}

test_unpinned_wallet_is_not_key_checked if {
	wallet_key_codes(keyed("xpubB", "g-9"), {"w-other": {"root_pub_keys": ["xpubA"], "group_ids": ["g-1"]}}) == set()
	wallet_key_codes(keyed("xpubB", "g-9"), {}) == set()
}

account_codes(inp, pins) := c if {
	c := {d.msg | some d in data.tss.keysign.deny; d.code == "keysign.wallet_account_not_pinned"} with input as inp
		with data.keysign as td
		with data.integrity as shallow_merge(no_integrity, {"wallet_keys": pins})
		with data.embedded_risk_control_rules as erc_cfg
		with data.freeze as no_freeze
}

pathed(paths) := object.union(keyed("xpubA", "g-1"), {"detail": {"bip32_path_list": paths}})

test_pinned_wallet_signs_only_in_its_accounts if {
	pins := {wallet_id: {"root_pub_keys": ["xpubA"], "group_ids": ["g-1"], "accounts": [0, 7]}}
	account_codes(pathed(["m/44/60/0/0/0"]), pins) == set()
	account_codes(pathed(["m/84/0/7/1/3", "m/49/0/0/0/2"]), pins) == set()
	account_codes(pathed(["m/84/0/0/0/3", "m/84/0/1/0/0"]), pins) == {sprintf("bip32 path `m/84/0/1/0/0` is not in an account of wallet `%s` (data.integrity.wallet_keys accounts [0,7])", [wallet_id])}

	# Spellings that are not the pinned number, and paths that are no path.
	every p in ["m/44/60/0'/0/0", "m/44/60/00/0/0", "m/44/60/+0/0/0", "m/44/60", "44/60/0/0/0", "m/44/60/ 0/0/0", "m/44/60/0.0/0/0"] {
		count(account_codes(pathed([p]), pins)) == 1
	}
	count(account_codes(pathed([7]), pins)) == 1
}

test_pinned_wallet_without_accounts_denies if {
	every accounts in [null, [], "0", {}] {
		pins := {wallet_id: {"root_pub_keys": ["xpubA"], "group_ids": ["g-1"], "accounts": accounts}}
		account_codes(pathed(["m/44/60/0/0/0"]), pins) == {sprintf("wallet `%s` pins no accounts in data.integrity.wallet_keys (accounts: [<BIP-44 account numbers>]), so its signing paths cannot be bound to it", [wallet_id])}
	}
	account_codes(pathed(["m/44/60/0/0/0"]), {wallet_id: {"root_pub_keys": ["xpubA"], "group_ids": ["g-1"]}}) != set()
}

test_unpinned_wallet_is_not_account_checked if {
	account_codes(pathed(["m/44/60/9/0/0"]), {}) == set()
}
