# The entry point: data.mlgate.decision.
#
#   {"allow": <bool>, "violations": [...], "warnings": [...], "waivers": [...]}
#
# allow is true only when the environment is one the library has thresholds
# for AND no rule package reports a violation that no signed waiver covers.
# Anything else (an unknown environment, a missing input, a rule that cannot be
# judged) denies; callers allow only on a literal true. A violation a waiver
# covers (waivers.rego, same package) becomes a warning naming the waiver; "waivers" reports
# every waiver the release carries: applied or not, and why not.
package mlgate

import rego.v1



# The rule packages under data.mlgate.rules, named statically.
#
# Why not `data.mlgate.rules[_].violation`: the embedded engine (regorus)
# evaluates every rule of every package under data.mlgate.rules when the
# package is a variable, including the *_test packages that sit beside the
# rules, which is slow and makes one broken test break the gate. Static
# references evaluate only the violation and warning rules. A pytest test
# (tests/test_rego_policies.py) fails when a package under policies/mlgate/rules
# is missing here, so a new concern cannot be left out silently.
rule_violations := [
	data.mlgate.rules.config.violation,
	data.mlgate.rules.model_card.violation,
	data.mlgate.rules.data_validation.violation,
	data.mlgate.rules.bias.violation,
	data.mlgate.rules.approvals.violation,
	data.mlgate.rules.model_signature.violation,
	data.mlgate.rules.provenance.violation,
	data.mlgate.rules.lifecycle.violation,
	data.mlgate.rules.privacy.violation,
]

rule_warnings := [
	data.mlgate.rules.model_card.warning,
	data.mlgate.rules.data_validation.warning,
	data.mlgate.rules.bias.warning,
	data.mlgate.rules.approvals.warning,
	data.mlgate.rules.provenance.warning,
]

# With no input document at all, the rules above cannot name what is missing.
# (Negated as a rule: OPA reads `not is_object(input)` as undefined when there
# is no input, and MLG-CFG-000 would never fire there.)
input_is_object if is_object(input)

# METADATA
# title: Input document missing
# description: The policy was evaluated without an input document (or with one that is not an object).
# custom:
#   id: MLG-CFG-000
#   severity: critical
#   controls: [21CFR11.10(a)]
#   remediation: Evaluate the policy with an mlgate.dev/input/v1 input document.
#   expected: The policy is evaluated with an input document, a JSON object of apiVersion mlgate.dev/input/v1.
input_violations contains v if {
	not input_is_object
	v := {
		"id": "MLG-CFG-000",
		"severity": "critical",
		"controls": ["21CFR11.10(a)"],
		"remediation": "Evaluate the policy with an mlgate.dev/input/v1 input document.",
		"message": "no input document; expected an mlgate.dev/input/v1 object",
	}
}

all_violations := {v | some vs in rule_violations; some v in vs} | input_violations

# Violations a signed waiver covers, each with the waiver that covers it.
waived := {[v, r] | some v in all_violations; r := waiver_covering(v)}

open_violations := all_violations - {v | some pair in waived; v := pair[0]}

waived_warnings := {waived_warning(pair[0], pair[1]) | some pair in waived}

all_warnings := {w | some ws in rule_warnings; some w in ws} | waived_warnings

# Findings in a stable order: by id, then message.
ordered(findings) := [f |
	some key in sort({[f.id, f.message] | some f in findings})
	some f in findings
	[f.id, f.message] == key
]

thresholds_known if is_object(data.mlgate.environments[input.environment])

default allow := false

allow if {
	thresholds_known
	count(open_violations) == 0
}

decision := {
	"allow": allow,
	"violations": ordered(open_violations),
	"warnings": ordered(all_warnings),
	"waivers": waiver_report(all_violations),
}
