# Tests for token.rego; each asserts only its code.
package tss.keysign_test

test_allowed_token_passes if {
	_r1 := all_codes with input as req({"token_id": "ETH"}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	not "keysign.token_not_allowed" in _r1
}

test_token_not_allowed if {
	_r2 := all_msgs with input as req({"token_id": "SOL_USDC", "chain_id": "ETH"}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"token `SOL_USDC` is not in the allowed token list" in _r2
}

test_token_missing_not_allowed if {
	r := json.remove(req({}), ["extra/transaction/token_id"])
	_r3 := all_msgs with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"token `<missing>` is not in the allowed token list" in _r3
}
