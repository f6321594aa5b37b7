# Exact comparison and addition of decimal amount strings.
#
# Cobo sends amounts as decimal strings in whole token units ("1.5"); they
# can exceed 2^53, so they are never converted to numbers as a whole.
# Comparison works on the digit strings. Addition (needed to total UTXO
# outputs) converts only 6-digit chunks to numbers, which is always exact.
#
# Callers compute a comparison key once per value (a rule) and compare keys,
# rather than calling `at_most` for every comparison.
package tss.lib.decimal

pattern := `^[0-9]+(\.[0-9]+)?$`

# valid: a plain non-negative decimal string, no sign, exponent or spaces.
valid(s) if {
	is_string(s)
	regex.match(pattern, s)
}

# int_part: integer digits without leading zeros ("" for zero).
int_part(s) := trim_left(split(s, ".")[0], "0")

# frac_part: fractional digits without trailing zeros ("" for none).
frac_part(s) := trim_right(concat("", array.slice(split(s, "."), 1, 2)), "0")

# key(s): [number of integer digits, integer digits, fraction digits], with
# leading zeros of the integer part and trailing zeros of the fraction
# dropped. Rego orders arrays element by element, so keys sort like the
# numbers: more integer digits is larger; equal counts compare as digit
# strings; then the fractions, so trimmed, compare as digit strings too.
# No length limit. Undefined unless s is valid. Compute it once per amount
# (a rule): it is the whole cost of a comparison, and every builtin call
# costs regorus a few microseconds.
key(s) := [count(i), i, frac_part(s)] if {
	valid(s)
	i := int_part(s)
}

# at_most(a, b): a <= b. Undefined (never true) unless both are valid, so
# `not at_most(...)` fails closed on malformed input. (Not named `lte`: in
# OPA a package function of that name captures the `<=` operator.)
at_most(a, b) if key(a) <= key(b)

# canonical: "007.50" -> "7.5", "0.0" -> "0" (for a valid s).
canonical(s) := concat(".", array.concat([object.get({"": "0"}, i, i)], [f | f := frac_part(s); f != ""])) if {
	i := int_part(s)
}

# --- addition -----------------------------------------------------------------

chunk := 6

base := 1000000

# Most terms total() accepts: one carry pass leaves carries <= 1 only while
# the number of terms stays below base.
max_terms := base - 1

# Headroom digits so carries never leave the top chunk (< 10^12 terms).
headroom := 12

zeros(n) := concat("", ["0" | some i in numbers.range(0, n); i > 0])

# total(amounts): the exact total of an array of valid decimal strings, as a
# canonical decimal string. Undefined if any amount is invalid, the array is
# empty, or it has more than max_terms terms (one carry pass must leave carries <= 1).
total(amounts) := canonical(amounts[0]) if {
	# Fast path: almost every transaction has one amount, and the chunked
	# addition below costs far more than the rest of the KEYSIGN policy.
	count(amounts) == 1
	valid(amounts[0])
}

total(amounts) := canonical(text) if {
	count(amounts) > 1
	count(amounts) <= max_terms
	every a in amounts { valid(a) }
	scale := max([count(frac_part(a)) | some a in amounts])
	width := max([count(int_part(a)) | some a in amounts]) + headroom
	digits := width + scale
	padded := digits + ((chunk - (digits % chunk)) % chunk)
	n := padded / chunk

	# Every amount as `padded` digits, scaled to `scale` fraction digits.
	texts := [t |
		some a in amounts
		body := concat("", [int_part(a), frac_part(a), zeros(scale - count(frac_part(a)))])
		t := concat("", [zeros(padded - count(body)), body])
	]

	# Column sums, most significant chunk first; each < count * base, exact.
	cols := [s |
		some i in numbers.range(0, n - 1)
		s := sum([chunk_value(substring(t, i * chunk, chunk)) | some t in texts])
	]

	# One carry pass: afterwards every column is < 2 * base.
	pass := [v |
		some i in numbers.range(0, n - 1)
		v := (cols[i] % base) + carry_of(cols, i + 1)
	]

	# Resolve the remaining 0/1 carries without recursion: position i gets a
	# carry when some lower position j generates one (>= base) and every
	# position strictly between propagates it (== base - 1).
	final := [d |
		some i in numbers.range(0, n - 1)
		d := (pass[i] + ripple(pass, i)) % base
	]
	joined := concat("", [pad6(d) | some d in final])
	text := insert_point(joined, scale)
}

# chunk_value: a digit chunk as a number. Leading zeros are stripped first
# (regorus' to_number rejects "000075"; OPA's accepts it).
chunk_value(c) := to_number(t) if {
	t := trim_left(c, "0")
	t != ""
}

chunk_value(c) := 0 if trim_left(c, "0") == ""

carry_of(cols, j) := (cols[j] - (cols[j] % base)) / base if j < count(cols)

carry_of(cols, j) := 0 if j >= count(cols)

ripple(vs, i) := 1 if generates_into(vs, i)

ripple(vs, i) := 0 if not generates_into(vs, i)

generates_into(vs, i) if {
	some j in numbers.range(i + 1, count(vs) - 1)
	j > i
	vs[j] >= base
	every k in numbers.range(i + 1, j) {
		propagates(vs, k, j)
	}
}

propagates(_, k, j) if k == j

propagates(vs, k, j) if {
	k < j
	vs[k] == base - 1
}

pad6(d) := concat("", [zeros(chunk - count(s)), s]) if s := format_int(d, 10)

insert_point(s, 0) := s

insert_point(s, scale) := concat(".", [substring(s, 0, count(s) - scale), substring(s, count(s) - scale, scale)]) if scale > 0
