# Message formatting shared by every package. Values in deny messages are
# rendered with `show`, so OPA and regorus print them identically (no
# reliance on either engine's `%v` rendering of composite values).
package tss.lib.fmt

# show renders a request or data VALUE for a human, so that its JSON type is
# never in doubt: the number 2 is `2`, the string "2" is `"2"`, null is
# `null` and the string "null" is `"null"`, the boolean false is `false`
# and the string "false" is `"false"`.
#
# A string is shown bare (`ETH`, `Address`, a wallet id) only when its text
# cannot be read as anything else: it is not itself JSON (so not a number,
# true, false, null, or quoted or bracketed text), it is not empty, has no
# leading, trailing or doubled spaces, and holds only printable ASCII other
# than `"`, backtick, backslash, `<` and `>` (which could fake the message's
# quoting or the `<missing>` marker). Every other value is its JSON text.
#
# For free text that is not a value (an error message), use `text`.
show(x) := x if bare(x)
else := json_text(x)

bare(x) if {
	is_string(x)
	regex.match(bare_pattern, x)
	not json.is_valid(x)
}

# Words of printable ASCII except " ` \ < > (and space), single spaces between.
bare_pattern := `^[!#-;=?-\[\]-_a-~]+( [!#-;=?-\[\]-_a-~]+)*$`

# json_text is json.marshal, with the escapes Go's encoder adds (and serde's
# does not) undone, so that OPA and regorus print the same text.
json_text(x) := strings.replace_n(go_escapes, json.marshal(x))

go_escapes := {
	`\u003c`: "<",
	`\u003e`: ">",
	`\u0026`: "&",
	`\u2028`: "\u2028",
	`\u2029`: "\u2029",
}

# text renders free text (an error message computed by tss-gate, which may
# quote values with backticks itself) as-is; a non-string is its JSON text.
text(x) := x if is_string(x)
else := json_text(x)

# list renders an array or set of values with `show` as `a, b, c` (sorted,
# so the message does not depend on the request's ordering).
list(xs) := concat(", ", sort([show(x) | some x in xs]))

# field is `obj[key]` rendered with show, or `<missing>` when absent or
# when `obj` is not an object. (A string "<missing>" is shown quoted.)
field(obj, key) := show(obj[key]) if is_object(obj)

field(obj, key) := "<missing>" if {
	is_object(obj)
	not key in object.keys(obj)
}

field(obj, _) := "<missing>" if not is_object(obj)
