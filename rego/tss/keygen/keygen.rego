# KEYGEN: creating a new key share group. Uses the TSS Node's own embedded
# rule `embedded_risk_control_rules.key_gen`: the request's threshold and
# node id set must match an allow_list entry (node ids compared as sets).
# The node's rule does not look at the curve, so each entry must also pin
# tss-gate's extension key `curve` (0 SECP256K1, 2 ED25519): without it an
# allowed node set could be made to generate a key on a curve nobody asked
# for. An entry without a valid `curve` matches nothing.
package tss.keygen

import data.tss.lib.erc
import data.tss.lib.fmt

allow if erc.disabled

allow if {
	keygen_checked
	matched
}

matched if {
	some e in group_entries
	curve_pinned(e)
	e.curve == input.detail.curve
}

# The entries whose threshold and node set are the request's, by index in
# the list (messages name the entry).
group_entries[i] := e if {
	some i, e in erc.indexed_allow_list("key_gen")
	e.threshold == input.detail.threshold
	erc.same_nodes(input.detail.node_ids, e.node_ids)
}

deny contains {
	"code": "keygen.reject_all",
	"msg": sprintf("KEYGEN is rejected: embedded_risk_control_rules.key_gen.reject_all is `%s` (only an explicit false admits KEYGEN)", [erc.reject_all_text("key_gen")]),
} if {
	not erc.disabled
	not erc.permits("key_gen")
}

deny contains {
	"code": "keygen.not_in_allow_list",
	"msg": sprintf("keygen threshold `%s` with node ids `%s` matches no key_gen allow_list entry", [fmt.field(input.detail, "threshold"), node_ids_text]),
} if {
	keygen_checked
	not matched
	count(group_entries) == 0
}

# `==` never equates a number with a string: the curve "0" is not 0.
deny contains {
	"code": "keygen.not_in_allow_list",
	"msg": sprintf(
		"keygen threshold `%s` with node ids `%s` matches no key_gen allow_list entry: entry #%d pins this threshold and node set, but curve `%s` is not the entry's curve `%s`",
		[fmt.field(input.detail, "threshold"), node_ids_text, i, fmt.field(input.detail, "curve"), fmt.show(e.curve)],
	),
} if {
	keygen_checked
	not matched
	some i, e in group_entries
	curve_pinned(e)
}

# An entry written before `curve` was pinned matches nothing; say so, so an
# operator upgrading sees why the keygen stopped.
deny contains {
	"code": "keygen.allow_list_entry_incomplete",
	"msg": sprintf("key_gen allow_list entry #%d (threshold `%s`, node ids `%s`) matches nothing: %s", [i, fmt.show(e.threshold), node_ids_text, curve_problem(e)]),
} if {
	keygen_checked
	not matched
	some i, e in group_entries
	not curve_pinned(e)
}

# A rule, negated above: `not erc.curve(e.curve)` would be undefined in OPA
# when the entry has no curve (see rego/README.md, "Fail closed").
curve_pinned(e) if erc.curve(e.curve)

curve_problem(e) := sprintf("its `curve` pin is `%s`, not 0 for SECP256K1 or 2 for ED25519", [fmt.show(e.curve)]) if "curve" in object.keys(e)
else := "it lacks the `curve` pin (0 for SECP256K1 or 2 for ED25519)"

keygen_checked if {
	not erc.disabled
	erc.permits("key_gen")
}

node_ids_text := fmt.list(input.detail.node_ids) if is_array(input.detail.node_ids)

node_ids_text := "<missing>" if not node_ids_listed

node_ids_listed if is_array(input.detail.node_ids)
