# KEYSIGN spending limits over time (velocity). The limits are declared in
# data.velocity.limits, but Rego does not count: tss-gate keeps the ledger
# of approved requests, finds the limits a request matches, and before
# evaluation puts one fact per (limit, group) in input.velocity:
#
#   input.velocity = {<limit id>: [<group fact>, ...]}
#
# (fields in rego/README.md, "Spending limits (velocity)"). The server
# computes the sums and the `exceeded` flags exactly, in decimal; these
# rules turn them into denials.
#
# Trust: input.velocity is written by tss-gate only. What the request says
# lives under input.detail and input.extra, so a request cannot add, remove
# or soften a fact, and nothing here reads a limit or a usage from the
# request. The facts are taken as given: the server computes the sums and
# the flags exactly (in decimal, in Rust), and these rules read the flags.
# One guard against a server bug reading as "within the limit": a fact of
# the wrong shape (not an object, a flag that is not a boolean, filed under
# another limit's id) denies, as velocity_fact_malformed. The checks stay
# this few on purpose: they run on every KEYSIGN a limit matches, and
# re-deriving the server's exact arithmetic in Rego cost more than half of
# a decision's evaluation time (BENCHMARKS.md, "Spending limits").
# Whether a limit matches the request at all is the server's decision: a
# request no limit matches has no input.velocity, and nothing is checked.
package tss.keysign

import data.tss.lib.decimal
import data.tss.lib.fmt

# velocity_doc: input.velocity when it is an object ({} when absent; any
# other value is reported below).
velocity_doc := input.velocity if is_object(input.velocity)
else := {}

# velocity_facts: [limit id, index, fact] for every fact of every list.
velocity_facts contains [id, i, f] if {
	some id, fs in velocity_doc
	is_array(fs)
	some i, f in fs
}

# velocity_suspects: the facts that are not plainly within their limit.
# The shipped denials below only look at these: a fact that is an object
# filed under its own limit, with all three flags false, no error, and an
# amount whenever the limit has a max_amount, can fire none of them. Most
# requests are within every limit, and this one pass is then all the
# velocity rules cost (each helper call in the rules below is slow to
# interpret; BENCHMARKS.md, "Spending limits").
velocity_suspects contains [id, i, f] if {
	some [id, i, f] in velocity_facts
	not velocity_plainly_within(id, f)
}

velocity_plainly_within(id, f) if {
	is_object(f)
	f.limit == id
	f.exceeded == false
	f.amount_exceeded == false
	f.count_exceeded == false
	object.get(f, "error", null) == null
	velocity_amount_known(f)
}

velocity_amount_known(f) if object.get(f, "max_amount", null) == null

velocity_amount_known(f) if object.get(f, "amount", null) != null

# One guard for every velocity denial: velocity_ok holds when input.velocity
# is an object of non-empty fact lists whose facts are all plainly within
# their limits. Only when it fails are the denials below evaluated, the
# shape denials included. In regorus each rule costs its evaluation even
# when it finds nothing, and nearly every request is within all of its
# limits: this one rule halves what the velocity rules cost such a request
# (BENCHMARKS.md, "Eighth session"). A present input.velocity of any value
# (false and null included) that is not ok reaches the denials.
deny contains d if {
	_ = input.velocity
	not velocity_ok
	some d in velocity_denials
}

velocity_ok if {
	is_object(input.velocity)
	every id, fs in input.velocity {
		velocity_fact_list(fs)
		every f in fs {
			velocity_plainly_within(id, f)
		}
	}
}

# --- exceeded -----------------------------------------------------------------------

# Each fact gets one reason per thing it proves: the amount maximum passed,
# the count maximum passed, the amount unknown, the group unknown. A fact
# flagged `exceeded` that proves none of them still denies (the flag is
# what the server computed exactly).

velocity_denials contains {
	"code": "keysign.velocity_exceeded",
	"msg": sprintf("spending limit `%s` (%s): %s used in the last %s + %s now exceeds the maximum %s", [
		fmt.show(id),
		fmt.field(f, "group_key"),
		velocity_amount_text(f, "used_amount"),
		fmt.field(f, "window"),
		velocity_amount_text(f, "amount"),
		velocity_amount_text(f, "max_amount"),
	]),
} if {
	some [id, _, f] in velocity_suspects
	velocity_amount_reason(f)
}

velocity_denials contains {
	"code": "keysign.velocity_exceeded",
	"msg": sprintf("spending limit `%s` (%s): %s requests in the last %s exceed the maximum %s", [
		fmt.show(id),
		fmt.field(f, "group_key"),
		fmt.field(f, "total_count"),
		fmt.field(f, "window"),
		fmt.field(f, "max_count"),
	]),
} if {
	some [id, _, f] in velocity_suspects
	velocity_count_reason(f)
}

velocity_denials contains {
	"code": "keysign.velocity_exceeded",
	"msg": sprintf("spending limit `%s` (%s) is exceeded in the last %s (used amount %s, used count %s; max_amount %s, max_count %s)", [
		fmt.show(id),
		fmt.field(f, "group_key"),
		fmt.field(f, "window"),
		velocity_amount_text(f, "used_amount"),
		fmt.field(f, "used_count"),
		velocity_amount_text(f, "max_amount"),
		fmt.field(f, "max_count"),
	]),
} if {
	some [id, _, f] in velocity_suspects
	f.exceeded == true
	not velocity_reasoned(f)
}

velocity_reasoned(f) if velocity_amount_reason(f)

velocity_reasoned(f) if velocity_count_reason(f)

velocity_reasoned(f) if velocity_amount_unknown(f)

velocity_reasoned(f) if velocity_group_error(f)

# The server's flags (reaching the maximum exactly is allowed). An unknown
# amount is flagged too; it has its own reason.
velocity_amount_over(f) if f.amount_exceeded == true

velocity_amount_reason(f) if {
	velocity_amount_over(f)
	not velocity_amount_unknown(f)
	not velocity_group_error(f)
}

velocity_count_over(f) if f.count_exceeded == true

velocity_count_reason(f) if {
	velocity_count_over(f)
	not velocity_group_error(f)
}

# An amount as the server wrote it when it is a decimal string (bare, like
# every amount in this library's messages); anything else with its JSON type.
velocity_amount_text(f, k) := f[k] if decimal.valid(f[k])
else := fmt.field(f, k)

# --- amount or group unknown --------------------------------------------------------------

# A max_amount limit for which the server could not read this request's
# amount (malformed or missing amounts): what it moves cannot be held
# against the maximum, so it is denied.
velocity_denials contains {
	"code": "keysign.velocity_amount_unknown",
	"msg": sprintf("spending limit `%s` (%s): the amount of this request cannot be read, so the maximum %s in the last %s cannot be checked", [
		fmt.show(id),
		fmt.field(f, "group_key"),
		velocity_amount_text(f, "max_amount"),
		fmt.field(f, "window"),
	]),
} if {
	some [id, _, f] in velocity_suspects
	velocity_amount_unknown(f)
}

velocity_amount_unknown(f) if {
	is_object(f)
	f.max_amount != null
	object.get(f, "amount", null) == null
	not velocity_group_error(f)
}

# The server could not tell which group the request belongs to (it names
# no wallet, a destination output has no address, ...): it sets `error`,
# and the request cannot be counted against the limit.
velocity_denials contains {
	"code": "keysign.velocity_group_unknown",
	"msg": sprintf("spending limit `%s`: %s, so this request cannot be counted against it", [fmt.show(id), fmt.text(f.error)]),
} if {
	some [id, _, f] in velocity_suspects
	velocity_group_error(f)
}

velocity_group_error(f) if {
	is_object(f)
	f.error != null
}

# --- shape (fail closed) --------------------------------------------------------------

velocity_denials contains {
	"code": "keysign.velocity_fact_malformed",
	"msg": sprintf("input.velocity is `%s`, not an object of velocity facts: no spending limit can be checked (fail closed)", [fmt.show(v)]),
} if {
	v := input.velocity
	not is_object(v)
}

# A limit the server matched must come with at least one group.
velocity_denials contains {
	"code": "keysign.velocity_fact_malformed",
	"msg": sprintf("input.velocity of limit `%s` is `%s`, not a non-empty list of facts: the limit cannot be checked (fail closed)", [fmt.show(id), fmt.show(fs)]),
} if {
	some id, fs in velocity_doc
	not velocity_fact_list(fs)
}

velocity_fact_list(fs) if {
	is_array(fs)
	count(fs) > 0
}

velocity_denials contains {
	"code": "keysign.velocity_fact_malformed",
	"msg": sprintf("velocity fact #%d of limit `%s` %s: the limit cannot be checked (fail closed)", [i, fmt.show(id), problem]),
} if some [id, i, problem] in velocity_fact_problems

# velocity_fact_problems: [limit id, index, what is wrong] for every fact
# that a decision above could misread. Each check negates a helper rule
# over the fact (never `not g(f.field)`, which OPA leaves undefined when
# the field is missing).
velocity_fact_problems contains [id, i, sprintf("is `%s`, not an object", [fmt.show(f)])] if {
	some [id, i, f] in velocity_suspects
	not is_object(f)
}

velocity_fact_problems contains [id, i, sprintf("names limit `%s`", [fmt.field(f, "limit")])] if {
	some [id, i, f] in velocity_suspects
	is_object(f)
	not velocity_fact_names(f, id)
}

velocity_fact_problems contains [id, i, sprintf("has %s `%s`, not a boolean", [k, fmt.field(f, k)])] if {
	some [id, i, f] in velocity_suspects
	is_object(f)
	some k in ["exceeded", "amount_exceeded", "count_exceeded"]
	not velocity_flag(f, k)
}

velocity_flag(f, k) if is_boolean(f[k])

velocity_fact_names(f, id) if f.limit == id
