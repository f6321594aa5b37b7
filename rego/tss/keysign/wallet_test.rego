package tss.keysign_test

test_allowed_wallet_passes if {
	_r1 := all_codes with input as req({}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	_r1 == set()
}

test_wallet_not_allowed if {
	r := object.union(req({"wallet_id": "w-9", "source": {"wallet_id": "w-9"}}), {"extra": {"wallet": {"wallet_id": "w-9"}}})
	_r2 := all_msgs with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	_r2 == {"wallet `w-9` is not in the allowed wallet list"}
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
	_r4 == {"keysign.wallet_missing"}
}
