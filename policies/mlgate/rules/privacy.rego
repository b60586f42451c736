# HIPAA de-identification (45 CFR 164.514(b)): a release trained on patient
# data declares how the data were de-identified, safe harbor or expert
# determination. Facts: input.privacy.deidentification from the manifest's
# spec.privacy.deidentification.
package mlgate.rules.privacy

import rego.v1

import data.mlgate.lib

cfg := lib.thresholds("privacy")

deid := object.get(input, ["privacy", "deidentification"], {})

methods := lib.list_of(cfg, "deidentification_methods")

declared if {
	lib.has_text(deid, "method")
	lib.has_text(deid, "statement")
}

# METADATA
# title: De-identification declaration missing
# description: >-
#   The environment requires a HIPAA de-identification declaration (method and
#   statement) and the release makes none.
# custom:
#   id: MLG-PRIV-001
#   severity: critical
#   controls: [HIPAA-DEID]
#   remediation: Add spec.privacy.deidentification (method safe-harbor or expert-determination, and a statement naming who determined it) to mlgate.yaml.
#   expected: >-
#     Unless privacy.deidentification_required is false, the release declares a
#     de-identification method and a statement, both as non-empty text.
violation contains v if {
	not cfg.deidentification_required == false
	not declared
	v := {
		"id": "MLG-PRIV-001",
		"severity": "critical",
		"controls": ["HIPAA-DEID"],
		"remediation": "Add spec.privacy.deidentification (method safe-harbor or expert-determination, and a statement naming who determined it) to mlgate.yaml.",
		"message": sprintf("de-identification method %s, statement %s; environment %s requires both", [lib.s(deid, "method"), lib.s(deid, "statement"), lib.s(input, "environment")]),
	}
}

# METADATA
# title: De-identification method not accepted
# description: >-
#   The release declares a de-identification method the environment does not
#   accept (privacy.deidentification_methods).
# custom:
#   id: MLG-PRIV-002
#   severity: critical
#   controls: [HIPAA-DEID]
#   remediation: De-identify the data by an accepted method (safe harbor or expert determination) and declare it.
#   expected: >-
#     A de-identification method the release declares (in any environment) is
#     one of privacy.deidentification_methods.
violation contains v if {
	lib.has_text(deid, "method")
	not deid.method in {m | some m in methods}
	v := {
		"id": "MLG-PRIV-002",
		"severity": "critical",
		"controls": ["HIPAA-DEID"],
		"remediation": "De-identify the data by an accepted method (safe harbor or expert determination) and declare it.",
		"message": sprintf("de-identification method is %s; expected one of %s", [deid.method, lib.join(methods)]),
	}
}
