# KEYRESHARE: moving a key to a new node set / threshold. Uses the TSS
# Node's embedded rule `embedded_risk_control_rules.key_reshare`: root key
# (xpubkey), new threshold and new node id set must match an allow_list entry.
#
# The node's own rule compares only those three, but what the node reshares
# is the group `old_group_id` on `curve`: the same xpub text beside another
# group's id (another vault's key) or another curve would move that group
# onto the allowed node set. So each entry must also pin tss-gate's
# extension keys `curve`, `old_group_ids`, `old_threshold` and `old_node_ids`
# (the current group), and an entry lacking any of them matches nothing.
package tss.keyreshare

import data.tss.lib.erc
import data.tss.lib.fmt
import data.tss.lib.ids

allow if erc.disabled

allow if {
	reshare_checked
	matched
}

reshare_checked if {
	not erc.disabled
	erc.permits("key_reshare")
}

matched if {
	some e in key_entries
	count(pin_problems(e)) == 0
	count(mismatches(e)) == 0
}

# The allow_list entries naming this request's root key, by their index in
# the list (messages name the entry an operator has to look at).
key_entries[i] := e if {
	some i, e in erc.indexed_allow_list("key_reshare")
	is_string(e.xpubkey)
	e.xpubkey == detail.root_pub_key
}

# --- what an entry must pin ---------------------------------------------------

# Every pin, and what a valid one is (the text goes into the message).
pins := {
	"new_threshold": "a positive integer",
	"new_node_ids": "a non-empty list of distinct node ids",
	"curve": "0 for SECP256K1 or 2 for ED25519",
	"old_group_ids": "a non-empty list of the TSS group ids holding this key",
	"old_threshold": "a positive integer, the current group's threshold",
	"old_node_ids": "a non-empty list of the current group's distinct node ids",
}

pin_problems(e) := {p |
	some pin, wants in pins
	not pin_ok(e, pin)
	p := pin_problem(e, pin, wants)
}

pin_problem(e, pin, wants) := sprintf("its `%s` pin is `%s`, not %s", [pin, fmt.show(e[pin]), wants]) if pin in object.keys(e)
else := sprintf("it lacks the `%s` pin (%s)", [pin, wants])

pin_ok(e, "new_threshold") if positive_int(e.new_threshold)

pin_ok(e, "new_node_ids") if distinct_ids(e.new_node_ids)

pin_ok(e, "curve") if erc.curve(e.curve)

pin_ok(e, "old_group_ids") if {
	is_array(e.old_group_ids)
	count(e.old_group_ids) > 0
	every g in e.old_group_ids {
		is_string(g)
		g != ""
	}
}

pin_ok(e, "old_threshold") if positive_int(e.old_threshold)

pin_ok(e, "old_node_ids") if distinct_ids(e.old_node_ids)

# Numbers are compared by value, as Rego does: 2.0 is the integer 2.
positive_int(x) if {
	is_number(x)
	x >= 1
	floor(x) == x
}

distinct_ids(xs) if {
	ids.fine(xs)
	count(xs) > 0
}

# --- how the request differs from a complete entry --------------------------

# One phrase per field that does not match; empty when the entry matches.
# Comparisons are `==`, which never equates a number with a string (`"0"`
# is not the curve 0).
mismatches(e) := ((curve_off(e) | group_off(e)) | (old_threshold_off(e) | used_off(e))) | (new_threshold_off(e) | new_nodes_off(e))

curve_off(e) := set() if detail.curve == e.curve
else := {sprintf("curve `%s` is not the entry's curve `%s`", [fmt.field(detail, "curve"), fmt.show(e.curve)])}

group_off(e) := set() if {
	is_string(detail.old_group_id)
	detail.old_group_id in e.old_group_ids
} else := {sprintf("old_group_id `%s` is not among the entry's old_group_ids `%s`", [fmt.field(detail, "old_group_id"), fmt.list(e.old_group_ids)])}

old_threshold_off(e) := set() if detail.old_threshold == e.old_threshold
else := {sprintf("old_threshold `%s` is not the entry's old_threshold `%s`", [fmt.field(detail, "old_threshold"), fmt.show(e.old_threshold)])}

# The nodes taking part must be members of the current group, each once,
# and at least its threshold of them.
used_off(e) := outsiders_off(e) | too_few_off(e) if distinct_ids(detail.used_node_ids)
else := {sprintf("used_node_ids `%s` is not a non-empty list of distinct node ids", [fmt.field(detail, "used_node_ids")])}

outsiders_off(e) := {sprintf("used_node_ids include `%s`, not in the entry's old_node_ids", [fmt.list(out)]) |
	out := {x | some x in detail.used_node_ids; not old_node(e, x)}
	count(out) > 0
}

old_node(e, x) if x in e.old_node_ids

too_few_off(e) := {sprintf("used_node_ids count %d, below the entry's old_threshold `%s`", [count(detail.used_node_ids), fmt.show(e.old_threshold)]) |
	count(detail.used_node_ids) < e.old_threshold
}

new_threshold_off(e) := set() if detail.new_threshold == e.new_threshold
else := {sprintf("new_threshold `%s` is not the entry's new_threshold `%s`", [fmt.field(detail, "new_threshold"), fmt.show(e.new_threshold)])}

new_nodes_off(e) := set() if erc.same_nodes(detail.new_node_ids, e.new_node_ids)
else := {sprintf("new_node_ids `%s` are not the entry's new_node_ids `%s`", [node_ids_text, fmt.list(e.new_node_ids)])}

# --- denials ------------------------------------------------------------------

deny contains {
	"code": "keyreshare.reject_all",
	"msg": sprintf("KEYRESHARE is rejected: embedded_risk_control_rules.key_reshare.reject_all is `%s` (only an explicit false admits KEYRESHARE)", [erc.reject_all_text("key_reshare")]),
} if {
	not erc.disabled
	not erc.permits("key_reshare")
}

# No entry names the root key.
deny contains {
	"code": "keyreshare.not_in_allow_list",
	"msg": sprintf(
		"key reshare of root key `%s` to threshold `%s` with new node ids `%s` matches no key_reshare allow_list entry",
		[fmt.field(detail, "root_pub_key"), fmt.field(detail, "new_threshold"), node_ids_text],
	),
} if {
	reshare_checked
	not matched
	count(key_entries) == 0
}

# A complete entry names the root key, but some field differs: one reason
# per field, so the operator sees exactly what the request asks otherwise.
deny contains {
	"code": "keyreshare.not_in_allow_list",
	"msg": sprintf(
		"key reshare of root key `%s` matches no key_reshare allow_list entry: entry #%d pins this root key, but %s",
		[fmt.field(detail, "root_pub_key"), i, p],
	),
} if {
	reshare_checked
	not matched
	some i, e in key_entries
	count(pin_problems(e)) == 0
	some p in mismatches(e)
}

# An entry for the root key that lacks a pin (an entry written before the
# pins existed, or a typo) matches nothing; say which pin, so an operator
# upgrading sees why the reshare stopped.
deny contains {
	"code": "keyreshare.allow_list_entry_incomplete",
	"msg": sprintf("key_reshare allow_list entry #%d for root key `%s` matches nothing: %s", [i, fmt.field(detail, "root_pub_key"), p]),
} if {
	reshare_checked
	not matched
	some i, e in key_entries
	some p in pin_problems(e)
}

node_ids_text := fmt.list(detail.new_node_ids) if is_array(detail.new_node_ids)
else := "<missing>"

# --- data.integrity.wallet_keys -----------------------------------------------

# A wallet pinned there signs only with its own root keys and TSS groups
# (keysign/wallet.rego). A reshare of such a root key must then start from
# one of those groups: checked whatever the embedded rules say, as the
# KEYSIGN pins are.
deny contains {
	"code": "keyreshare.group_not_pinned",
	"msg": sprintf(
		"old_group_id `%s` is not among the group_ids that data.integrity.wallet_keys pins for root key `%s` (wallets %s)",
		[fmt.field(detail, "old_group_id"), fmt.field(detail, "root_pub_key"), fmt.list(pinning_wallets)],
	),
} if {
	count(pinning_wallets) > 0
	not group_pinned
}

# Wallets whose pins list this root key.
pinning_wallets contains w if {
	is_string(detail.root_pub_key)
	some w, pin in wallet_keys
	is_object(pin)
	is_array(pin.root_pub_keys)
	detail.root_pub_key in pin.root_pub_keys
}

# Any wallet of the key may name the group: a key can be held by several
# groups, each pinned where it signs.
group_pinned if {
	is_string(detail.old_group_id)
	some w in pinning_wallets
	is_array(wallet_keys[w].group_ids)
	detail.old_group_id in wallet_keys[w].group_ids
}

# `else`, not a negation (see rego/README.md, "Fail closed").
wallet_keys := data.integrity.wallet_keys if is_object(data.integrity.wallet_keys)
else := {}
