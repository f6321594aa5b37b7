# Node id lists (KEYGEN node_ids, KEYRESHARE new_node_ids / used_node_ids,
# KEYSIGN used_node_ids). The embedded allow-lists compare them as SETS, so
# `[A, A, B, C]` matches `{A, B, C}`: a repeated id, or an entry that is not
# a node id string, has to be refused by a rule of its own. These helpers
# give each type's deny rules their messages; an empty set means "fine".
package tss.lib.ids

import data.tss.lib.fmt

# fine(xs): xs is an array of non-empty strings, none repeated. The common
# case, decided in one pass: the messages below are built only when it
# fails (regorus pays a few microseconds for every function call, and these
# rules run on every KEYGEN, KEYRESHARE and KEYSIGN).
fine(xs) if {
	is_array(xs)
	count({x | some x in xs; is_string(x); x != ""}) == count(xs)
}

# At most this many repeated ids are named one by one; the rest are counted.
shown_max := 5

# repeated(xs): the values occurring more than once in array xs, sorted.
# Sorting puts equal values side by side, so this is O(n log n) on lists
# whose length the sender chooses. Undefined when xs is not an array.
repeated(xs) := sort({s[i] |
	s := sort(xs)
	some i in numbers.range(1, count(s) - 1)
	i > 0
	s[i] == s[i - 1]
}) if is_array(xs)

# repeat_msgs(field, xs): one message per repeated value (the first
# `shown_max` in sort order), with its number of copies, plus one counting
# any further ones. Empty when nothing repeats or xs is not an array.
repeat_msgs(field, xs) := msgs if {
	r := repeated(xs)
	named := {sprintf("node id `%s` is listed %d times in %s", [fmt.show(x), n, field]) |
		some x in array.slice(r, 0, shown_max)
		n := count([1 | some y in xs; y == x])
	}
	rest := {sprintf("%s repeats %d more node ids", [field, count(r) - shown_max]) | count(r) > shown_max}
	msgs := named | rest
}

repeat_msgs(_, xs) := set() if not is_array(xs)

# shape_msgs(field, obj, key): why obj[key] is not an array of node id
# strings: one message when it is missing or not an array, else one per
# entry that is not a non-empty string. Empty when it is well formed.
shape_msgs(field, obj, key) := {sprintf("%s is `%s`, not an array of node ids", [field, fmt.field(obj, key)])} if {
	not listed(obj, key)
}

shape_msgs(field, obj, key) := {sprintf("%s entry #%d is `%s`, not a node id", [field, i, fmt.show(x)]) |
	some i, x in obj[key]
	not node_id(x)
} if listed(obj, key)

listed(obj, key) if {
	is_object(obj)
	is_array(obj[key])
}

node_id(x) if {
	is_string(x)
	x != ""
}
