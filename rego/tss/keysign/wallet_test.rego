package tss.keysign_test

test_allowed_wallet_passes if {
	codes(req({})) == set()
}

test_wallet_not_allowed if {
	r := object.union(req({"wallet_id": "w-9", "source": {"wallet_id": "w-9"}}), {"extra": {"wallet": {"wallet_id": "w-9"}}})
	msgs(r) == {"wallet `w-9` is not in the allowed wallet list"}
}

# A request that names an allowed wallet in one place and another elsewhere
# is denied: every wallet id named must be allowed.
test_wallet_mismatch_denied if {
	"wallet `w-2` is not in the allowed wallet list" in msgs(req({"source": {"wallet_id": "w-2"}}))
}

test_wallet_missing if {
	r := json.remove(req({}), ["extra/wallet", "extra/transaction/wallet_id", "extra/transaction/source"])
	codes(r) == {"keysign.wallet_missing"}
}
