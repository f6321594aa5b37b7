package tss.keyreshare_test

# Tests of keyreshare/nodes.rego; each asserts only the codes of its own rules.

# keyreshare_test.rego's request (the approving fixture's) with these node
# lists.
reshare_with(new, used) := object.union(req("xpubROOT", 2, new), {"detail": {"used_node_ids": used}})

# The node-list denies (both codes), as {code: {msg}}.
node_denies := {code: msgs |
	some code in {"keyreshare.duplicate_node_id", "keyreshare.node_ids_malformed"}
	msgs := {d.msg | some d in data.tss.keyreshare.deny; d.code == code}
}

test_distinct_node_lists_pass if {
	r := node_denies with input as reshare_with(["coboD", "coboA", "coboC"], ["coboA", "coboB"]) with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	r == {"keyreshare.duplicate_node_id": set(), "keyreshare.node_ids_malformed": set()}
}

test_a_repeated_new_node_id_denies_although_the_set_matches if {
	r := node_denies with input as reshare_with(["coboA", "coboD", "coboA", "coboC"], ["coboA", "coboB"]) with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	r["keyreshare.duplicate_node_id"] == {"node id `coboA` is listed 2 times in request_detail.new_node_ids"}
	r["keyreshare.node_ids_malformed"] == set()
}

test_a_repeated_used_node_id_denies if {
	r := node_denies with input as reshare_with(["coboA", "coboC", "coboD"], ["coboB", "coboB", "coboB"]) with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	r["keyreshare.duplicate_node_id"] == {"node id `coboB` is listed 3 times in request_detail.used_node_ids"}
}

test_both_lists_repeating_give_both_reasons if {
	r := node_denies with input as reshare_with(["coboD", "coboD"], ["coboA", "coboA"]) with data.embedded_risk_control_rules as erc_off with data.integrity as no_pins
	r["keyreshare.duplicate_node_id"] == {
		"node id `coboD` is listed 2 times in request_detail.new_node_ids",
		"node id `coboA` is listed 2 times in request_detail.used_node_ids",
	}
}

test_malformed_node_lists_deny if {
	r := node_denies with input as reshare_with(["coboA", ["coboC"], "coboD"], "coboA,coboB") with data.embedded_risk_control_rules as erc with data.integrity as no_pins
	r["keyreshare.node_ids_malformed"] == {
		"request_detail.new_node_ids entry #1 is `[\"coboC\"]`, not a node id",
		"request_detail.used_node_ids is `coboA,coboB`, not an array of node ids",
	}
	m := node_denies with input as json.remove(req("xpubROOT", 2, []), ["detail/new_node_ids", "detail/used_node_ids"]) with data.embedded_risk_control_rules as erc_off with data.integrity as no_pins
	m["keyreshare.node_ids_malformed"] == {
		"request_detail.new_node_ids is `<missing>`, not an array of node ids",
		"request_detail.used_node_ids is `<missing>`, not an array of node ids",
	}
}
