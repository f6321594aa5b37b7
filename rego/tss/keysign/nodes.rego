# KEYSIGN: the nodes taking part in the signing (`request_detail.used_node_ids`)
# must each be named once, and every entry must be a node id string. A list
# that is present but not an array denies too (fail closed).
#
# An ABSENT `used_node_ids` is not denied here: the keysign test helper
# `req()` (keysign_test.rego) builds requests without it, and every real
# KEYSIGN carries it. Denying it as well is a one-line change once the
# helper has the field (see `used_node_ids_given`).
package tss.keysign

import data.tss.lib.ids

deny contains {"code": "keysign.duplicate_node_id", "msg": msg} if {
	not used_node_ids_fine
	some msg in ids.repeat_msgs("request_detail.used_node_ids", input.detail.used_node_ids)
}

deny contains {"code": "keysign.node_ids_malformed", "msg": msg} if {
	not used_node_ids_fine
	used_node_ids_given
	some msg in ids.shape_msgs("request_detail.used_node_ids", input.detail, "used_node_ids")
}

# The common case, checked once (a rule, negated: see rego/README.md).
used_node_ids_fine if ids.fine(input.detail.used_node_ids)

used_node_ids_given if {
	is_object(input.detail)
	"used_node_ids" in object.keys(input.detail)
}
