# Tests for keygen.rego (the embedded key_gen rule and its curve pin); each
# asserts only its codes, so a rule added to tss.keygen later cannot make
# these fail. Library tests: every test puts its own embedded rules in
# place of data.embedded_risk_control_rules (the operator's), so they pass
# whatever rego/data.yaml says. Full data.tss.keygen paths, not an import
# alias (see rego/README.md, "regorus vs OPA").
package tss.keygen_test

entry := {"threshold": 2, "node_ids": ["coboA", "coboB", "coboC"], "curve": 0}

# The library's own embedded rules for these tests: the node's block with
# every section, shaped like the example organisation's (its allow lists
# left out: each test brings its key_gen entries).
testdata_erc := {
	"enable": true,
	"key_gen": {"reject_all": false, "allow_list": []},
	"key_sign": {"reject_all": false},
	"key_reshare": {"reject_all": false, "allow_list": []},
	"key_share_sign": {"reject_all": true},
}

# The test data's embedded rules with these key_gen entries.
erc_with(entries) := object.union(testdata_erc, {"enable": true, "key_gen": {"reject_all": false, "allow_list": entries}})

erc := erc_with([entry])

# A KEYGEN as tss-gate hands it to the policy (tests/fixtures/
# keygen_allowed_approve.json), with this threshold and node list.
req(threshold, nodes) := {
	"request_id": "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", "request_type": "KEYGEN", "request_type_code": 1,
	"detail": {"threshold": threshold, "node_ids": nodes, "curve": 0, "task_id": "f841c6279037da5599715a223c73770c", "biz_task_id": "20251124160000000123"},
	"extra": {
		"org": {"org_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "Acme Treasury"},
		"project": {"project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops"},
		"vault": {"vault_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops Vault", "type": "OrgControlled"},
		"tss_request": {"tss_request_id": "20251124160000000123", "type": "KeyGen", "status": "KeyGenerating"},
	},
	"verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
}

# keygen.rego's codes, and what it denies with them.
keygen_codes := {"keygen.reject_all", "keygen.not_in_allow_list", "keygen.allow_list_entry_incomplete"}

own_denies := {d | some d in data.tss.keygen.deny; d.code in keygen_codes}

test_allow_list_match_in_any_order if {
	data.tss.keygen.allow with input as req(2, ["coboC", "coboA", "coboB"]) with data.embedded_risk_control_rules as erc
	count(own_denies) == 0 with input as req(2, ["coboC", "coboA", "coboB"]) with data.embedded_risk_control_rules as erc
}

test_wrong_threshold_denied if {
	not data.tss.keygen.allow with input as req(3, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
	own_denies == {{"code": "keygen.not_in_allow_list", "msg": "keygen threshold `3` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry"}} with input as req(3, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
}

test_unknown_node_denied if {
	some d in data.tss.keygen.deny with input as req(2, ["coboA", "coboB", "coboX"]) with data.embedded_risk_control_rules as erc
	d.code == "keygen.not_in_allow_list"
}

test_subset_of_nodes_denied if {
	not data.tss.keygen.allow with input as req(2, ["coboA", "coboB"]) with data.embedded_risk_control_rules as erc
}

test_missing_node_ids_denied if {
	some d in data.tss.keygen.deny with input as json.remove(req(2, []), ["detail/node_ids"]) with data.embedded_risk_control_rules as erc
	d.msg == "keygen threshold `2` with node ids `<missing>` matches no key_gen allow_list entry"
}

test_reject_all_denies if {
	cfg := object.union(erc, {"key_gen": {"reject_all": true}})
	not data.tss.keygen.allow with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as cfg
	own_denies == {{"code": "keygen.reject_all", "msg": "KEYGEN is rejected: embedded_risk_control_rules.key_gen.reject_all is `true` (only an explicit false admits KEYGEN)"}} with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as cfg
}

test_missing_section_fails_closed if {
	some d in data.tss.keygen.deny with input as req(2, ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as json.remove(erc, ["key_gen"])
	d.code == "keygen.reject_all"
}

test_disabled_allows_without_checks if {
	data.tss.keygen.allow with input as req(7, ["coboZ"]) with data.embedded_risk_control_rules as object.union(erc, {"enable": false})
	count(own_denies) == 0 with input as req(7, ["coboZ"]) with data.embedded_risk_control_rules as object.union(erc, {"enable": false})
}

# The threshold is shown with its JSON type: a string "2" does not match the
# allow-listed number 2, and the message must not make them look alike.
test_string_threshold_is_shown_quoted if {
	some d in data.tss.keygen.deny with input as req("2", ["coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
	d.msg == "keygen threshold `\"2\"` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry"
}

# The request's curve must be the entry's: the allowed node set must not
# generate a key on another curve.
test_other_curve_denied if {
	r := object.union(req(2, ["coboA", "coboB", "coboC"]), {"detail": {"curve": 2}})
	not data.tss.keygen.allow with input as r with data.embedded_risk_control_rules as erc
	own_denies == {{"code": "keygen.not_in_allow_list", "msg": "keygen threshold `2` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry: entry #0 pins this threshold and node set, but curve `2` is not the entry's curve `0`"}} with input as r with data.embedded_risk_control_rules as erc
}

test_curve_as_string_or_missing_denied if {
	r := object.union(req(2, ["coboA", "coboB", "coboC"]), {"detail": {"curve": "0"}})
	some d in own_denies with input as r with data.embedded_risk_control_rules as erc
	d.msg == "keygen threshold `2` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry: entry #0 pins this threshold and node set, but curve `\"0\"` is not the entry's curve `0`"
	m := json.remove(req(2, ["coboA", "coboB", "coboC"]), ["detail/curve"])
	not data.tss.keygen.allow with input as m with data.embedded_risk_control_rules as erc
	some e in own_denies with input as m with data.embedded_risk_control_rules as erc
	contains(e.msg, "curve `<missing>` is not the entry's curve `0`")
}

# Decided: 0.0 is the number 0 (Rego compares numbers by value).
test_curve_zero_point_zero_is_zero if {
	r := object.union(req(2, ["coboA", "coboB", "coboC"]), {"detail": {"curve": 0.0}})
	data.tss.keygen.allow with input as r with data.embedded_risk_control_rules as erc
}

# An entry as the node's own YAML writes it (no curve) matches nothing, and
# the reason says so; so does a curve that is not 0 or 2.
test_entry_without_curve_matches_nothing if {
	r := req(2, ["coboA", "coboB", "coboC"])
	cfg := erc_with([json.remove(entry, ["curve"])])
	not data.tss.keygen.allow with input as r with data.embedded_risk_control_rules as cfg
	own_denies == {{"code": "keygen.allow_list_entry_incomplete", "msg": "key_gen allow_list entry #0 (threshold `2`, node ids `coboA, coboB, coboC`) matches nothing: it lacks the `curve` pin (0 for SECP256K1 or 2 for ED25519)"}} with input as r with data.embedded_risk_control_rules as cfg
	bad := erc_with([object.union(entry, {"curve": "0"})])
	own_denies == {{"code": "keygen.allow_list_entry_incomplete", "msg": "key_gen allow_list entry #0 (threshold `2`, node ids `coboA, coboB, coboC`) matches nothing: its `curve` pin is `\"0\"`, not 0 for SECP256K1 or 2 for ED25519"}} with input as r with data.embedded_risk_control_rules as bad
	one := erc_with([object.union(entry, {"curve": 1})])
	r1 := object.union(r, {"detail": {"curve": 1}})
	not data.tss.keygen.allow with input as r1 with data.embedded_risk_control_rules as one
}

# Entries are named by their index as written; an entry for the same set on
# another curve, or one without a curve, does not stop one that matches.
test_entries_by_index_and_curve if {
	ed := object.union(entry, {"curve": 2})
	cfg := erc_with(["junk", json.remove(entry, ["curve"]), ed, entry])
	r := req(2, ["coboA", "coboB", "coboC"])
	data.tss.keygen.allow with input as r with data.embedded_risk_control_rules as cfg
	count(own_denies) == 0 with input as r with data.embedded_risk_control_rules as cfg
	cfg2 := erc_with(["junk", json.remove(entry, ["curve"]), ed])
	own_denies == {
		{"code": "keygen.allow_list_entry_incomplete", "msg": "key_gen allow_list entry #1 (threshold `2`, node ids `coboA, coboB, coboC`) matches nothing: it lacks the `curve` pin (0 for SECP256K1 or 2 for ED25519)"},
		{"code": "keygen.not_in_allow_list", "msg": "keygen threshold `2` with node ids `coboA, coboB, coboC` matches no key_gen allow_list entry: entry #2 pins this threshold and node set, but curve `0` is not the entry's curve `2`"},
	} with input as r with data.embedded_risk_control_rules as cfg2
}
