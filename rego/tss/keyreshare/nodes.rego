# KEYRESHARE: the new node set and the nodes taking part in the reshare must
# each name every node once. The allow-list match (keyreshare.rego) compares
# `new_node_ids` as a set, so a repeated id would go unnoticed. A missing or
# non-array list, or an entry that is not a node id string, denies too
# (fail closed), whatever the embedded rules say.
package tss.keyreshare

import data.tss.lib.ids

node_lists := ["new_node_ids", "used_node_ids"]

deny contains {"code": "keyreshare.duplicate_node_id", "msg": msg} if {
	some key in lists_not_fine
	some msg in ids.repeat_msgs(concat(".", ["request_detail", key]), detail[key])
}

deny contains {"code": "keyreshare.node_ids_malformed", "msg": msg} if {
	some key in lists_not_fine
	some msg in ids.shape_msgs(concat(".", ["request_detail", key]), detail, key)
}

# The common case (each list fine) is checked once per list; messages are
# built only for a list that is not.
lists_not_fine contains key if {
	some key in node_lists
	not list_fine(key)
}

list_fine(key) if ids.fine(detail[key])

# `else`, not a negation (see rego/README.md, "Fail closed").
detail := input.detail if is_object(input.detail)
else := {}
