# Checks of the OPERATOR's data (rego/data.yaml, whoever wrote it): the one
# test file of the library that reads the live data.keysign,
# data.integrity, data.velocity, data.embedded_risk_control_rules and
# data.freeze. Every other *_test.rego is a library test with its own test
# data (keysign/testdata_test.rego and the like) and holds for any data.
#
# These are shape checks that hold for any sane data, so a typo in a list
# fails `tss-gate test` (and the reload gate) instead of silently rejecting
# or approving: caps are decimal strings, addresses of lower-case chains are
# lower-case, limits are well formed, every allowed token and wallet is
# bound. None of them asserts a number or a switch of the example
# organisation: your caps, limits, lists and switches are yours to choose,
# and your fixtures (policy.fixtures) say what they decide. A section that
# is absent passes here (the rules then fail closed).
package tss.operator_data_test

import data.tss.lib.decimal

# The operator's documents, `{}` (or `[]`) when absent.
keysign := data.keysign if is_object(data.keysign) else := {}

integrity := data.integrity if is_object(data.integrity) else := {}

erc := data.embedded_risk_control_rules if is_object(data.embedded_risk_control_rules) else := {}

limits := data.velocity.limits if is_array(data.velocity.limits) else := []

section(doc, key) := doc[key] if is_object(doc[key]) else := {}

test_caps_are_decimal_strings if {
	every _, cap in section(keysign, "max_amount_per_tx") {
		decimal.valid(cap)
	}
	every usdt in [u | u := keysign.usdt_cap] {
		decimal.valid(usdt.max_amount)
	}
}

test_lowercase_chain_addresses_are_lowercase if {
	every chain in object.get(keysign, "lowercase_address_chains", []) {
		every addr, _ in object.get(section(keysign, "allowed_destinations"), chain, {}) {
			addr == lower(addr)
		}
		every addr, _ in object.get(section(keysign, "treasury_addresses"), chain, {}) {
			addr == lower(addr)
		}
	}
}

test_treasury_addresses_are_allowed_destinations if {
	every chain, book in section(keysign, "treasury_addresses") {
		every addr, _ in book {
			listed_destination(keysign.allowed_destinations[chain][addr])
		}
	}
}

# allowed_destinations entries are `true` or {added_at: <RFC 3339>} (the
# cool-down form); treasury_addresses entries are `true`.
test_address_books_map_to_true_or_added_at if {
	every _, book in section(keysign, "allowed_destinations") {
		every _, v in book {
			listed_destination(v)
		}
	}
	every _, book in section(keysign, "treasury_addresses") {
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
	every c in [x | x := keysign.destination_cooldown] {
		data.tss.keysign.duration_valid(c)
	}
}

# The policy's freeze switch, when present, is a boolean. Whether it is on
# is the operator's choice: a test that required it off would make the
# set unloadable exactly when it is switched on (the reload gate).
test_freeze_is_a_boolean_switch if {
	every x in [k | k := data.freeze.keysign] {
		is_boolean(x)
	}
}

# Velocity limits: the shape tss-gate accepts (it refuses anything else
# when the policy loads; this names the limit in `tss-gate test` too). How
# many limits there are, and their maxima, are the operator's.
velocity_match_keys := {"request_types", "chain_ids", "token_ids", "wallet_ids", "destination_types", "exclude_destinations"}

velocity_group_keys := {"wallet", "token", "chain", "destination", "source", "initiator", "org", "vault"}

test_velocity_limit_ids_are_unique_codes if {
	ids := [l.id | some l in limits]
	count(ids) == count({id | some id in ids})
	every l in limits {
		is_string(l.id)
		regex.match(`^[a-z][a-z0-9_]{0,63}$`, l.id)
	}
}

test_velocity_limits_are_well_formed if {
	every l in limits {
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
	every l in limits {
		every _ in [m | m := l.max_amount] {
			one_token_per_group(l)
			velocity_request_types(l) == ["KEYSIGN"]
		}
	}
}

one_token_per_group(l) if "token" in object.get(l, "group_by", [])

one_token_per_group(l) if count(l.match.token_ids) == 1

# The TSS Node's own block: only its keys (a misspelt section would be
# ignored, and its type rejected), each switch a boolean where present.
# Which types are open is the operator's choice.
erc_sections := {"key_gen", "key_sign", "key_reshare", "key_share_sign"}

test_embedded_rules_use_node_shape if {
	object.keys(erc) - ({"enable"} | erc_sections) == set()
	every x in [e | e := erc.enable] {
		is_boolean(x)
	}
	every name in erc_sections & object.keys(erc) {
		is_object(erc[name])
		every x in [r | r := erc[name].reject_all] {
			is_boolean(x)
		}
	}
}

# The integrity tables: the Rust loader refuses a malformed row at load;
# these keep the tables consistent with the keysign lists too.
test_every_allowed_token_is_bound if {
	every t in object.get(keysign, "allowed_token_ids", []) {
		tok := integrity.tokens[t]
		integrity.chains[tok.chain].coin_type >= 0
	}
}

test_chain_rows_are_complete if {
	every id, c in section(integrity, "chains") {
		decimal.valid(c.max_fee)
		native := integrity.tokens[c.native_token]
		native.native == true
		native.chain == id
	}
}

test_tokens_are_native_or_pinned if {
	every _, t in section(integrity, "tokens") {
		count({k | some k in ["native", "contract", "mint"]; token_kind(t, k)}) == 1
	}
}

token_kind(t, "native") if t.native == true

token_kind(t, "contract") if is_string(t.contract)

token_kind(t, "mint") if is_string(t.mint)

# Whether a chain is exempt from verification is the operator's choice (the
# example exempts none); an entry must at least be a chain id.
test_unverified_chains_are_chain_ids if {
	every c in object.get(integrity, "unverified_chains", []) {
		is_string(c)
		c != ""
	}
}

test_every_allowed_wallet_is_pinned if {
	every w in object.get(keysign, "allowed_wallet_ids", []) {
		count(integrity.wallet_keys[w].root_pub_keys) > 0
		count(integrity.wallet_keys[w].group_ids) > 0
		count(integrity.wallet_keys[w].accounts) > 0
	}
}

# Two wallets on one root key with a common account could spend (and take
# change at) each other's addresses under either wallet's id.
test_wallets_on_one_root_key_share_no_account if {
	every a, pa in section(integrity, "wallet_keys") {
		every b, pb in section(integrity, "wallet_keys") {
			shares_nothing(a, pa, b, pb)
		}
	}
}

shares_nothing(a, _, b, _) if a == b

shares_nothing(a, pa, b, pb) if {
	a != b
	count({k | some k in pa.root_pub_keys} & {k | some k in pb.root_pub_keys}) == 0
}

shares_nothing(a, pa, b, pb) if {
	a != b
	count({n | some n in pa.accounts} & {n | some n in pb.accounts}) == 0
}
