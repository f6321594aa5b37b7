# The decision framework. Owns `data.tss.decision` (the one entrypoint the
# server evaluates) and `data.tss.denies` (for tooling).
#
# It collects deny elements from `data.tss.common.deny` (every request type)
# and from the package of the request's type, normalises them into
# {"code", "msg"} objects, and allows only when the type's package says
# `allow` AND nobody denied. Policy authors never edit this file: they add
# `deny contains {...} if {...}` rules in `rego/tss/<type>/`.
#
# INVARIANT: `decision` is defined for every input, including no input.
package tss

import data.tss.lib.fmt

# Request type name (as built by the server) -> package under `data.tss`.
type_packages := {
	"PING": "ping",
	"KEYGEN": "keygen",
	"KEYSIGN": "keysign",
	"KEYRESHARE": "keyreshare",
	"KEYSHARESIGN": "keysharesign",
}

# Deny codes become Prometheus label values: keep them short and tame.
code_pattern := `^[a-z][a-z0-9_.]{0,63}$`

# --- collection -------------------------------------------------------------
# One static reference per package (no dynamic `data.tss[pkg]` lookup), so
# OPA and regorus resolve exactly the same rules.

raw_denies contains d if some d in data.tss.common.deny

raw_denies contains d if {
	input.request_type == "PING"
	some d in data.tss.ping.deny
}

raw_denies contains d if {
	input.request_type == "KEYGEN"
	some d in data.tss.keygen.deny
}

raw_denies contains d if {
	input.request_type == "KEYSIGN"
	some d in data.tss.keysign.deny
}

raw_denies contains d if {
	input.request_type == "KEYRESHARE"
	some d in data.tss.keyreshare.deny
}

raw_denies contains d if {
	input.request_type == "KEYSHARESIGN"
	some d in data.tss.keysharesign.deny
}

# The type's package must affirmatively allow; anything else (no `allow`
# rule, `allow` undefined, `allow` not exactly true) is not allowed.
type_allowed if {
	input.request_type == "PING"
	data.tss.ping.allow == true
}

type_allowed if {
	input.request_type == "KEYGEN"
	data.tss.keygen.allow == true
}

type_allowed if {
	input.request_type == "KEYSIGN"
	data.tss.keysign.allow == true
}

type_allowed if {
	input.request_type == "KEYRESHARE"
	data.tss.keyreshare.allow == true
}

type_allowed if {
	input.request_type == "KEYSHARESIGN"
	data.tss.keysharesign.allow == true
}

# --- normalisation ----------------------------------------------------------

well_formed(d) if {
	is_object(d)
	is_string(d.code)
	regex.match(code_pattern, d.code)
	is_string(d.msg)
}

# A deny element is {"code", "msg"}; a bare string is accepted too.
normalize(d) := {"code": d.code, "msg": d.msg} if well_formed(d)

normalize(d) := {"code": "policy.unspecified", "msg": d} if is_string(d)

# Anything else still denies (fail closed), under a fixed code so a typo in
# a code cannot create unbounded metric labels.
normalize(d) := {"code": "policy.malformed_deny", "msg": sprintf("malformed deny element `%s`", [json.marshal(d)])} if {
	not well_formed(d)
	not is_string(d)
}

rule_denies contains normalize(d) if some d in raw_denies

# --- framework denies -------------------------------------------------------

request_type_text := fmt.show(input.request_type)

request_type_text := "<missing>" if not has_request_type

request_type_code_text := fmt.show(input.request_type_code)

request_type_code_text := "<missing>" if not has_request_type_code

# Negate rules, never calls on input: OPA evaluates a reference argument
# before the `not`, so `not f(input.x)` is undefined (not true) when
# input.x is missing, and a deny written that way would not fire.
has_request_type if has_key(input, "request_type")

has_request_type_code if has_key(input, "request_type_code")

# has_key: also false when the input is not an object or not there at all.
has_key(obj, key) if {
	is_object(obj)
	key in object.keys(obj)
}

framework_denies contains {
	"code": "request.unknown_type",
	"msg": sprintf("request type `%s` (code `%s`) is not one this policy handles", [request_type_text, request_type_code_text]),
} if {
	not known_type
}

known_type if type_packages[input.request_type]

framework_denies contains {
	"code": "policy.no_allow",
	"msg": sprintf("no rule in package `tss.%s` allowed this %s request", [pkg, input.request_type]),
} if {
	pkg := type_packages[input.request_type]
	not type_allowed
	count(rule_denies) == 0
}

# --- outputs ----------------------------------------------------------------

denies := rule_denies | framework_denies

# Reasons ordered by (code, msg); codes are the sorted distinct codes.
ordered := sort([[d.code, d.msg] | some d in denies])

# Allowed only when the type's package affirmatively allows AND nobody
# denied: a missing or unknown type can never be allowed, even if a deny
# that should have reported it failed to fire.
allowed if {
	type_allowed
	count(denies) == 0
}

allow_flag := true if allowed
else := false

decision := {
	"allow": allow_flag,
	"reasons": [pair[1] | some pair in ordered],
	"codes": sort({d.code | some d in denies}),
}
