# Hygiene checks on the SHIPPED data (rego/data.yaml), so a typo in a list
# fails `tss-gate test` instead of silently rejecting or approving.
package tss.data_test

import data.tss.lib.decimal

test_caps_are_decimal_strings if {
	every _, cap in data.keysign.max_amount_per_tx {
		decimal.valid(cap)
	}
	decimal.valid(data.keysign.usdt_cap.max_amount)
}

test_lowercase_chain_addresses_are_lowercase if {
	every chain in data.keysign.lowercase_address_chains {
		every addr, _ in object.get(data.keysign.allowed_destinations, chain, {}) {
			addr == lower(addr)
		}
		every addr, _ in object.get(data.keysign.treasury_addresses, chain, {}) {
			addr == lower(addr)
		}
	}
}

test_treasury_addresses_are_allowed_destinations if {
	every chain, book in data.keysign.treasury_addresses {
		every addr, _ in book {
			data.keysign.allowed_destinations[chain][addr] == true
		}
	}
}

test_address_books_map_to_true if {
	every _, book in data.keysign.allowed_destinations {
		every _, v in book {
			v == true
		}
	}
}

test_embedded_rules_use_node_shape if {
	is_boolean(data.embedded_risk_control_rules.enable)
	every name in ["key_gen", "key_sign", "key_reshare", "key_share_sign"] {
		is_boolean(data.embedded_risk_control_rules[name].reject_all)
	}
}

# The integrity tables: the Rust loader refuses a malformed row at load;
# these keep the shipped tables consistent with the keysign lists too.
test_every_allowed_token_is_bound if {
	every t in data.keysign.allowed_token_ids {
		tok := data.integrity.tokens[t]
		data.integrity.chains[tok.chain].coin_type >= 0
	}
}

test_chain_rows_are_complete if {
	every id, c in data.integrity.chains {
		decimal.valid(c.max_fee)
		native := data.integrity.tokens[c.native_token]
		native.native == true
		native.chain == id
	}
}

test_tokens_are_native_or_pinned if {
	every _, t in data.integrity.tokens {
		count({k | some k in ["native", "contract", "mint"]; token_kind(t, k)}) == 1
	}
}

token_kind(t, "native") if t.native == true

token_kind(t, "contract") if is_string(t.contract)

token_kind(t, "mint") if is_string(t.mint)

test_every_allowed_wallet_is_pinned if {
	every w in data.keysign.allowed_wallet_ids {
		count(data.integrity.wallet_keys[w].root_pub_keys) > 0
		count(data.integrity.wallet_keys[w].group_ids) > 0
	}
}

test_no_chain_is_exempt_by_default if {
	data.integrity.unverified_chains == []
}
