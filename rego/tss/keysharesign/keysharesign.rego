# KEYSHARESIGN: a key share holder signing with its key share (e.g. to prove
# possession). Uses the TSS Node's embedded rule
# `embedded_risk_control_rules.key_share_sign`, which has only reject_all.
package tss.keysharesign

import data.tss.lib.erc

allow if erc.disabled

allow if {
	not erc.disabled
	erc.permits("key_share_sign")
}

deny contains {
	"code": "keysharesign.reject_all",
	"msg": sprintf("KEYSHARESIGN is rejected: embedded_risk_control_rules.key_share_sign.reject_all is `%s` (only an explicit false admits KEYSHARESIGN)", [erc.reject_all_text("key_share_sign")]),
} if {
	not erc.disabled
	not erc.permits("key_share_sign")
}
