# Tests for keyreshare.rego (the embedded key_reshare rule and its pins);
# each asserts only its codes, so a rule added to tss.keyreshare later
# cannot make these fail. Library tests: every test puts its own data in
# place of data.embedded_risk_control_rules and data.integrity (the
# operator's), so they pass whatever rego/data.yaml says. Full
# data.tss.keyreshare paths, not an import alias (see rego/README.md,
# "regorus vs OPA").
package tss.keyreshare_test

group := "cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19"

# The allow_list entry these tests rely on: the node's own three keys and
# tss-gate's pins of the group being reshared.
entry := {
	"xpubkey": "xpubROOT", "new_threshold": 2, "new_node_ids": ["coboA", "coboC", "coboD"],
	"curve": 0, "old_group_ids": [group], "old_threshold": 2, "old_node_ids": ["coboA", "coboB", "coboC"],
}

# The library's own embedded rules for these tests: the node's block with
# every section, shaped like the example organisation's (its allow lists
# left out: each test brings its key_reshare entries).
testdata_erc := {
	"enable": true,
	"key_gen": {"reject_all": false, "allow_list": []},
	"key_sign": {"reject_all": false},
	"key_reshare": {"reject_all": false, "allow_list": []},
	"key_share_sign": {"reject_all": true},
}

# The test data's embedded rules with these key_reshare entries.
erc_with(entries) := object.union(testdata_erc, {"enable": true, "key_reshare": {"reject_all": false, "allow_list": entries}})

erc := erc_with([entry])

# The embedded checks off, the rest of the test data's block kept.
erc_off := object.union(erc, {"enable": false})

# No wallet pins any key (the wallet_keys cross-check is tested on its own).
no_pins := {"wallet_keys": {}}

# The example organisation's wallet pins (a copy of rego/data.yaml's
# integrity.wallet_keys as this library version shipped it): two wallets
# on the fixtures' root key, both in the fixtures' group.
testdata_wallet_pins := {"wallet_keys": {
	"5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40": {
		"root_pub_keys": ["xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8"],
		"group_ids": [group],
		"accounts": [0],
	},
	"a71e4c02-3b9f-4d58-8e21-6c0f5a9d2b17": {
		"root_pub_keys": ["xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8"],
		"group_ids": [group],
		"accounts": [1],
	},
}}

# A KEYRESHARE as tss-gate hands it to the policy (tests/fixtures/
# keyreshare_allowed_approve.json), with this root key and new group.
req(xpub, nt, nodes) := {
	"request_id": "0b8f6e7a-8dbf-4ac1-bdef-a51423889fd3", "request_type": "KEYRESHARE", "request_type_code": 3,
	"detail": {
		"root_pub_key": xpub, "new_threshold": nt, "new_node_ids": nodes, "used_node_ids": ["coboA", "coboB"],
		"old_threshold": 2, "old_group_id": group, "curve": 0,
		"task_id": "b29f64e081d6382f59a24194526c76a7", "biz_task_id": "20251124160500000456",
	},
	"extra": {
		"org": {"org_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "Acme Treasury"},
		"project": {"project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops"},
		"vault": {"vault_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "project_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "name": "Ops Vault", "type": "OrgControlled"},
		"tss_request": {"tss_request_id": "20251124160500000456", "type": "KeyReshare", "status": "KeyReSharing"},
	},
	"verified_by": "tss-node-1", "token": {"iat": 1764000000, "exp": 1764000060},
	"received_at_ms": 1764000000123, "received_at": "2025-11-24T16:00:00.123Z", "decided_at_ms": 1764000000123,
}

# The allowed reshare with these detail fields changed.
ok_req := req("xpubROOT", 2, ["coboD", "coboA", "coboC"])

with_detail(patch) := object.union(ok_req, {"detail": patch})

without(field) := json.remove(ok_req, [concat("/", ["detail", field])])

# keyreshare.rego's codes, and what it denies with them.
keyreshare_codes := {
	"keyreshare.reject_all", "keyreshare.not_in_allow_list",
	"keyreshare.allow_list_entry_incomplete", "keyreshare.group_not_pinned",
}

own_denies := {d | some d in data.tss.keyreshare.deny; d.code in keyreshare_codes}

# The not_in_allow_list message for entry #0 and this mismatch.
off(what) := {"code": "keyreshare.not_in_allow_list", "msg": concat("", ["key reshare of root key `xpubROOT` matches no key_reshare allow_list entry: entry #0 pins this root key, but ", what])}

incomplete(i, what) := {"code": "keyreshare.allow_list_entry_incomplete", "msg": sprintf("key_reshare allow_list entry #%d for root key `xpubROOT` matches nothing: %s", [i, what])}

test_allow_list_match if {
	r := ok_req
	data.tss.keyreshare.allow with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	count(own_denies) == 0 with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

# Every old node may take part, and more than the threshold may.
test_all_old_nodes_may_take_part if {
	r := with_detail({"used_node_ids": ["coboC", "coboB", "coboA"]})
	data.tss.keyreshare.allow with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	count(own_denies) == 0 with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

# Decided: JSON has one number type, and Rego compares numbers by value, so
# 0.0 is the curve 0 and 2.0 the threshold 2 (in OPA and regorus alike). A
# string is never a number.
test_numbers_compare_by_value if {
	r := with_detail({"curve": 0.0, "old_threshold": 2.0})
	data.tss.keyreshare.allow with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	count(own_denies) == 0 with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_other_root_key_denied if {
	own_denies == {{"code": "keyreshare.not_in_allow_list", "msg": "key reshare of root key `xpubOTHER` to threshold `2` with new node ids `coboA, coboC, coboD` matches no key_reshare allow_list entry"}} with input as req("xpubOTHER", 2, ["coboA", "coboC", "coboD"]) with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

# The attack this file exists for: the allowed xpub beside another vault's
# group id moves that group onto the allowed node set.
test_another_group_denied if {
	r := with_detail({"old_group_id": "4e8a2c6d-1f3b-4a5c-9d7e-0b2f4a6c8e13"})
	not data.tss.keyreshare.allow with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	own_denies == {off("old_group_id `4e8a2c6d-1f3b-4a5c-9d7e-0b2f4a6c8e13` is not among the entry's old_group_ids `cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19`")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_other_curve_denied if {
	r := with_detail({"curve": 2})
	own_denies == {off("curve `2` is not the entry's curve `0`")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_curve_as_string_denied if {
	r := with_detail({"curve": "0"})
	own_denies == {off("curve `\"0\"` is not the entry's curve `0`")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_old_threshold_changed_denied if {
	r := with_detail({"old_threshold": 1})
	own_denies == {off("old_threshold `1` is not the entry's old_threshold `2`")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	s := with_detail({"old_threshold": "2"})
	own_denies == {off("old_threshold `\"2\"` is not the entry's old_threshold `2`")} with input as s with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_used_node_outside_old_group_denied if {
	r := with_detail({"used_node_ids": ["coboA", "coboX", "coboD"]})
	own_denies == {off("used_node_ids include `coboD, coboX`, not in the entry's old_node_ids")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_too_few_used_nodes_denied if {
	r := with_detail({"used_node_ids": ["coboB"]})
	own_denies == {off("used_node_ids count 1, below the entry's old_threshold `2`")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

# Each used node once: a repeat does not count twice toward the threshold.
test_repeated_used_node_denied if {
	r := with_detail({"used_node_ids": ["coboA", "coboA"]})
	own_denies == {off("used_node_ids `[\"coboA\",\"coboA\"]` is not a non-empty list of distinct node ids")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_empty_or_missing_used_nodes_denied if {
	r := with_detail({"used_node_ids": []})
	own_denies == {off("used_node_ids `[]` is not a non-empty list of distinct node ids")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	own_denies == {off("used_node_ids `<missing>` is not a non-empty list of distinct node ids")} with input as without("used_node_ids") with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_missing_group_or_curve_denied if {
	own_denies == {off("old_group_id `<missing>` is not among the entry's old_group_ids `cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19`")} with input as without("old_group_id") with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	own_denies == {off("curve `<missing>` is not the entry's curve `0`")} with input as without("curve") with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	own_denies == {off("old_threshold `<missing>` is not the entry's old_threshold `2`")} with input as without("old_threshold") with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

# Only a string is a group id: a list holding the group is not the group,
# and an entry listing a number is incomplete.
test_non_string_group_id_denied if {
	r := with_detail({"old_group_id": [group]})
	own_denies == {off("old_group_id `[\"cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19\"]` is not among the entry's old_group_ids `cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19`")} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	cfg := erc_with([object.union(entry, {"old_group_ids": [group, 7]})])
	own_denies == {incomplete(0, "its `old_group_ids` pin is `[\"cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19\",7]`, not a non-empty list of the TSS group ids holding this key")} with input as ok_req with data.embedded_risk_control_rules as cfg with data.integrity as no_pins
}

test_other_threshold_or_nodes_denied if {
	own_denies == {off("new_threshold `3` is not the entry's new_threshold `2`")} with input as req("xpubROOT", 3, ["coboA", "coboC", "coboD"]) with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	own_denies == {off("new_node_ids `coboA, coboC, coboX` are not the entry's new_node_ids `coboA, coboC, coboD`")} with input as req("xpubROOT", 2, ["coboA", "coboC", "coboX"]) with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

# Every field that differs gets its own reason.
test_each_mismatch_is_named if {
	r := with_detail({"curve": 2, "old_group_id": "g-other", "used_node_ids": ["coboX"]})
	own_denies == {
		off("curve `2` is not the entry's curve `0`"),
		off("old_group_id `g-other` is not among the entry's old_group_ids `cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19`"),
		off("used_node_ids include `coboX`, not in the entry's old_node_ids"),
		off("used_node_ids count 1, below the entry's old_threshold `2`"),
	} with input as r with data.embedded_risk_control_rules as erc with data.integrity as no_pins
}

test_missing_fields_denied if {
	some d in data.tss.keyreshare.deny with input as json.remove(req("x", 2, []), ["detail/root_pub_key", "detail/new_threshold", "detail/new_node_ids"]) with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	d.msg == "key reshare of root key `<missing>` to threshold `<missing>` with new node ids `<missing>` matches no key_reshare allow_list entry"
}

# An entry as the node's own YAML writes it (no pins) matches nothing, and
# the reasons say which pins it lacks.
test_entry_without_pins_matches_nothing if {
	cfg := erc_with([json.remove(entry, ["curve", "old_group_ids", "old_threshold", "old_node_ids"])])
	not data.tss.keyreshare.allow with input as ok_req with data.embedded_risk_control_rules as cfg with data.integrity as no_pins
	own_denies == {
		incomplete(0, "it lacks the `curve` pin (0 for SECP256K1 or 2 for ED25519)"),
		incomplete(0, "it lacks the `old_group_ids` pin (a non-empty list of the TSS group ids holding this key)"),
		incomplete(0, "it lacks the `old_threshold` pin (a positive integer, the current group's threshold)"),
		incomplete(0, "it lacks the `old_node_ids` pin (a non-empty list of the current group's distinct node ids)"),
	} with input as ok_req with data.embedded_risk_control_rules as cfg with data.integrity as no_pins
}

test_entry_with_malformed_pins_matches_nothing if {
	cfg := erc_with([object.union(entry, {"curve": "0", "old_group_ids": [], "old_threshold": 0, "old_node_ids": ["coboA", "coboA"], "new_threshold": 1.5})])
	own_denies == {
		incomplete(0, "its `curve` pin is `\"0\"`, not 0 for SECP256K1 or 2 for ED25519"),
		incomplete(0, "its `old_group_ids` pin is `[]`, not a non-empty list of the TSS group ids holding this key"),
		incomplete(0, "its `old_threshold` pin is `0`, not a positive integer, the current group's threshold"),
		incomplete(0, "its `old_node_ids` pin is `[\"coboA\",\"coboA\"]`, not a non-empty list of the current group's distinct node ids"),
		incomplete(0, "its `new_threshold` pin is `1.5`, not a positive integer"),
	} with input as ok_req with data.embedded_risk_control_rules as cfg with data.integrity as no_pins
	cfg1 := erc_with([object.union(entry, {"curve": 1})])
	own_denies == {incomplete(0, "its `curve` pin is `1`, not 0 for SECP256K1 or 2 for ED25519")} with input as with_detail({"curve": 1}) with data.embedded_risk_control_rules as cfg1 with data.integrity as no_pins
}

# Entries are named by their index in the list as written; one for another
# key and a non-object do not count, and an incomplete entry does not stop
# a complete one that matches.
test_entries_are_named_by_index if {
	cfg := erc_with(["junk", object.union(entry, {"xpubkey": "xpubOTHER"}), json.remove(entry, ["curve"])])
	own_denies == {incomplete(2, "it lacks the `curve` pin (0 for SECP256K1 or 2 for ED25519)")} with input as ok_req with data.embedded_risk_control_rules as cfg with data.integrity as no_pins
	ok := erc_with([json.remove(entry, ["curve"]), entry])
	data.tss.keyreshare.allow with input as ok_req with data.embedded_risk_control_rules as ok with data.integrity as no_pins
	count(own_denies) == 0 with input as ok_req with data.embedded_risk_control_rules as ok with data.integrity as no_pins
}

# Two entries for one key (one per group): the request must fit one of
# them whole, not mix the fields of both.
test_fields_of_two_entries_do_not_mix if {
	ed := object.union(entry, {"curve": 2, "old_group_ids": ["g-ed"]})
	cfg := erc_with([entry, ed])
	r := with_detail({"curve": 2})
	not data.tss.keyreshare.allow with input as r with data.embedded_risk_control_rules as cfg with data.integrity as no_pins
	s := with_detail({"curve": 2, "old_group_id": "g-ed"})
	data.tss.keyreshare.allow with input as s with data.embedded_risk_control_rules as cfg with data.integrity as no_pins
}

# data.integrity.wallet_keys: a wallet that pins the root key names the
# groups a reshare may start from, also with the embedded checks off.
test_wallet_pins_bind_the_group if {
	other := {"wallet_keys": {"w1": {"root_pub_keys": ["xpubROOT"], "group_ids": ["g-other"]}, "w2": {"root_pub_keys": ["xpubROOT"], "group_ids": ["g-ed"]}}}
	want := {{"code": "keyreshare.group_not_pinned", "msg": "old_group_id `cb1d6ea2-93f7-4c31-9e0b-5a8f2d7c4e19` is not among the group_ids that data.integrity.wallet_keys pins for root key `xpubROOT` (wallets w1, w2)"}}
	own_denies == want with input as ok_req with data.embedded_risk_control_rules as erc with data.integrity as other
	own_denies == want with input as ok_req with data.embedded_risk_control_rules as erc_off with data.integrity as other
	either := {"wallet_keys": {"w1": {"root_pub_keys": ["xpubROOT"], "group_ids": ["g-other"]}, "w2": {"root_pub_keys": ["xpubROOT"], "group_ids": [group]}}}
	count(own_denies) == 0 with input as ok_req with data.embedded_risk_control_rules as erc with data.integrity as either
	unrelated := {"wallet_keys": {"w1": {"root_pub_keys": ["xpubOTHER"], "group_ids": ["g-other"]}}}
	count(own_denies) == 0 with input as ok_req with data.embedded_risk_control_rules as erc with data.integrity as unrelated
	count(own_denies) == 0 with input as ok_req with data.embedded_risk_control_rules as erc with data.integrity as {}
}

test_wallet_pins_without_groups_deny if {
	bad := {"wallet_keys": {"w1": {"root_pub_keys": ["xpubROOT"]}}}
	some d in data.tss.keyreshare.deny with input as ok_req with data.embedded_risk_control_rules as erc with data.integrity as bad
	d.code == "keyreshare.group_not_pinned"
}

# A realistic table (the example organisation's pins, two wallets on one
# root key) holds the approving fixture's group and no other.
test_example_wallet_pins_hold_the_fixture_group if {
	r := with_detail({"root_pub_key": "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8"})
	count({d | some d in own_denies; d.code == "keyreshare.group_not_pinned"}) == 0 with input as r with data.embedded_risk_control_rules as erc_off with data.integrity as testdata_wallet_pins
	s := object.union(r, {"detail": {"old_group_id": "4e8a2c6d-1f3b-4a5c-9d7e-0b2f4a6c8e13"}})
	some d in own_denies with input as s with data.embedded_risk_control_rules as erc_off with data.integrity as testdata_wallet_pins
	d.code == "keyreshare.group_not_pinned"
}

test_reject_all_denies if {
	some d in data.tss.keyreshare.deny with input as ok_req with data.embedded_risk_control_rules as object.union(erc, {"key_reshare": {"reject_all": true}}) with data.integrity as no_pins
	d.code == "keyreshare.reject_all"
}

test_disabled_allows if {
	data.tss.keyreshare.allow with input as req("xpubOTHER", 9, []) with data.embedded_risk_control_rules as erc_off with data.integrity as no_pins
	count(own_denies) == 0 with input as req("xpubOTHER", 9, []) with data.embedded_risk_control_rules as erc_off with data.integrity as no_pins
}
