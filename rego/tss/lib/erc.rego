# Reads `data.embedded_risk_control_rules`, the TSS Node's own embedded
# risk-control YAML, copied verbatim into rego/data.yaml.
#
# Fail closed: the checks are OFF only when `enable` is exactly `false`;
# a missing section or a missing `enable` leaves them ON. Likewise a
# `reject_all` that is anything but exactly `false` (missing included)
# rejects the type.
package tss.lib.erc

import data.tss.lib.fmt

# `else` instead of `default` (library style, see README).
rules := data.embedded_risk_control_rules if is_object(data.embedded_risk_control_rules)
else := {}

# disabled: the operator explicitly switched embedded checks off. The types
# they govern are then allowed unless some other rule denies.
disabled if rules.enable == false

# section(name): one type's block (`key_gen`, ...), {} when absent.
section(name) := rules[name] if {
	is_object(rules)
	is_object(rules[name])
}

section(name) := {} if not has_section(name)

has_section(name) if {
	is_object(rules)
	is_object(rules[name])
}

# indexed_allow_list(name): the block's allow_list entries (objects only)
# as {index: entry}, each keeping its index in the list as written, so
# messages can name it.
indexed_allow_list(name) := {i: e | some i, e in section(name).allow_list; is_object(e)} if is_array(section(name).allow_list)
else := {}

# curve(c): c is a curve number as the node sends it (PROTOCOL.md): 0
# SECP256K1 or 2 ED25519. The string "0" is not one; 0.0 is the number 0.
curve(c) if {
	is_number(c)
	c == 0
}

curve(c) if {
	is_number(c)
	c == 2
}

# permits(name): the block's reject_all is exactly false. Read directly (a
# missing or non-object block has no reject_all): this runs on every
# request, and section() evaluates three definitions per call.
permits(name) if rules[name].reject_all == false

# reject_all_text(name): how reject_all is shown in messages.
reject_all_text(name) := fmt.field(section(name), "reject_all")

# same_nodes(a, b): node id lists compared as sets, as the TSS Node does.
# Both must be non-empty arrays of strings.
same_nodes(a, b) if {
	is_array(a)
	is_array(b)
	count(a) > 0
	every x in a { is_string(x) }
	{x | some x in a} == {y | some y in b}
}

