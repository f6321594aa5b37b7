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
			listed_destination(data.keysign.allowed_destinations[chain][addr])
		}
	}
}

# allowed_destinations entries are `true` or {added_at: <RFC 3339>} (the
# cool-down form); treasury_addresses entries are `true`.
test_address_books_map_to_true_or_added_at if {
	every _, book in data.keysign.allowed_destinations {
		every _, v in book {
			listed_destination(v)
		}
	}
	every _, book in data.keysign.treasury_addresses {
		every _, v in book {
			v == true
		}
	}
}

listed_destination(v) if v == true

listed_destination(v) if {
	is_object(v)
	data.tss.keysign.rfc3339(v.added_at)
}

# Absent means no cool-down; present, it must parse.
test_destination_cooldown_is_a_duration if {
	every c in [x | x := data.keysign.destination_cooldown] {
		data.tss.keysign.duration_valid(c)
	}
}

# The emergency stop ships off, as a boolean.
test_freeze_ships_off if {
	data.freeze.keysign == false
}

# Velocity limits: the shape tss-gate accepts (it refuses anything else
# when the policy loads; this names the limit in `tss-gate test` too).
velocity_match_keys := {"request_types", "chain_ids", "token_ids", "wallet_ids", "destination_types", "exclude_destinations"}

velocity_group_keys := {"wallet", "token", "chain", "destination", "source", "initiator", "org", "vault"}

test_velocity_limit_ids_are_unique_codes if {
	ids := [l.id | some l in data.velocity.limits]
	count(ids) > 0
	count(ids) == count({id | some id in ids})
	every id in ids {
		regex.match(`^[a-z][a-z0-9_]{0,63}$`, id)
	}
}

test_velocity_limits_are_well_formed if {
	every l in data.velocity.limits {
		object.keys(l) - {"id", "description", "match", "group_by", "window", "max_amount", "max_count"} == set()
		object.keys(object.get(l, "match", {})) - velocity_match_keys == set()
		every _, vs in object.get(l, "match", {}) {
			is_array(vs)
			count(vs) > 0
			every v in vs {
				is_string(v)
			}
		}
		every t in velocity_request_types(l) {
			t == "KEYSIGN"
		}
		every g in object.get(l, "group_by", []) {
			g in velocity_group_keys
		}
		window_in_range(l.window)
		count({k | some k in ["max_amount", "max_count"]; k in object.keys(l)}) > 0
		every m in [m | m := l.max_amount] {
			decimal.valid(m)
		}
		every n in [n | n := l.max_count] {
			is_number(n)
			n >= 1
			n == floor(n)
		}
	}
}

# 1s .. 30d.
window_in_range(w) if {
	ns := data.tss.keysign.duration_ns(w)
	ns >= 1000000000
	ns <= 30 * 86400000000000
}

velocity_request_types(l) := object.get(object.get(l, "match", {}), "request_types", ["KEYSIGN"])

# Amounts of different tokens never add up: a max_amount limit groups by
# token or matches exactly one token id. And only KEYSIGN moves amounts.
test_velocity_amount_limits_have_one_token_per_group if {
	every l in data.velocity.limits {
		every _ in [m | m := l.max_amount] {
			one_token_per_group(l)
			velocity_request_types(l) == ["KEYSIGN"]
		}
	}
}

one_token_per_group(l) if "token" in object.get(l, "group_by", [])

one_token_per_group(l) if count(l.match.token_ids) == 1

# The shipped ETH_USDT limit stops repeated sends of the approving fixture
# integrity_eip1559_eth_usdt_approve.json (9999.99 each): five fit, six do not.
test_eth_usdt_limit_stops_the_sixth_fixture_send if {
	some l in data.velocity.limits
	l.id == "eth_usdt_wallet_24h"
	cap_key := decimal.key(l.max_amount)
	decimal.key(decimal.total([a | some _ in numbers.range(1, 5); a := "9999.99"])) <= cap_key
	decimal.key(decimal.total([a | some _ in numbers.range(1, 6); a := "9999.99"])) > cap_key
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
