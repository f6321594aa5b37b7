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

# Account pinning. The wallets of one vault share a root key and TSS group,
# so the key alone does not tell one wallet's addresses from another's: a
# request for wallet A could spend (or pay change to) an address of wallet B
# under the same key. A pinned wallet names its BIP-44 accounts (`accounts`,
# the numbers in the path's third place, m/<purpose>/<coin>/<account>/...),
# and every signing path must lie in one of them. A pinned wallet without
# `accounts` denies (fail closed): the pin would otherwise prove nothing.
deny contains {
	"code": "keysign.wallet_account_not_pinned",
	"msg": sprintf("wallet `%s` pins no accounts in data.integrity.wallet_keys (accounts: [<BIP-44 account numbers>]), so its signing paths cannot be bound to it", [fmt.show(id)]),
} if {
	some id in wallet_ids
	pins := data.integrity.wallet_keys[id]
	not accounts_listed(pins)
}

deny contains {
	"code": "keysign.wallet_account_not_pinned",
	"msg": sprintf("bip32 path `%s` is not in an account of wallet `%s` (data.integrity.wallet_keys accounts %s)", [fmt.show(path), fmt.show(id), fmt.show(pins.accounts)]),
} if {
	some id in wallet_ids
	pins := data.integrity.wallet_keys[id]
	accounts_listed(pins)
	some path in signing_paths
	not path_in_accounts(path, pins)
}

accounts_listed(pins) if {
	is_array(pins.accounts)
	count(pins.accounts) > 0
}

signing_paths := input.detail.bip32_path_list if is_array(input.detail.bip32_path_list)
else := []

# The account is compared as the path writes it: a hardened "0'" or a
# padded "00" is not account 0 (fail closed).
path_in_accounts(path, pins) if {
	is_string(path)
	parts := split(path, "/")
	count(parts) >= 4
	parts[0] == "m"
	regex.match(`^(0|[1-9][0-9]{0,9})$`, parts[3])
	to_number(parts[3]) in pins.accounts
}
