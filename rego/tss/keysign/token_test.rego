package tss.keysign_test

test_allowed_token_passes if {
	not "keysign.token_not_allowed" in codes(req({"token_id": "ETH"}))
}

test_token_not_allowed if {
	"token `SOL_USDC` is not in the allowed token list" in msgs(req({"token_id": "SOL_USDC", "chain_id": "ETH"}))
}

test_token_missing_not_allowed if {
	r := json.remove(req({}), ["extra/transaction/token_id"])
	"token `<missing>` is not in the allowed token list" in msgs(r)
}
