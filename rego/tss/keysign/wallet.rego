# KEYSIGN rule: only wallets listed in data.keysign.allowed_wallet_ids sign.
# Every wallet id the request names (extra_info.wallet, the transaction, its
# source) must be allowed, so a mismatch between them cannot slip through.
package tss.keysign

import data.tss.lib.fmt

wallet_ids contains id if id := input.extra.wallet.wallet_id

wallet_ids contains id if id := tx.wallet_id

wallet_ids contains id if id := tx.source.wallet_id

deny contains {
	"code": "keysign.wallet_missing",
	"msg": "the request names no wallet id (extra_info.wallet.wallet_id, transaction.wallet_id)",
} if count(wallet_ids) == 0

deny contains {
	"code": "keysign.wallet_not_allowed",
	"msg": sprintf("wallet `%s` is not in the allowed wallet list", [fmt.show(id)]),
} if {
	some id in wallet_ids
	not wallet_allowed(id)
}

# A function, so the list is read inside it: `not id in <missing list>`
# would be undefined in OPA (see keysign.rego).
wallet_allowed(id) if id in data.keysign.allowed_wallet_ids

# Optional key pinning (data.integrity.wallet_keys): a wallet listed there
# signs only with its own root keys and TSS groups, so a compromised
# upstream cannot put another key or group under an allowed wallet id.
deny contains {
	"code": "keysign.wallet_key_not_pinned",
	"msg": sprintf("root_pub_key `%s` is not pinned for wallet `%s` in data.integrity.wallet_keys", [fmt.field(input.detail, "root_pub_key"), fmt.show(id)]),
} if {
	some id in wallet_ids
	pins := data.integrity.wallet_keys[id]
	not pinned(pins, "root_pub_keys", "root_pub_key")
}

deny contains {
	"code": "keysign.wallet_key_not_pinned",
	"msg": sprintf("TSS group `%s` is not pinned for wallet `%s` in data.integrity.wallet_keys", [fmt.field(input.detail, "group_id"), fmt.show(id)]),
} if {
	some id in wallet_ids
	pins := data.integrity.wallet_keys[id]
	not pinned(pins, "group_ids", "group_id")
}

pinned(pins, list, field) if input.detail[field] in pins[list]
