# KEYSIGN controls an operator sets in data rather than business rules:
#
# - the policy's freeze, data.freeze.keysign: while it is true every KEYSIGN
#   is denied, whatever it moves (a data edit, applied on the next reload;
#   the reload gate accepts it, since a freeze only adds REJECTs). The
#   emergency stop that needs no reload is `tss-gate freeze on`, outside
#   the policy (README, "Operating it");
# - the destination cool-down, data.keysign.destination_cooldown: an
#   allowed_destinations entry written as {added_at: "<RFC 3339>"} may
#   receive funds only once the cool-down has passed since added_at, so a
#   mistaken or planted listing cannot be paid before the change has been
#   visible for that long. `true` entries never cool down.
#
# Both fail closed: a switch that is not a boolean freezes, and an object
# entry whose added_at cannot be read, or a cool-down that cannot be read,
# keeps the destination unusable.
package tss.keysign

import data.tss.lib.fmt

# --- freeze ----------------------------------------------------------------------

# `data.freeze` absent: not frozen. Every test binds the value first
# (`x := data.freeze.keysign`), so an absent key never reaches a negation
# (see "Fail closed" in rego/README.md).
deny contains {
	"code": "keysign.frozen",
	"msg": freeze_msg,
} if data.freeze.keysign == true

freeze_msg := sprintf("every KEYSIGN is frozen: data.freeze.keysign is true (reason: %s)", [fmt.text(data.freeze.reason)]) if {
	is_string(data.freeze.reason)
} else := "every KEYSIGN is frozen: data.freeze.keysign is true"

deny contains {
	"code": "keysign.frozen",
	"msg": sprintf("data.freeze.keysign is `%s`, not true or false: every KEYSIGN is frozen until the switch is a boolean (malformed switch, fail closed)", [fmt.show(x)]),
} if {
	x := data.freeze.keysign
	not is_boolean(x)
}

deny contains {
	"code": "keysign.frozen",
	"msg": sprintf("data.freeze is `%s`, not an object such as {keysign: false}: every KEYSIGN is frozen until it is fixed or removed (malformed switch, fail closed)", [fmt.show(x)]),
} if {
	x := data.freeze
	not is_object(x)
}

# --- destination cool-down ------------------------------------------------------

# cooling_entries: [address as sent, its allow-list entry] for every output
# whose entry on this chain is an object (the cool-down form). Addresses
# that are not listed at all are destination.rego's business.
cooling_entries contains [a, e] if {
	some o in outputs
	a := o.address
	valid_address(a)
	e := data.keysign.allowed_destinations[chain][address(a)]
	is_object(e)
}

deny contains {
	"code": "keysign.destination_entry_malformed",
	"msg": sprintf("destination address `%s` on chain `%s` is listed with added_at `%s`, which is not an RFC 3339 time such as 2025-06-02T09:00:00Z: it cannot be used until the entry is fixed", [fmt.show(a), chain_text, fmt.field(e, "added_at")]),
} if {
	some [a, e] in cooling_entries
	not added_at_valid(e)
}

# A rule on the entry, not `not rfc3339(e.added_at)`: OPA would evaluate a
# missing added_at before the negation and never fire.
added_at_valid(e) if rfc3339(e.added_at)

deny contains {
	"code": "keysign.destination_cooldown_malformed",
	"msg": sprintf("data.keysign.destination_cooldown is `%s`, not a duration such as 24h (<n>s, <n>m, <n>h or <n>d): destination `%s` on chain `%s` listed with added_at cannot be used until it is fixed", [fmt.show(c), fmt.show(a), chain_text]),
} if {
	c := data.keysign.destination_cooldown
	not duration_valid(c)
	some [a, _] in cooling_entries
}

# cooldown_ns: undefined when no cool-down is configured (or it is
# malformed, which the rule above reports).
cooldown_ns := duration_ns(data.keysign.destination_cooldown)

# The decision time: input.decided_at_ms, set by tss-gate for every
# request. input.received_at_ms (a few ms earlier, so the cool-down can
# only look longer) stands in for inputs built without it.
decision_ms := input.decided_at_ms if is_number(input.decided_at_ms)
else := input.received_at_ms if is_number(input.received_at_ms)

decision_time_known if is_number(decision_ms)

deny contains {
	"code": "keysign.destination_cooling_down",
	"msg": sprintf("destination address `%s` on chain `%s` was added at %s and is in its %s cool-down: usable from %s", [fmt.show(a), chain_text, e.added_at, data.keysign.destination_cooldown, time.format(usable_s * 1000000000)]),
} if {
	some [a, e] in cooling_entries
	added_at_valid(e)
	usable_ns := time.parse_rfc3339_ns(e.added_at) + cooldown_ns
	decision_ms * 1000000 < usable_ns

	# Whole seconds, rounded up: both engines print them alike (fractions
	# differ) and "usable from" is never early.
	usable_s := ceil_div(usable_ns, 1000000000)
}

deny contains {
	"code": "keysign.destination_cooling_down",
	"msg": sprintf("destination address `%s` on chain `%s` was added at %s and has a %s cool-down, but the input carries no decision time (decided_at_ms) to tell whether it is over", [fmt.show(a), chain_text, e.added_at, data.keysign.destination_cooldown]),
} if {
	some [a, e] in cooling_entries
	added_at_valid(e)
	cooldown_ns
	not decision_time_known
}

# ceil_div(n, d): n / d rounded up, for integers n >= 0, d > 0, in integer
# arithmetic (a float would lose the nanoseconds).
ceil_div(n, d) := q + 1 if {
	r := n % d
	r > 0
	q := (n - r) / d
}

ceil_div(n, d) := n / d if n % d == 0

# --- durations and times --------------------------------------------------------

# A duration: a count (no leading zeros, at most 4 digits, so nanoseconds
# stay far inside int64) and a unit. time.parse_duration_ns does not know
# days, so it is parsed here.
duration_pattern := `^(0|[1-9][0-9]{0,3})[smhd]$`

duration_unit_ns := {"s": 1000000000, "m": 60000000000, "h": 3600000000000, "d": 86400000000000}

duration_valid(s) if {
	is_string(s)
	regex.match(duration_pattern, s)
}

duration_ns(s) := to_number(substring(s, 0, n)) * duration_unit_ns[substring(s, n, 1)] if {
	duration_valid(s)
	n := count(s) - 1
}

# rfc3339(s): s is a time time.parse_rfc3339_ns accepts, in OPA and
# regorus alike. Checked before parsing because tss-gate treats a builtin
# error as an evaluation error, not as a denial with a reason. Years are
# 1970..2199 (nanoseconds fit int64), the day must exist in its month,
# `T` and `Z` are upper-case, seconds are 00..59 and fractions have at
# most 9 digits.
rfc3339_pattern := `^(19[7-9][0-9]|2[01][0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`

rfc3339(s) if {
	is_string(s)
	regex.match(rfc3339_pattern, s)
	day_exists(to_number(substring(s, 0, 4)), digits2(substring(s, 5, 2)), digits2(substring(s, 8, 2)))
}

# digits2: "07" -> 7 (regorus' to_number rejects leading zeros).
digits2(t) := to_number(trim_left(t, "0"))

month_days := [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

day_exists(_, m, d) if d <= month_days[m - 1]

day_exists(y, 2, 29) if leap_year(y)

leap_year(y) if {
	y % 4 == 0
	y % 100 != 0
}

leap_year(y) if y % 400 == 0
