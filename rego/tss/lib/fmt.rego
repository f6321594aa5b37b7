# Message formatting shared by every package. Values in deny messages are
# rendered with `show`, so OPA and regorus print them identically (no
# reliance on either engine's `%v` rendering of composite values).
package tss.lib.fmt

# show renders a value for a human: strings as-is, anything else as JSON.
show(x) := x if is_string(x)

show(x) := json.marshal(x) if not is_string(x)

# list renders an array or set of values as `a, b, c` (sorted, so the
# message does not depend on the request's ordering).
list(xs) := concat(", ", sort([show(x) | some x in xs]))

# field is `obj[key]` rendered with show, or `<missing>` when absent or
# when `obj` is not an object.
field(obj, key) := show(obj[key]) if is_object(obj)

field(obj, key) := "<missing>" if {
	is_object(obj)
	not key in object.keys(obj)
}

field(obj, _) := "<missing>" if not is_object(obj)
