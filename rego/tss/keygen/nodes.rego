# KEYGEN: the node id list must name each node once. The allow-list match
# (keygen.rego) compares node ids as sets, so `[A, A, B, C]` would match an
# entry for `{A, B, C}` while the node is told to generate a key over four
# participants. A missing or non-array `node_ids`, or an entry that is not a
# node id string, denies too (fail closed), whatever the embedded rules say.
package tss.keygen

import data.tss.lib.ids

deny contains {"code": "keygen.duplicate_node_id", "msg": msg} if {
	not node_ids_fine
	some msg in ids.repeat_msgs("request_detail.node_ids", input.detail.node_ids)
}

deny contains {"code": "keygen.node_ids_malformed", "msg": msg} if {
	not node_ids_fine
	some msg in ids.shape_msgs("request_detail.node_ids", detail, "node_ids")
}

# The common case, checked once (a rule, negated: see rego/README.md).
node_ids_fine if ids.fine(input.detail.node_ids)

# `else`, not a negation (see rego/README.md, "Fail closed").
detail := input.detail if is_object(input.detail)
else := {}
