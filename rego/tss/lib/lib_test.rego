# Tests for the shared helpers: exact decimal arithmetic and formatting.
package tss.lib_test

test_valid_decimals if {
	data.tss.lib.decimal.valid("0")
	data.tss.lib.decimal.valid("1.5")
	data.tss.lib.decimal.valid("0007.50")
	not data.tss.lib.decimal.valid("")
	not data.tss.lib.decimal.valid("1e5")
	not data.tss.lib.decimal.valid("-1")
	not data.tss.lib.decimal.valid("1.")
	not data.tss.lib.decimal.valid(".5")
	not data.tss.lib.decimal.valid(" 1")
	not data.tss.lib.decimal.valid("1,000")
	not data.tss.lib.decimal.valid(10)
}

test_at_most_by_integer_length if {
	data.tss.lib.decimal.at_most("999", "1000")
	not data.tss.lib.decimal.at_most("1000", "999")
	data.tss.lib.decimal.at_most("0009", "10")
}

test_at_most_same_length_lexicographic if {
	data.tss.lib.decimal.at_most("1234", "1235")
	not data.tss.lib.decimal.at_most("1235", "1234")
}

test_at_most_fractions if {
	data.tss.lib.decimal.at_most("1.5", "1.50")
	data.tss.lib.decimal.at_most("1.45", "1.5")
	not data.tss.lib.decimal.at_most("1.5", "1.45")
	data.tss.lib.decimal.at_most("10000", "10000.000")
	not data.tss.lib.decimal.at_most("10000.0000001", "10000")
	data.tss.lib.decimal.at_most("0.0", "0")
}

# Values where float64 comparison would be wrong.
test_at_most_beyond_2_pow_53 if {
	not data.tss.lib.decimal.at_most("9007199254740993", "9007199254740992")
	data.tss.lib.decimal.at_most("9007199254740992", "9007199254740993")
	not data.tss.lib.decimal.at_most("1000000.000000000000000001", "1000000")
	not data.tss.lib.decimal.at_most("115792089237316195423570985008687907853269984665640564039457584007913129639936", "115792089237316195423570985008687907853269984665640564039457584007913129639935")
}

# Keys have no width limit: digit counts order first, then digits.
test_at_most_any_length if {
	big := concat("", ["1", concat("", [x | some _ in numbers.range(1, 120); x := "0"])])
	data.tss.lib.decimal.at_most("99", big)
	not data.tss.lib.decimal.at_most(big, "99")
	data.tss.lib.decimal.at_most(big, concat("", [big, ".000"]))
	not data.tss.lib.decimal.at_most(concat("", [big, ".01"]), big)
	data.tss.lib.decimal.key("0010.500") == [2, "10", "5"]
	data.tss.lib.decimal.key("0") == [0, "", ""]
}

test_at_most_undefined_on_malformed if {
	not data.tss.lib.decimal.at_most("1e3", "10000")
	not data.tss.lib.decimal.at_most("1", "ten")
}

test_canonical if {
	data.tss.lib.decimal.canonical("007.500") == "7.5"
	data.tss.lib.decimal.canonical("0.000") == "0"
	data.tss.lib.decimal.canonical("120") == "120"
}

test_total_simple if {
	data.tss.lib.decimal.total(["1.25", "1.25000000"]) == "2.5"
	data.tss.lib.decimal.total(["0.75"]) == "0.75"
	data.tss.lib.decimal.total(["0", "0.0"]) == "0"
}

test_total_carries_across_chunks if {
	data.tss.lib.decimal.total(["999999", "1"]) == "1000000"
	data.tss.lib.decimal.total(["999999999999.999999", "0.000001"]) == "1000000000000"
	data.tss.lib.decimal.total(["1.5", "1.00000001"]) == "2.50000001"
}

test_total_beyond_2_pow_53 if {
	data.tss.lib.decimal.total(["9007199254740992", "1"]) == "9007199254740993"
	data.tss.lib.decimal.total(["9007199254740992.000000000000000001", "0.999999999999999999"]) == "9007199254740993"
}

test_total_many_terms if {
	data.tss.lib.decimal.total([x | some _ in numbers.range(1, 1000); x := "999999.999999"]) == "999999999.999"
}

test_total_undefined_on_malformed_or_empty if {
	not data.tss.lib.decimal.total(["1", "x"])
	not data.tss.lib.decimal.total([])
}

test_ripple_without_generator if {
	data.tss.lib.decimal.ripple([1, 999999, 999999], 0) == 0
	data.tss.lib.decimal.ripple([1, 999999, 1000000], 0) == 1
	data.tss.lib.decimal.ripple([1, 999998, 1000000], 0) == 0
}

test_show_and_list if {
	data.tss.lib.fmt.show("a") == "a"
	data.tss.lib.fmt.show(2) == "2"
	data.tss.lib.fmt.show(true) == "true"
	data.tss.lib.fmt.list(["b", "a", 3]) == "3, a, b"
}

# A reader must never mistake one JSON type for another.
test_show_makes_the_type_plain if {
	data.tss.lib.fmt.show(2) == "2"
	data.tss.lib.fmt.show("2") == `"2"`
	data.tss.lib.fmt.show(1.5) == "1.5"
	data.tss.lib.fmt.show("1.5") == `"1.5"`
	data.tss.lib.fmt.show("1e5") == `"1e5"`
	data.tss.lib.fmt.show(null) == "null"
	data.tss.lib.fmt.show("null") == `"null"`
	data.tss.lib.fmt.show(false) == "false"
	data.tss.lib.fmt.show("false") == `"false"`
	data.tss.lib.fmt.show("true") == `"true"`
	data.tss.lib.fmt.show([1]) == "[1]"
	data.tss.lib.fmt.show("[1]") == `"[1]"`
	data.tss.lib.fmt.show({"a": "1"}) == `{"a":"1"}`
	data.tss.lib.fmt.show(`"quoted"`) == `"\"quoted\""`
}

test_show_keeps_names_bare if {
	data.tss.lib.fmt.show("ETH") == "ETH"
	data.tss.lib.fmt.show("ETH_USDT") == "ETH_USDT"
	data.tss.lib.fmt.show("0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045") == "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"
	data.tss.lib.fmt.show("5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40") == "5b2c1f7e-8d4a-4e39-9c6b-2f1a7d3e9b40"
	data.tss.lib.fmt.show("m/44/60/0/0/0") == "m/44/60/0/0/0"
	data.tss.lib.fmt.show("Ops hot wallet") == "Ops hot wallet"
	data.tss.lib.fmt.show("1,000") == "1,000"
	data.tss.lib.fmt.show("not-hex") == "not-hex"
}

# Text that could fake a message's quoting, the `<missing>` marker, or hide
# in whitespace is quoted (and JSON-escaped).
test_show_quotes_what_could_mislead if {
	data.tss.lib.fmt.show("") == `""`
	data.tss.lib.fmt.show(" ETH") == `" ETH"`
	data.tss.lib.fmt.show("ETH ") == `"ETH "`
	data.tss.lib.fmt.show("a  b") == `"a  b"`
	data.tss.lib.fmt.show("ETH\n") == `"ETH\n"`
	data.tss.lib.fmt.show("<missing>") == `"<missing>"`
	data.tss.lib.fmt.show("x` is allowed; token `ETH") == "\"x` is allowed; token `ETH\""
	data.tss.lib.fmt.show("ETH\u200b") == "\"ETH\u200b\""
	data.tss.lib.fmt.show("é") == `"é"`
	data.tss.lib.fmt.show(`a\b`) == `"a\\b"`
	data.tss.lib.fmt.field({"token_id": "<missing>"}, "token_id") != data.tss.lib.fmt.field({}, "token_id")
}

# Both engines print the same JSON text (Go's encoder escapes these, serde's
# does not).
test_show_undoes_go_html_escapes if {
	data.tss.lib.fmt.show("a<b>&c") == `"a<b>&c"`
	data.tss.lib.fmt.show(["<"]) == `["<"]`
}

test_text_is_free_text if {
	data.tss.lib.fmt.text("cannot decode `x`: bad hex") == "cannot decode `x`: bad hex"
	data.tss.lib.fmt.text(2) == "2"
	data.tss.lib.fmt.text({"a": 1}) == `{"a":1}`
}

test_field if {
	data.tss.lib.fmt.field({"a": 1}, "a") == "1"
	data.tss.lib.fmt.field({"a": "1"}, "a") == `"1"`
	data.tss.lib.fmt.field({"a": 1}, "b") == "<missing>"
	data.tss.lib.fmt.field("not an object", "a") == "<missing>"
}

test_same_nodes_compares_sets if {
	data.tss.lib.erc.same_nodes(["a", "b"], ["b", "a"])
	data.tss.lib.erc.same_nodes(["a", "b", "a"], ["b", "a"])
	not data.tss.lib.erc.same_nodes(["a", "b"], ["a", "c"])
	not data.tss.lib.erc.same_nodes([], [])
	not data.tss.lib.erc.same_nodes("a", ["a"])
	not data.tss.lib.erc.same_nodes([1], [1])
}

test_erc_missing_config_fails_closed if {
	not data.tss.lib.erc.disabled with data.embedded_risk_control_rules as {}
	not data.tss.lib.erc.permits("key_gen") with data.embedded_risk_control_rules as {}
	data.tss.lib.erc.reject_all_text("key_gen") == "<missing>" with data.embedded_risk_control_rules as {}
	not data.tss.lib.erc.permits("key_gen") with data.embedded_risk_control_rules as {"key_gen": {"reject_all": "false"}}
	data.tss.lib.erc.reject_all_text("key_gen") == `"false"` with data.embedded_risk_control_rules as {"key_gen": {"reject_all": "false"}}
	data.tss.lib.erc.reject_all_text("key_gen") == "false" with data.embedded_risk_control_rules as {"key_gen": {"reject_all": false}}
	data.tss.lib.erc.disabled with data.embedded_risk_control_rules as {"enable": false}
	not data.tss.lib.erc.disabled with data.embedded_risk_control_rules as {"enable": "false"}
}
