# KEYRESHARE: moving a key to a new node set / threshold. Uses the TSS
# Node's embedded rule `embedded_risk_control_rules.key_reshare`: root key
# (xpubkey), new threshold and new node id set must match an allow_list entry.
package tss.keyreshare

import data.tss.lib.erc
import data.tss.lib.fmt

allow if erc.disabled

allow if {
	not erc.disabled
	erc.permits("key_reshare")
	matched
}

matched if {
	some entry in erc.allow_list("key_reshare")
	is_string(entry.xpubkey)
	entry.xpubkey == input.detail.root_pub_key
	entry.new_threshold == input.detail.new_threshold
	erc.same_nodes(input.detail.new_node_ids, entry.new_node_ids)
}

deny contains {
	"code": "keyreshare.reject_all",
	"msg": sprintf("KEYRESHARE is rejected: embedded_risk_control_rules.key_reshare.reject_all is `%s` (only an explicit false admits KEYRESHARE)", [erc.reject_all_text("key_reshare")]),
} if {
	not erc.disabled
	not erc.permits("key_reshare")
}

deny contains {
	"code": "keyreshare.not_in_allow_list",
	"msg": sprintf(
		"key reshare of root key `%s` to threshold `%s` with new node ids `%s` matches no key_reshare allow_list entry",
		[fmt.field(input.detail, "root_pub_key"), fmt.field(input.detail, "new_threshold"), node_ids_text],
	),
} if {
	not erc.disabled
	erc.permits("key_reshare")
	not matched
}

node_ids_text := fmt.list(input.detail.new_node_ids) if is_array(input.detail.new_node_ids)

node_ids_text := "<missing>" if not node_ids_listed

node_ids_listed if is_array(input.detail.new_node_ids)
