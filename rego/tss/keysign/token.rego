# KEYSIGN rule: only tokens listed in data.keysign.allowed_token_ids move.
package tss.keysign

deny contains {
	"code": "keysign.token_not_allowed",
	"msg": sprintf("token `%s` is not in the allowed token list", [token]),
} if {
	has_tx
	not token_allowed
}

token_allowed if tx.token_id in data.keysign.allowed_token_ids
