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
