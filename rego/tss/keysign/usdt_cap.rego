# Worked example from rego/README.md: "cap USDT withdrawals at 10,000 per
# transaction except to treasury addresses".
#
# Knobs (rego/data.yaml):
#   keysign.usdt_cap.token_ids    which token ids count as USDT
#   keysign.usdt_cap.max_amount   the cap, a decimal string
#   keysign.treasury_addresses    {chain_id: {address: true}}, exempt
# The exemption holds only when EVERY output goes to a treasury address.
package tss.keysign

import data.tss.lib.decimal
import data.tss.lib.fmt

usdt_cfg := data.keysign.usdt_cap

is_usdt if tx.token_id in usdt_cfg.token_ids

all_to_treasury if {
	count(outputs) > 0
	every o in outputs {
		in_address_book(data.keysign.treasury_addresses, o.address)
	}
}

deny contains {
	"code": "keysign.cap_malformed",
	"msg": sprintf("configured USDT cap `%s` is not a decimal string", [fmt.field(usdt_cfg, "max_amount")]),
} if {
	is_usdt
	not usdt_cap_key
}

usdt_cap_key := decimal.key(usdt_cfg.max_amount)

within_usdt_cap if total_key <= usdt_cap_key

deny contains {
	"code": "keysign.usdt_cap_exceeded",
	"msg": sprintf(
		"USDT amount `%s` of token `%s` exceeds the `%s` per-transaction cap and not every destination is a treasury address",
		[total, token, usdt_cfg.max_amount],
	),
} if {
	is_usdt
	usdt_cap_key
	total_key
	not within_usdt_cap
	not all_to_treasury
}
