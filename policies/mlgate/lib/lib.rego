# Shared helpers for the mlgate rules.
#
# Everything here is written so that a missing input field can never make a
# rule silently undefined: accessors take the parent object and the key and fall
# back to a visible "<missing>" text, and predicates are true only for the
# literal value they test (a missing field is "not true").
package mlgate.lib

import rego.v1

# The thresholds of the environment named in the input. Undefined when the
# environment is unknown; config.rego then reports MLG-CFG-001 and the decision
# denies, whatever the other rules say.
env := data.mlgate.environments[input.environment]

# The environment is one the library has thresholds for (an object of them).
#
# Portability: inside `not`, never pass a value that may be undefined to a
# function, builtin or comparison other than `==` (`not is_object(env)`,
# `not count(xs) >= m`, `not x in s`). OPA (the reference) makes the whole
# expression undefined when an argument is, so the rule silently does not fire;
# regorus and rego-cpp read it as true. Test the positive form in a helper rule
# and negate the rule (`not env_known`), or pass `object.get(obj, key, null)`.
# tests/test_opa_reference.py runs the Rego tests and decisions on OPA itself.
env_known if is_object(env)

# One block of the environment's thresholds ("bias", "approvals", ...), or an
# empty object when the environment or the block is unknown.
thresholds(kind) := object.get(env, kind, {}) if env_known

thresholds(kind) := {} if not env_known

# Evaluation time in nanoseconds since the epoch; undefined when the input has
# none, so every freshness check (`not fresh(t)`) fires.
now_ns := input.evaluated_at_ns if is_number(input.evaluated_at_ns)

ns_per_day := 86400000000000

# Oldest evidence accepted, in nanoseconds.
max_age_ns := env.evidence.max_age_days * ns_per_day if is_number(env.evidence.max_age_days)

# An evidence block from the input, or an empty object (present, valid: missing).
evidence(kind) := object.get(input, ["evidence", kind], {})

# The model digest the release names, or "" when missing (then every binding
# check against it fails, and MLG-CFG-004 fires).
model_digest := object.get(input, ["model", "digest"], "")

# The helpers below read obj[key] only after is_object(obj): a non-object reads
# as "missing" on every engine (object.get on one is an evaluation error in
# regorus, undefined in OPA), so a malformed block denies through the rules and
# MLG-CFG-006, never as an engine error.

# true only for a literal true at obj[key]. In a rule, `x.key == true` says the
# same and costs the embedded engine a fraction of a function call: the bundled
# rules use that form.
is_true(obj, key) if {
	is_object(obj)
	object.get(obj, key, null) == true
}

# true only for a literal false at obj[key]
is_false(obj, key) if {
	is_object(obj)
	object.get(obj, key, null) == false
}

# obj[key] is a string with something other than whitespace in it
has_text(obj, key) if {
	is_object(obj)
	x := object.get(obj, key, null)
	is_string(x)
	trim_space(x) != ""
}

# obj[key] as a list (a missing or non-list value is the empty list)
list_of(obj, key) := x if {
	is_object(obj)
	x := object.get(obj, key, [])
	is_array(x)
} else := []

# --- display -----------------------------------------------------------------

# obj[key] for a message: strings as they are, other values in Rego notation,
# "<missing>" when absent or null.
s(obj, key) := x if {
	is_object(obj)
	x := object.get(obj, key, null)
	is_string(x)
} else := "<missing>" if {
	not is_object(obj)
} else := "<missing>" if {
	object.get(obj, key, null) == null
} else := sprintf("%v", [object.get(obj, key, null)])

# a number for a message, rounded to 3 decimals; "<missing>" otherwise
num(x) := fixed(rounded(x, 1000), 3) if is_number(x)

num(x) := "<missing>" if not is_number(x)

# obj[key] as a number for a message (see num)
n(obj, key) := num(object.get(obj, key, null)) if {
	is_object(obj)
} else := "<missing>"

# a p-value for a message: small ones in scientific notation with 3
# significant digits, as OPA's sprintf("%.2e") prints them (2.00e-05,
# 5.44e-33), so 2e-05 does not print as 0; others rounded to 4 decimals.
# Written out rather than with "%.2e": regorus ignores that precision
# (5.44034e-33), so the embedded engine's messages differed from OPA's.
p(obj, key) := text if {
	is_object(obj)
	x := object.get(obj, key, null)
	is_number(x)
	x > 0
	x < 0.001
	text := scientific(x)
} else := fixed(rounded(x, 10000), 4) if {
	is_object(obj)
	x := object.get(obj, key, null)
	is_number(x)
} else := "<missing>"

# x in [1e-299, 0.001) as d.dde-kk. The exponent is the first k with
# x >= 1e-k, found decade block first, then within it (40 candidates, not 300);
# first element of an ordered list, not min(): rego-cpp's min over it is wrong.
# The mantissa is rounded to 3 digits; 9.995 rounds up into the next power of ten.
scientific(x) := sci_text(rounded(x / to_number(sprintf("1e-%d", [k])), 100), k) if {
	blocks := [b | some b in numbers.range(0, 29); x >= to_number(sprintf("1e-%d", [(10 * b) + 9]))]
	count(blocks) > 0
	ks := [j | some j in numbers.range(10 * blocks[0], (10 * blocks[0]) + 9); x >= to_number(sprintf("1e-%d", [j]))]
	k := ks[0]
}

sci_text(m, k) := sprintf("%d.%02de-%02d", [floor(m / 100), m % 100, k]) if m < 1000

sci_text(m, k) := sprintf("%d.%02de-%02d", [floor(m / 1000), round(m / 10) % 100, k - 1]) if m >= 1000

# round(x * s), the same on every engine. OPA computes in decimal (0.8365 * 1000 is 836.5,
# rounded to 837), regorus and rego-cpp in binary floating point (836.4999999999999, rounded to
# 836): a nudge of 1e-6 away from zero rounds a written-out half up everywhere.
rounded(x, s) := round((x * s) + 0.000001) if x >= 0

rounded(x, s) := round((x * s) - 0.000001) if x < 0

# r / 10^d (r an integer, d 3 or 4) as text without trailing zeros: "0.072", "-1.5", "3".
# Written out rather than sprintf("%v", [r / 1000]): rego-cpp prints such a float with 16
# significant digits (-0.07199999999999999) where OPA and regorus print -0.072.
fixed(r, d) := with_fraction(sign_of(r), whole, trim_right(fraction_digits(abs(r) - (whole * scale_of(d)), d), "0")) if {
	whole := floor(abs(r) / scale_of(d))
}

# (not minus: OPA names the `-` operator so)
sign_of(r) := "-" if r < 0

sign_of(r) := "" if r >= 0

scale_of(3) := 1000

scale_of(4) := 10000

fraction_digits(f, 3) := sprintf("%03d", [f])

fraction_digits(f, 4) := sprintf("%04d", [f])

with_fraction(sign, whole, "") := sprintf("%s%d", [sign, whole])

with_fraction(sign, whole, frac) := sprintf("%s%d.%s", [sign, whole, frac]) if frac != ""

# a digest shortened to 12 hex characters for a message
short(obj, key) := substring(trim_prefix(x, "sha256:"), 0, 12) if {
	is_object(obj)
	x := object.get(obj, key, null)
	is_string(x)
	x != ""
} else := "<missing>"

# a list of strings joined for a message ("none" when empty)
#
# trim_prefix(_, "") is the identity; it is there because rego-cpp (regopy
# 1.5.2) keeps the result of concat marked as a quoted string, so a sprintf of
# it prints the quotes and its output is no longer JSON (an engine error).
join(xs) := trim_prefix(concat(", ", [sprintf("%v", [x]) | some x in xs]), "") if count(xs) > 0

join(xs) := "none" if count(xs) == 0

# --- time --------------------------------------------------------------------

# t (ns) is not in the future and not older than the environment's max_age_days
fresh(t) if {
	is_number(t)
	t <= now_ns
	now_ns - t <= max_age_ns
}

# why a time t (ns) is not fresh, for a message
age_text(t) := "has no time" if not is_number(t)

age_text(t) := "cannot be aged: the input has no evaluated_at_ns" if {
	is_number(t)
	not now_ns
}

age_text(t) := sprintf("is in the future (%v days after evaluation)", [round((t - now_ns) / ns_per_day * 10) / 10]) if {
	is_number(t)
	t > now_ns
}

age_text(t) := sprintf("is %v days old", [round((now_ns - t) / ns_per_day * 10) / 10]) if {
	is_number(t)
	t <= now_ns
}

default max_age_text := "<missing>"

max_age_text := sprintf("%v days", [env.evidence.max_age_days]) if is_number(env.evidence.max_age_days)
