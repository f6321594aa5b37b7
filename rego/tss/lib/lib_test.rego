# Tests for the shared helpers: exact decimal arithmetic and formatting.
package tss.lib_test

import data.tss.lib.decimal
import data.tss.lib.erc
import data.tss.lib.fmt

test_valid_decimals if {
	decimal.valid("0")
	decimal.valid("1.5")
	decimal.valid("0007.50")
	not decimal.valid("")
	not decimal.valid("1e5")
	not decimal.valid("-1")
	not decimal.valid("1.")
	not decimal.valid(".5")
	not decimal.valid(" 1")
	not decimal.valid("1,000")
	not decimal.valid(10)
}

test_at_most_by_integer_length if {
	decimal.at_most("999", "1000")
	not decimal.at_most("1000", "999")
	decimal.at_most("0009", "10")
}

test_at_most_same_length_lexicographic if {
	decimal.at_most("1234", "1235")
	not decimal.at_most("1235", "1234")
}

test_at_most_fractions if {
	decimal.at_most("1.5", "1.50")
	decimal.at_most("1.45", "1.5")
	not decimal.at_most("1.5", "1.45")
	decimal.at_most("10000", "10000.000")
	not decimal.at_most("10000.0000001", "10000")
	decimal.at_most("0.0", "0")
}

# Values where float64 comparison would be wrong.
test_at_most_beyond_2_pow_53 if {
	not decimal.at_most("9007199254740993", "9007199254740992")
	decimal.at_most("9007199254740992", "9007199254740993")
	not decimal.at_most("1000000.000000000000000001", "1000000")
	not decimal.at_most("115792089237316195423570985008687907853269984665640564039457584007913129639936", "115792089237316195423570985008687907853269984665640564039457584007913129639935")
}

# Keys have no width limit: digit counts order first, then digits.
test_at_most_any_length if {
	big := concat("", ["1", concat("", [x | some _ in numbers.range(1, 120); x := "0"])])
	decimal.at_most("99", big)
	not decimal.at_most(big, "99")
	decimal.at_most(big, concat("", [big, ".000"]))
	not decimal.at_most(concat("", [big, ".01"]), big)
	decimal.key("0010.500") == [2, "10", "5"]
	decimal.key("0") == [0, "", ""]
}

test_at_most_undefined_on_malformed if {
	not decimal.at_most("1e3", "10000")
	not decimal.at_most("1", "ten")
}

test_canonical if {
	decimal.canonical("007.500") == "7.5"
	decimal.canonical("0.000") == "0"
	decimal.canonical("120") == "120"
}

test_total_simple if {
	decimal.total(["1.25", "1.25000000"]) == "2.5"
	decimal.total(["0.75"]) == "0.75"
	decimal.total(["0", "0.0"]) == "0"
}

test_total_carries_across_chunks if {
	decimal.total(["999999", "1"]) == "1000000"
	decimal.total(["999999999999.999999", "0.000001"]) == "1000000000000"
	decimal.total(["1.5", "1.00000001"]) == "2.50000001"
}

test_total_beyond_2_pow_53 if {
	decimal.total(["9007199254740992", "1"]) == "9007199254740993"
	decimal.total(["9007199254740992.000000000000000001", "0.999999999999999999"]) == "9007199254740993"
}

test_total_many_terms if {
	decimal.total([x | some _ in numbers.range(1, 1000); x := "999999.999999"]) == "999999999.999"
}

test_total_undefined_on_malformed_or_empty if {
	not decimal.total(["1", "x"])
	not decimal.total([])
}

test_ripple_without_generator if {
	decimal.ripple([1, 999999, 999999], 0) == 0
	decimal.ripple([1, 999999, 1000000], 0) == 1
	decimal.ripple([1, 999998, 1000000], 0) == 0
}

test_show_and_list if {
	fmt.show("a") == "a"
	fmt.show(2) == "2"
	fmt.show(true) == "true"
	fmt.list(["b", "a", 3]) == "3, a, b"
}

# A reader must never mistake one JSON type for another.
test_show_makes_the_type_plain if {
	fmt.show(2) == "2"
	fmt.show("2") == `"2"`
	fmt.show(1.5) == "1.5"
	fmt.show("1.5") == `"1.5"`
	fmt.show("1e5") == `"1e5"`
	fmt.show(null) == "null"
	fmt.show("null") == `"null"`
	fmt.show(false) == "false"
	fmt.show("false") == `"false"`
	fmt.show("true") == `"true"`
	fmt.show([1]) == "[1]"
	fmt.show("[1]") == `"[1]"`
	fmt.show({"a": "1"}) == `{"a":"1"}`
	fmt.show(`"quoted"`) == `"\"quoted\""`
}

test_show_keeps_names_bare if {
	fmt.show("ETH") == "ETH"
	fmt.show("ETH_USDT") == "ETH_USDT"
	fmt.show("0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045") == "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"
	fmt.show("5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40") == "5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40"
	fmt.show("m/44/60/0/0/0") == "m/44/60/0/0/0"
	fmt.show("Ops hot wallet") == "Ops hot wallet"
	fmt.show("1,000") == "1,000"
	fmt.show("not-hex") == "not-hex"
}

# Text that could fake a message's quoting, the `<missing>` marker, or hide
# in whitespace is quoted (and JSON-escaped).
test_show_quotes_what_could_mislead if {
	fmt.show("") == `""`
	fmt.show(" ETH") == `" ETH"`
	fmt.show("ETH ") == `"ETH "`
	fmt.show("a  b") == `"a  b"`
	fmt.show("ETH\n") == `"ETH\n"`
	fmt.show("<missing>") == `"<missing>"`
	fmt.show("x` is allowed; token `ETH") == "\"x` is allowed; token `ETH\""
	fmt.show("ETH\u200b") == "\"ETH\u200b\""
	fmt.show("é") == `"é"`
	fmt.show(`a\b`) == `"a\\b"`
	fmt.field({"token_id": "<missing>"}, "token_id") != fmt.field({}, "token_id")
}

# Both engines print the same JSON text (Go's encoder escapes these, serde's
# does not).
test_show_undoes_go_html_escapes if {
	fmt.show("a<b>&c") == `"a<b>&c"`
	fmt.show(["<"]) == `["<"]`
}

test_text_is_free_text if {
	fmt.text("cannot decode `x`: bad hex") == "cannot decode `x`: bad hex"
	fmt.text(2) == "2"
	fmt.text({"a": 1}) == `{"a":1}`
}

test_field if {
	fmt.field({"a": 1}, "a") == "1"
	fmt.field({"a": "1"}, "a") == `"1"`
	fmt.field({"a": 1}, "b") == "<missing>"
	fmt.field("not an object", "a") == "<missing>"
}

test_same_nodes_compares_sets if {
	erc.same_nodes(["a", "b"], ["b", "a"])
	erc.same_nodes(["a", "b", "a"], ["b", "a"])
	not erc.same_nodes(["a", "b"], ["a", "c"])
	not erc.same_nodes([], [])
	not erc.same_nodes("a", ["a"])
	not erc.same_nodes([1], [1])
}

test_erc_missing_config_fails_closed if {
	not erc.disabled with data.embedded_risk_control_rules as {}
	not erc.permits("key_gen") with data.embedded_risk_control_rules as {}
	erc.reject_all_text("key_gen") == "<missing>" with data.embedded_risk_control_rules as {}
	not erc.permits("key_gen") with data.embedded_risk_control_rules as {"key_gen": {"reject_all": "false"}}
	erc.reject_all_text("key_gen") == `"false"` with data.embedded_risk_control_rules as {"key_gen": {"reject_all": "false"}}
	erc.reject_all_text("key_gen") == "false" with data.embedded_risk_control_rules as {"key_gen": {"reject_all": false}}
	erc.disabled with data.embedded_risk_control_rules as {"enable": false}
	not erc.disabled with data.embedded_risk_control_rules as {"enable": "false"}
}
