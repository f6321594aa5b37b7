package tss.keygen_test

# Tests of keygen/nodes.rego; each asserts only the codes of its own rules.

# keygen_test.rego's request (the approving fixture's) with this node list.
keygen_with(nodes) := req(2, nodes)

# The embedded checks off, the rest of the test data's block kept.
erc_off := object.union(erc, {"enable": false})

# The node-list denies (both codes), as {code: {msg}}.
node_denies := {code: msgs |
	some code in {"keygen.duplicate_node_id", "keygen.node_ids_malformed"}
	msgs := {d.msg | some d in data.tss.keygen.deny; d.code == code}
}

test_distinct_node_ids_pass if {
	r := node_denies with input as keygen_with(["coboC", "coboA", "coboB"]) with data.embedded_risk_control_rules as erc
	r == {"keygen.duplicate_node_id": set(), "keygen.node_ids_malformed": set()}
}

test_a_repeated_node_id_denies_although_the_set_matches if {
	r := node_denies with input as keygen_with(["coboA", "coboA", "coboB", "coboC"]) with data.embedded_risk_control_rules as erc
	r["keygen.duplicate_node_id"] == {"node id `coboA` is listed 2 times in request_detail.node_ids"}
	r["keygen.node_ids_malformed"] == set()
}

test_a_repeat_that_is_not_adjacent_denies if {
	r := node_denies with input as keygen_with(["coboA", "coboB", "coboA"]) with data.embedded_risk_control_rules as erc
	r["keygen.duplicate_node_id"] == {"node id `coboA` is listed 2 times in request_detail.node_ids"}
}

test_three_copies_and_two_repeated_ids if {
	r := node_denies with input as keygen_with(["coboB", "coboA", "coboB", "coboA", "coboA", "coboC"]) with data.embedded_risk_control_rules as erc
	r["keygen.duplicate_node_id"] == {
		"node id `coboA` is listed 3 times in request_detail.node_ids",
		"node id `coboB` is listed 2 times in request_detail.node_ids",
	}
}

test_many_repeated_ids_are_counted_past_five if {
	xs := [x | some i in numbers.range(1, 7); some _ in [1, 2]; x := sprintf("n%d", [i])]
	r := node_denies with input as keygen_with(xs) with data.embedded_risk_control_rules as erc
	count(r["keygen.duplicate_node_id"]) == 6
	"request_detail.node_ids repeats 2 more node ids" in r["keygen.duplicate_node_id"]
	"node id `n1` is listed 2 times in request_detail.node_ids" in r["keygen.duplicate_node_id"]
}

test_repeats_deny_even_with_embedded_checks_off if {
	r := node_denies with input as keygen_with(["coboA", "coboA"]) with data.embedded_risk_control_rules as erc_off
	r["keygen.duplicate_node_id"] == {"node id `coboA` is listed 2 times in request_detail.node_ids"}
}

test_non_string_entries_deny if {
	r := node_denies with input as keygen_with(["coboA", 7, null, "", "coboB"]) with data.embedded_risk_control_rules as erc
	r["keygen.node_ids_malformed"] == {
		"request_detail.node_ids entry #1 is `7`, not a node id",
		"request_detail.node_ids entry #2 is `null`, not a node id",
		"request_detail.node_ids entry #3 is `\"\"`, not a node id",
	}
}

test_a_repeated_number_is_shown_as_a_number if {
	r := node_denies with input as keygen_with([7, "7", 7]) with data.embedded_risk_control_rules as erc
	r["keygen.duplicate_node_id"] == {"node id `7` is listed 2 times in request_detail.node_ids"}
	r["keygen.node_ids_malformed"] == {
		"request_detail.node_ids entry #0 is `7`, not a node id",
		"request_detail.node_ids entry #2 is `7`, not a node id",
	}
	s := node_denies with input as keygen_with(["7", "7"]) with data.embedded_risk_control_rules as erc
	s["keygen.duplicate_node_id"] == {"node id `\"7\"` is listed 2 times in request_detail.node_ids"}
}

test_missing_or_non_array_node_ids_deny if {
	r1 := node_denies with input as json.remove(keygen_with([]), ["detail/node_ids"]) with data.embedded_risk_control_rules as erc_off
	r1["keygen.node_ids_malformed"] == {"request_detail.node_ids is `<missing>`, not an array of node ids"}
	r2 := node_denies with input as keygen_with("coboA") with data.embedded_risk_control_rules as erc
	r2["keygen.node_ids_malformed"] == {"request_detail.node_ids is `coboA`, not an array of node ids"}
	r2["keygen.duplicate_node_id"] == set()
	r3 := node_denies with input as keygen_with({"coboA": true}) with data.embedded_risk_control_rules as erc
	r3["keygen.node_ids_malformed"] == {"request_detail.node_ids is `{\"coboA\":true}`, not an array of node ids"}
	r4 := node_denies with input as object.union(keygen_with([]), {"detail": "x"}) with data.embedded_risk_control_rules as erc
	r4["keygen.node_ids_malformed"] == {"request_detail.node_ids is `<missing>`, not an array of node ids"}
}
