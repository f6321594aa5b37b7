# Tests for keysign.rego, plus the shared helpers every keysign *_test.rego
# file in this package uses: the data `td`, `no_integrity`, `erc_cfg`,
# `no_freeze`; the request `req(tx_patch)`, `dest_to`, `shallow_merge`; and
# what was denied, `all_codes`, `all_msgs`, `all_denies`, `codes_in`,
# `msgs_in`.
#
# These are the LIBRARY's tests: they hold for any operator data. Written so
# that neither the operator's data nor the next rule can make them fail:
# - the data is the library's own (testdata_test.rego, a copy of the example
#   organisation's), patched with what the tests rely on, and every test
#   puts it in place of all four documents the keysign rules read
#   (data.keysign, data.integrity, data.embedded_risk_control_rules,
#   data.freeze), so whatever rego/data.yaml says never reaches them;
# - `req` is a complete request as tss-gate hands it to the policy, with the
#   values of tests/fixtures/keysign_eth_approve.json, so a new rule finds
#   the fields real requests carry;
# - each test asserts the codes of the rules it tests, never that nothing at
#   all is denied: whether the whole library approves a request under the
#   operator's data is the operator's fixtures' question.
# Full `data.tss.keysign` paths, never an import alias (rego/README.md,
# "regorus vs OPA").
package tss.keysign_test

# --- data ----------------------------------------------------------------------

# The wallet of the approving fixtures.
wallet_id := "5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40"

# The fixture's destination, in checksum case (listed lower-case).
base_dest := "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"

# The library's test data.keysign with what these tests rely on pinned.
# Lists replace the test data's (object.union does not merge arrays); the
# maps (destinations, treasury, caps) are merged into its maps. req's
# destination is pinned as `true` so it never waits out the example's
# cool-down. Nothing here comes from rego/data.yaml: a test that needs a key
# (a rule's new list) adds it with object.union(td, {...}).
td := object.union(testdata_keysign, {
	"allowed_token_ids": ["ETH", "ETH_USDT", "BTC"],
	"allowed_wallet_ids": [wallet_id],
	"allowed_destination_types": ["Address", "EVM_Contract"],
	"lowercase_address_chains": ["ETH"],
	"allowed_destinations": {
		"ETH": {lower(base_dest): true, "0xaaaa": true, "0xtreasury": true, "0xcontract": true},
		"BTC": {"bc1qa": true, "bc1qb": true},
	},
	"treasury_addresses": {"ETH": {"0xtreasury": true}},
	"max_amount_per_tx": {"ETH": "50", "ETH_USDT": "1000000", "BTC": "2.5"},
	"usdt_cap": {"token_ids": ["ETH_USDT"], "max_amount": "10000"},
})

# The embedded KEYSIGN switch open.
erc_cfg := object.union(testdata_erc, {"enable": true, "key_sign": {"reject_all": false}})

# The policy's freeze switch off (controls_test.rego sets it on).
no_freeze := testdata_freeze

# The business-rule tests judge descriptions alone: their chains are
# exempted the documented way (integrity.unverified_chains). req's wallet
# stays pinned to req's root key and group (integrity.wallet_keys), whatever
# the test data's pins say. integrity.rego has its own tests with derived
# facts.
no_integrity := object.union(testdata_integrity, {
	"unverified_chains": ["ETH", "BTC", "TRON"],
	"wallet_keys": {wallet_id: {"root_pub_keys": [base_detail.root_pub_key], "group_ids": [base_detail.group_id]}},
})

# --- the request -----------------------------------------------------------------

dest_to(addr, amount) := {"destination_type": "Address", "account_output": {"address": addr, "amount": amount}}

# The fixture's transaction (extra_info.transaction), every field.
base_tx := {
	"transaction_id": "a9e1c3f5-7b2d-4e6a-8c0f-1d3b5a7c9e2f",
	"request_id": "wd-c3a1e6f2",
	"wallet_id": wallet_id,
	"type": "Withdrawal",
	"status": "PendingSignature",
	"chain_id": "ETH",
	"token_id": "ETH",
	"asset_id": "ETH",
	"source": {"source_type": "Org-Controlled", "wallet_id": wallet_id, "address": "0xE3eF19222515A5d6Fa2F4BAE5A66ba71e76805e4"},
	"destination": object.union(dest_to(base_dest, "0.75"), {"force_internal": false, "force_external": false}),
	"fee": {"fee_type": "EVM_EIP_1559", "token_id": "ETH"},
	"initiator": "ops@acme.example",
	"initiator_type": "Web",
	"category": [],
	"description": "0.75 ETH from an allowed wallet to an allow-listed address (mixed-case checksum form)",
	"raw_tx_info": {"used_nonce": 17, "unsigned_raw_tx": "02f001118459682f008506fc23ac0082520894d8da6bf26964af9d7eed9e03e53415d37aa96045880a688906bd8b000080c0"},
	"created_timestamp": 1763999940000,
	"updated_timestamp": 1763999995000,
}

base_detail := {
	"group_id": "cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19",
	"root_pub_key": "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
	"used_node_ids": ["coboAhX2rTbqKDKaN7fMQqCLg6vHsBEJZvW3dyx1Uq5G8sYpN4e", "coboBq9tWm3LfZk4Ds7RcY2xVJn8HuEiP6aGo1NwTdKr5bXyQ3"],
	"bip32_path_list": ["m/44/60/0/0/0"],
	"msg_hash_list": ["5d85497ed6f124086db30bcd5304c9ee366f9cecdff43fe968c3016413b84e72"],
	"tweak_list": [],
	"signature_type": 1,
	"tss_protocol": 1,
	"task_id": "a2744344fa4bb5ae7f8c04c9d95de14f",
	"biz_task_id": "a9e1c3f5-7b2d-4e6a-8c0f-1d3b5a7c9e2f",
}

holder(name, kind, node_id) := {"name": name, "type": kind, "tss_node_id": node_id, "online": true, "signer": true, "status": "Valid"}

# extra_info without the transaction.
base_extra := {
	"org": {"org_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "Acme Treasury"},
	"project": {"project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops"},
	"vault": {
		"vault_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
		"name": "Ops Vault", "type": "OrgControlled",
	},
	"wallet": {
		"wallet_id": wallet_id, "wallet_type": "MPC", "wallet_subtype": "Org-Controlled", "name": "Ops hot wallet",
		"org_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "vault_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
		"enable_auto_sweep": false,
	},
	"signer_key_share_holder_group": {
		"key_share_holder_group_id": "cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19", "type": "SigningGroup",
		"participants": 3, "threshold": 2, "status": "Valid",
		"key_share_holders": [
			holder("node-0", "API", "coboAhX2rTbqKDKaN7fMQqCLg6vHsBEJZvW3dyx1Uq5G8sYpN4e"),
			holder("node-1", "API", "coboBq9tWm3LfZk4Ds7RcY2xVJn8HuEiP6aGo1NwTdKr5bXyQ3"),
			holder("node-2", "Mobile", "coboC7mYk2PdGs9HqLr4XwTzE1vBn6JcUaF3oNi8KtWp5RhSgD"),
		],
	},
	"source_addresses": [{
		"address": "0xE3eF19222515A5d6Fa2F4BAE5A66ba71e76805e4", "chain_id": "ETH", "path": "m/44/60/0/0/0",
		"encoding": "ENCODING_PLAIN", "root_pubkey": base_detail.root_pub_key,
	}],
}

# What tss-gate decoded from the fixture's unsigned_raw_tx (docs/derived.md):
# it agrees with the description, so integrity.rego passes it.
base_derived := {
	"family": "evm", "kind": "eip1559", "chain_id": "1", "nonce": "17", "error": null,
	"access_list_len": 0, "authorities": [], "contract_creation": false, "input": "0x",
	"to": "0xd8da6bf26964af9d7eed9e03e53415d37aa96045", "value": "750000000000000000",
	"recipients": [{"address": "0xd8da6bf26964af9d7eed9e03e53415d37aa96045", "amount": "750000000000000000", "asset": "native"}],
	"token_transfer": null,
	"fees": {"gas_limit": "21000", "max_fee_per_gas": "30000000000", "max_priority_fee_per_gas": "1500000000"},
	"fee_max": "630000000000000", "fee_max_native": "0.00063",
	"signing_hashes": ["0x5d85497ed6f124086db30bcd5304c9ee366f9cecdff43fe968c3016413b84e72"],
	"msg_hashes_match": true, "unmatched_msg_hashes": [],
	"description_agrees": true, "disagreements": [],
	"signer": {"derivable": true, "addresses": [{"address": "0xe3ef19222515a5d6fa2f4bae5a66ba71e76805e4", "path": "m/44/60/0/0/0"}]},
	"violations": [],
}

# shallow_merge: top-level keys of patch replace base's (object.union
# would deep-merge destinations into each other).
shallow_merge(base, patch) := object.union({k: v | some k, v in base; not k in object.keys(patch)}, patch)

# req(tx_patch): the approving fixture's KEYSIGN as the policy sees it
# (server facts included), transaction fields replaced by tx_patch. The
# derived facts stay those of the fixture's raw transaction: the business
# rules do not read them, and integrity_test.rego replaces them.
req(tx_patch) := {
	"request_id": "c3a1e6f2-4b7d-4e8a-9f10-2d3c4b5a6e7f",
	"request_type": "KEYSIGN",
	"request_type_code": 2,
	"detail": base_detail,
	"extra": object.union(base_extra, {"transaction": shallow_merge(base_tx, tx_patch)}),
	"derived": base_derived,
	"verified_by": "tss-node-1",
	"token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123,
	"received_at": "2025-11-24T16:00:00.123Z",
	"decided_at_ms": 1764000000123,
}

# --- what was denied -------------------------------------------------------------

# all_codes / all_msgs / all_denies: what the keysign package denies,
# evaluated by each test `with input as ... with data.keysign as td with
# data.integrity as no_integrity with data.embedded_risk_control_rules as
# erc_cfg with data.freeze as no_freeze` in the test rule itself. Full
# `data.tss.keysign` path on purpose: in regorus 0.14 the import alias
# `keysign.deny` saw only some of the package's deny definitions.
all_codes := {d.code | some d in data.tss.keysign.deny}

all_msgs := {d.msg | some d in data.tss.keysign.deny}

all_denies := {d | some d in data.tss.keysign.deny}

# codes_in(codes, own) / msgs_in(denies, own): the codes, or the messages,
# of the rules that own the codes `own`, so a test pins its rule's exact
# outcome while other rules may deny too.
codes_in(codes, own) := codes & own

msgs_in(denies, own) := {d.msg | some d in denies; d.code in own}

# The codes keysign.rego itself denies with.
shape_codes := {"keysign.transaction_missing", "keysign.msg_hash_list_empty", "keysign.msg_hash_malformed", "keysign.reject_all"}

# --- tests -------------------------------------------------------------------------

test_well_formed_request_passes if {
	_r1 := all_codes with input as req({}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	codes_in(_r1, shape_codes) == set()
	data.tss.keysign.allow with input as req({}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
}

test_transaction_missing if {
	r := json.remove(req({}), ["extra/transaction"])
	_r2 := all_codes with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"keysign.transaction_missing" in _r2
	not data.tss.keysign.allow with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
}

test_msg_hash_list_missing_or_empty if {
	_r3 := all_codes with input as object.union(req({}), {"detail": {"msg_hash_list": []}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"keysign.msg_hash_list_empty" in _r3
	_r4 := all_codes with input as object.union(req({}), {"detail": {"msg_hash_list": "abc"}}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"keysign.msg_hash_list_empty" in _r4
	_r5 := all_codes with input as json.remove(req({}), ["detail/msg_hash_list"]) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	"keysign.msg_hash_list_empty" in _r5
}

test_msg_hash_malformed if {
	r := object.union(req({}), {"detail": {"msg_hash_list": ["0xABCdef01", "not-hex", 5]}})
	_r6 := all_denies with input as r with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	msgs_in(_r6, shape_codes) == {"message hash `not-hex` is not a hex string", "message hash `5` is not a hex string"}
}

test_embedded_key_sign_reject_all if {
	c := {d.code | some d in data.tss.keysign.deny} with input as req({})
		with data.keysign as td with data.integrity as no_integrity
		with data.embedded_risk_control_rules as object.union(erc_cfg, {"key_sign": {"reject_all": true}})
		with data.freeze as no_freeze
	codes_in(c, shape_codes) == {"keysign.reject_all"}
	c2 := {d.code | some d in data.tss.keysign.deny} with input as req({})
		with data.keysign as td with data.integrity as no_integrity
		with data.embedded_risk_control_rules as object.union(erc_cfg, {"enable": false, "key_sign": {"reject_all": true}})
		with data.freeze as no_freeze
	codes_in(c2, shape_codes) == set()
}

test_outputs_cover_every_shape if {
	# Bound first: regorus may leave a constant rule of this package
	# undefined when it is read in the expression that replaces `input`.
	dest := base_dest
	data.tss.keysign.outputs == [{"address": dest, "amount": "0.75"}] with input as req({}) with data.keysign as td
	data.tss.keysign.outputs == [{"address": "0xcontract", "amount": "0"}] with input as req({"destination": {"destination_type": "EVM_Contract", "address": "0xcontract", "calldata": "0x"}}) with data.keysign as td
	data.tss.keysign.amounts == ["7"] with input as req({"destination": {"destination_type": "CustodialWallet", "wallet_id": "w-2", "amount": "7"}}) with data.keysign as td
}
