# Tests for keysign.rego, plus the shared helpers (`td`, `erc_cfg`, `req`,
# `dest_to`, `all_codes`, `all_msgs`)
# that every keysign *_test.rego file in this package uses.
package tss.keysign_test

import data.tss.keysign

# Test data: independent of rego/data.yaml, so editing the shipped lists
# never breaks these tests.
td := {
	"allowed_token_ids": ["ETH", "ETH_USDT", "BTC"],
	"allowed_wallet_ids": ["w-1"],
	"allowed_destination_types": ["Address", "EVM_Contract"],
	"lowercase_address_chains": ["ETH"],
	"allowed_destinations": {
		"ETH": {"0xaaaa": true, "0xtreasury": true, "0xcontract": true},
		"BTC": {"bc1qa": true, "bc1qb": true},
	},
	"treasury_addresses": {"ETH": {"0xtreasury": true}},
	"max_amount_per_tx": {"ETH": "50", "ETH_USDT": "1000000", "BTC": "2.5"},
	"usdt_cap": {"token_ids": ["ETH_USDT"], "max_amount": "10000"},
}

erc_cfg := {"enable": true, "key_sign": {"reject_all": false}}

# The business-rule tests judge descriptions alone: their chains are
# exempted the documented way (integrity.unverified_chains). integrity.rego
# has its own tests with derived facts.
no_integrity := {"unverified_chains": ["ETH", "BTC", "TRON"]}

dest_to(addr, amount) := {"destination_type": "Address", "account_output": {"address": addr, "amount": amount}}

base_tx := {
	"wallet_id": "w-1", "chain_id": "ETH", "token_id": "ETH",
	"source": {"source_type": "Org-Controlled", "wallet_id": "w-1"},
	"destination": dest_to("0xAAAA", "1.5"),
}

# shallow_merge: top-level keys of patch replace base's (object.union
# would deep-merge destinations into each other).
shallow_merge(base, patch) := object.union({k: v | some k, v in base; not k in object.keys(patch)}, patch)

# req(tx_patch): a well-formed ETH KEYSIGN, transaction fields overridden.
req(tx_patch) := {
	"request_id": "r-1",
	"request_type": "KEYSIGN",
	"detail": {
		"msg_hash_list": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
		"used_node_ids": ["node-a", "node-b"],
	},
	"extra": {
		"wallet": {"wallet_id": "w-1"},
		"transaction": shallow_merge(base_tx, tx_patch),
	},
}

# all_codes / all_msgs: what the keysign package denies, evaluated by each
# test `with input as ... with data.keysign as td with data.integrity as no_integrity ...` in the test rule
# itself. Full `data.tss.keysign` path on purpose: in regorus 0.14 the import
# alias `keysign.deny` saw only some of the package's deny definitions.
all_codes := {d.code | some d in data.tss.keysign.deny}

all_msgs := {d.msg | some d in data.tss.keysign.deny}

test_well_formed_request_passes if {
	_r1 := all_codes with input as req({}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	_r1 == set()
	keysign.allow with input as req({})
}

test_transaction_missing if {
	r := json.remove(req({}), ["extra/transaction"])
	_r2 := all_codes with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	"keysign.transaction_missing" in _r2
	not keysign.allow with input as r
}

test_msg_hash_list_missing_or_empty if {
	_r3 := all_codes with input as object.union(req({}), {"detail": {"msg_hash_list": []}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	"keysign.msg_hash_list_empty" in _r3
	_r4 := all_codes with input as object.union(req({}), {"detail": {"msg_hash_list": "abc"}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	"keysign.msg_hash_list_empty" in _r4
	_r5 := all_codes with input as json.remove(req({}), ["detail/msg_hash_list"]) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	"keysign.msg_hash_list_empty" in _r5
}

test_msg_hash_malformed if {
	r := object.union(req({}), {"detail": {"msg_hash_list": ["0xABCdef01", "not-hex", 5]}})
	_r6 := all_msgs with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg
	_r6 == {"message hash `not-hex` is not a hex string", "message hash `5` is not a hex string"}
}

test_embedded_key_sign_reject_all if {
	c := {d.code | some d in data.tss.keysign.deny} with input as req({})
		with data.keysign as td with data.integrity as no_integrity
		with data.embedded_risk_control_rules as {"enable": true, "key_sign": {"reject_all": true}}
	c == {"keysign.reject_all"}
	c2 := {d.code | some d in data.tss.keysign.deny} with input as req({})
		with data.keysign as td with data.integrity as no_integrity
		with data.embedded_risk_control_rules as {"enable": false, "key_sign": {"reject_all": true}}
	c2 == set()
}

test_outputs_cover_every_shape if {
	keysign.outputs == [{"address": "0xAAAA", "amount": "1.5"}] with input as req({})
	keysign.outputs == [{"address": "0xcontract", "amount": "0"}] with input as req({"destination": {"destination_type": "EVM_Contract", "address": "0xcontract", "calldata": "0x"}})
	keysign.amounts == ["7"] with input as req({"destination": {"destination_type": "CustodialWallet", "wallet_id": "w-2", "amount": "7"}})
}
