# Configuration and the shape of the input: the environment must be one the
# policy library has thresholds for, and its thresholds must be complete.
# Without these every other rule could be judged against nothing, so each of
# them denies on its own.
package mlgate.rules.config

import rego.v1

import data.mlgate.lib

# Positive forms, negated in the rules below: `not is_number(input.x)` is
# undefined on OPA when input.x is missing (see lib.env_known).
has_evaluation_time if is_number(input.evaluated_at_ns)

evidence_is_object if is_object(input.evidence)

# The environments the library has thresholds for, for messages.
known := sort(object.keys(data.mlgate.environments)) if {
	is_object(data.mlgate.environments)
} else := []

# METADATA
# title: Unknown environment
# description: >-
#   The input names an environment for which the policy library holds no
#   thresholds (no data file under policies/mlgate/environments/<env>/).
#   Nothing can be judged without thresholds, so the gate denies.
# custom:
#   id: MLG-CFG-001
#   severity: critical
#   controls: [21CFR11.10(a), EUAIA-9]
#   remediation: Use one of the environments the policy library defines, or add policies/mlgate/environments/<env>/data.json with reviewed thresholds.
#   expected: >-
#     The input names an environment for which the policy library holds a
#     thresholds object (a data file under policies/mlgate/environments/).
violation contains v if {
	not lib.env_known
	v := {
		"id": "MLG-CFG-001",
		"severity": "critical",
		"controls": ["21CFR11.10(a)", "EUAIA-9"],
		"remediation": "Use one of the environments the policy library defines, or add policies/mlgate/environments/<env>/data.json with reviewed thresholds.",
		"message": sprintf("environment %s has no thresholds in the policy library; expected one of: %s", [lib.s(input, "environment"), lib.join(known)]),
	}
}

# METADATA
# title: Unsupported input document version
# description: >-
#   The rules read the fields of mlgate.dev/input/v1. Any other apiVersion (or
#   none) may carry different fields, so the gate denies rather than guess.
# custom:
#   id: MLG-CFG-002
#   severity: critical
#   controls: [21CFR11.10(a)]
#   remediation: Produce the input with an mlgate version that writes apiVersion mlgate.dev/input/v1.
#   expected: >-
#     The input document's apiVersion is exactly mlgate.dev/input/v1.
violation contains v if {
	not input.apiVersion == "mlgate.dev/input/v1"
	v := {
		"id": "MLG-CFG-002",
		"severity": "critical",
		"controls": ["21CFR11.10(a)"],
		"remediation": "Produce the input with an mlgate version that writes apiVersion mlgate.dev/input/v1.",
		"message": sprintf("input apiVersion is %s; expected mlgate.dev/input/v1", [lib.s(input, "apiVersion")]),
	}
}

# METADATA
# title: Evaluation time missing
# description: >-
#   Expiry, signing time and evidence age are judged against evaluated_at_ns.
#   Without it no time-bound check can pass.
# custom:
#   id: MLG-CFG-003
#   severity: critical
#   controls: [21CFR11.10(e)]
#   remediation: Run the gate through mlgate, which sets evaluated_at and evaluated_at_ns from its clock.
#   expected: >-
#     The input carries evaluated_at_ns, the evaluation time as a number of
#     nanoseconds since the epoch.
violation contains v if {
	not has_evaluation_time
	v := {
		"id": "MLG-CFG-003",
		"severity": "critical",
		"controls": ["21CFR11.10(e)"],
		"remediation": "Run the gate through mlgate, which sets evaluated_at and evaluated_at_ns from its clock.",
		"message": sprintf("input evaluated_at_ns is %s; expected an integer time in nanoseconds since the epoch", [lib.s(input, "evaluated_at_ns")]),
	}
}

# METADATA
# title: Model digest missing
# description: >-
#   Signatures, approvals and the bias audit are bound to the model by its
#   digest. Without a model digest none of them can be shown to cover this model.
# custom:
#   id: MLG-CFG-004
#   severity: critical
#   controls: [21CFR11.70, GMLP-10]
#   remediation: Point spec.model.path in mlgate.yaml at the model directory or file so mlgate can compute its digest.
#   expected: >-
#     The input carries the model's digest as non-empty text.
violation contains v if {
	not lib.has_text(object.get(input, "model", {}), "digest")
	v := {
		"id": "MLG-CFG-004",
		"severity": "critical",
		"controls": ["21CFR11.70", "GMLP-10"],
		"remediation": "Point spec.model.path in mlgate.yaml at the model directory or file so mlgate can compute its digest.",
		"message": sprintf("input model.digest is %s; expected the model's hex digest", [lib.s(object.get(input, "model", {}), "digest")]),
	}
}

# The thresholds every environment must define, with the type each must have.
# A missing threshold would make the rule that reads it silently not fire.
required_thresholds := [
	{"path": ["bias", "metrics"], "type": "array"},
	{"path": ["bias", "delta"], "type": "number"},
	{"path": ["bias", "alpha"], "type": "number"},
	{"path": ["bias", "n_min"], "type": "number"},
	{"path": ["bias", "non_inferiority"], "type": "boolean"},
	{"path": ["approvals", "required"], "type": "array"},
	{"path": ["approvals", "distinct_people"], "type": "boolean"},
	{"path": ["evidence", "max_age_days"], "type": "number"},
	{"path": ["model_card", "required_sections"], "type": "array"},
	{"path": ["model_signature", "required"], "type": "boolean"},
	{"path": ["data_validation", "required"], "type": "boolean"},
	{"path": ["approvals", "min_disciplines"], "type": "number"},
	{"path": ["model_card", "human_roles"], "type": "array"},
	{"path": ["lineage", "required"], "type": "boolean"},
	{"path": ["lineage", "authorized_modifications"], "type": "array"},
	{"path": ["privacy", "deidentification_required"], "type": "boolean"},
	{"path": ["privacy", "deidentification_methods"], "type": "array"},
]

# METADATA
# title: Environment thresholds incomplete
# description: >-
#   The environment's data file lacks a threshold, or gives it the wrong type,
#   or leaves a list empty that must name something (bias metrics, required
#   approvals). The gate denies instead of skipping the checks that need it.
# custom:
#   id: MLG-CFG-005
#   severity: critical
#   controls: [21CFR11.10(a)]
#   remediation: Complete policies/mlgate/environments/<env>/data.json; see policies/README.md for every key.
#   expected: >-
#     The environment's data file has numbers at bias.delta, bias.alpha,
#     bias.n_min, evidence.max_age_days and approvals.min_disciplines; booleans
#     at bias.non_inferiority, approvals.distinct_people,
#     model_signature.required, data_validation.required, lineage.required and
#     privacy.deidentification_required; and lists at bias.metrics,
#     approvals.required, model_card.required_sections, model_card.human_roles,
#     lineage.authorized_modifications and privacy.deidentification_methods. Of
#     these lists, bias.metrics, approvals.required, model_card.human_roles and
#     privacy.deidentification_methods are not empty.
violation contains v if {
	env := data.mlgate.environments[input.environment]
	is_object(env)
	some t in required_thresholds
	value := object.get(env, t.path, null)
	not type_name(value) == t.type
	v := {
		"id": "MLG-CFG-005",
		"severity": "critical",
		"controls": ["21CFR11.10(a)"],
		"remediation": "Complete policies/mlgate/environments/<env>/data.json; see policies/README.md for every key.",
		"message": sprintf("environment %s threshold %s is %s; expected a %s", [input.environment, trim_prefix(concat(".", t.path), ""), type_name(value), t.type]),
		"subject": concat(".", t.path),
	}
}

violation contains v if {
	env := data.mlgate.environments[input.environment]
	is_object(env)
	some path in [["bias", "metrics"], ["approvals", "required"], ["model_card", "human_roles"], ["privacy", "deidentification_methods"]]
	object.get(env, path, null) == []
	v := {
		"id": "MLG-CFG-005",
		"severity": "critical",
		"controls": ["21CFR11.10(a)"],
		"remediation": "Complete policies/mlgate/environments/<env>/data.json; see policies/README.md for every key.",
		"message": sprintf("environment %s threshold %s is empty; expected at least one entry", [input.environment, trim_prefix(concat(".", path), "")]),
		"subject": concat(".", path),
	}
}


# METADATA
# title: Evidence blocks malformed
# description: >-
#   The input document's evidence is not an object of evidence blocks, or one of
#   its blocks is not an object. mlgate never builds such a document. A rule that
#   reads a malformed block sees no evidence there, which an environment that does
#   not require that evidence would pass; the document is refused instead, with
#   the same finding on every engine.
# custom:
#   id: MLG-CFG-006
#   severity: critical
#   controls: [21CFR11.10(a)]
#   remediation: Evaluate the policy with the input document mlgate builds (mlgate.dev/input/v1, docs/input-document.md).
#   expected: input.evidence is an object, and each evidence block in it (model_card, bias_audit, approvals, ...) is an object.
violation contains v if {
	not evidence_is_object
	v := {
		"id": "MLG-CFG-006",
		"severity": "critical",
		"controls": ["21CFR11.10(a)"],
		"remediation": "Evaluate the policy with the input document mlgate builds (mlgate.dev/input/v1, docs/input-document.md).",
		"message": sprintf("input evidence is %s; expected an object of evidence blocks", [type_name(object.get(input, "evidence", null))]),
		"subject": "evidence",
	}
}

violation contains v if {
	is_object(input.evidence)
	some kind, block in input.evidence
	not is_object(block)
	v := {
		"id": "MLG-CFG-006",
		"severity": "critical",
		"controls": ["21CFR11.10(a)"],
		"remediation": "Evaluate the policy with the input document mlgate builds (mlgate.dev/input/v1, docs/input-document.md).",
		"message": sprintf("input evidence.%s is %s; expected an evidence block (an object)", [kind, type_name(block)]),
		"subject": sprintf("evidence.%s", [kind]),
	}
}
