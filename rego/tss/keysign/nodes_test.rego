package tss.keysign_test

# Tests of keysign/nodes.rego; each asserts only the codes of its own rules.

signing_with(detail_patch) := object.union(req({}), {"detail": detail_patch})

# The node-list denies (both codes), as {code: {msg}}.
node_denies := {code: msgs |
	some code in {"keysign.duplicate_node_id", "keysign.node_ids_malformed"}
	msgs := {d.msg | some d in data.tss.keysign.deny; d.code == code}
}

test_distinct_used_node_ids_pass if {
	r := node_denies with input as signing_with({"used_node_ids": ["coboA", "coboB"]}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	r == {"keysign.duplicate_node_id": set(), "keysign.node_ids_malformed": set()}
}

test_a_repeated_used_node_id_denies if {
	r := node_denies with input as signing_with({"used_node_ids": ["coboA", "coboA"]}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	r["keysign.duplicate_node_id"] == {"node id `coboA` is listed 2 times in request_detail.used_node_ids"}
	r["keysign.node_ids_malformed"] == set()
}

test_three_copies_among_others if {
	r := node_denies with input as signing_with({"used_node_ids": ["coboB", "coboA", "coboB", "coboC", "coboB"]}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	r["keysign.duplicate_node_id"] == {"node id `coboB` is listed 3 times in request_detail.used_node_ids"}
}

test_malformed_used_node_ids_deny if {
	r := node_denies with input as signing_with({"used_node_ids": ["coboA", false]}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	r["keysign.node_ids_malformed"] == {"request_detail.used_node_ids entry #1 is `false`, not a node id"}
	s := node_denies with input as signing_with({"used_node_ids": null}) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	s["keysign.node_ids_malformed"] == {"request_detail.used_node_ids is `null`, not an array of node ids"}
	s["keysign.duplicate_node_id"] == set()
}

test_absent_used_node_ids_denies if {
	r := node_denies with input as json.remove(req({}), ["detail/used_node_ids"]) with data.keysign as td with data.integrity as no_integrity with data.embedded_risk_control_rules as erc_cfg with data.freeze as no_freeze
	r["keysign.node_ids_malformed"] == {"request_detail.used_node_ids is `<missing>`, not an array of node ids"}
}
