# KEYSIGN: the nodes taking part in the signing (`request_detail.used_node_ids`)
# must each be named once, and every entry must be a node id string. A list
# that is present but not an array denies too (fail closed).
#
# An absent `used_node_ids` denies too: every real KEYSIGN names its signers.
package tss.keysign

import data.tss.lib.ids

deny contains {"code": "keysign.duplicate_node_id", "msg": msg} if {
	not used_node_ids_fine
	some msg in ids.repeat_msgs("request_detail.used_node_ids", input.detail.used_node_ids)
}

deny contains {"code": "keysign.node_ids_malformed", "msg": msg} if {
	not used_node_ids_fine
	some msg in ids.shape_msgs("request_detail.used_node_ids", input.detail, "used_node_ids")
}

# The common case, checked once (a rule, negated: see rego/README.md).
used_node_ids_fine if ids.fine(input.detail.used_node_ids)
