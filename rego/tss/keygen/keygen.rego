# KEYGEN: creating a new key share group. Uses the TSS Node's own embedded
# rule `embedded_risk_control_rules.key_gen`: the request's threshold and
# node id set must match an allow_list entry (node ids compared as sets).
package tss.keygen

import data.tss.lib.erc
import data.tss.lib.fmt

allow if erc.disabled

allow if {
	not erc.disabled
	erc.permits("key_gen")
	matched
}

matched if {
	some entry in erc.allow_list("key_gen")
	entry.threshold == input.detail.threshold
	erc.same_nodes(input.detail.node_ids, entry.node_ids)
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
	not erc.disabled
	erc.permits("key_gen")
	not matched
}

node_ids_text := fmt.list(input.detail.node_ids) if is_array(input.detail.node_ids)

node_ids_text := "<missing>" if not node_ids_listed

node_ids_listed if is_array(input.detail.node_ids)
