# Life-cycle controls: records that can be copied exactly (21 CFR 11.10(b)),
# the permitted sequencing of steps (11.10(f)), and managed re-training under a
# predetermined change control plan (GMLP 10, FDA PCCP guidance).
#
# Facts read: input.evidence_files (every evaluated evidence file and its
# sha256), the evidence blocks' path/digest and times (validated_at_ns,
# created_at_ns, signed_at_ns), and input.lineage from the manifest's
# spec.lineage.
package mlgate.rules.lifecycle

import rego.v1

import data.mlgate.lib

# (An evidence_files that is not an object reads as none: object.get on it raises on OPA and
# reads as undefined on the compiled engine.)
files := x if {
	x := object.get(input, "evidence_files", {})
	is_object(x)
} else := {}

# --- 11.10(b): every evaluated record identifiable as an exact copy ----------

# The single-file evidence blocks and the data validation records, each with
# the kind it belongs to.
evaluated contains [kind, b] if {
	some kind in ["model_card", "bias_audit"]
	b := lib.evidence(kind)
	b.present == true
}

evaluated contains ["data_validation", r] if {
	some r in lib.list_of(lib.evidence("data_validation"), "records")
}

copy_identified(b) if {
	lib.has_text(b, "path")
	lib.has_text(b, "digest")
	object.get(files, b.path, null) == b.digest
}

# METADATA
# title: Evidence record not identifiable as an exact copy
# description: >-
#   An evaluated evidence record does not name its file, or its sha256 is not
#   the one recorded in input.evidence_files, so an accurate and complete copy
#   of the record the decision relied on cannot be produced or checked.
# custom:
#   id: MLG-REC-001
#   severity: high
#   controls: [21CFR11.10(b), EUAIA-12]
#   remediation: Reference the evidence file from mlgate.yaml (spec.evidence) so mlgate reads and hashes it; do not pass evidence facts that were not read from a file.
#   expected: >-
#     Every evaluated evidence record (the model card and the bias audit when
#     shipped, and every data validation result) names its file and sha256
#     digest, and the input's evidence_files records the same sha256 for that
#     file.
violation contains v if {
	some [kind, b] in evaluated
	not copy_identified(b)
	v := {
		"id": "MLG-REC-001",
		"severity": "high",
		"controls": ["21CFR11.10(b)", "EUAIA-12"],
		"remediation": "Reference the evidence file from mlgate.yaml (spec.evidence) so mlgate reads and hashes it; do not pass evidence facts that were not read from a file.",
		"message": sprintf("%s record %s has digest %s, evidence_files records %s; expected the record's file and the same sha256 in both", [kind, lib.s(b, "path"), lib.short(b, "digest"), lib.short(files, lib.s(b, "path"))]),
		"subject": lib.s(b, "path"),
	}
}

# --- 11.10(f): validation <= bias audit <= approval <= decision ---------------

bias := lib.evidence("bias_audit")

validations := [r | some r in lib.list_of(lib.evidence("data_validation"), "records"); is_number(r.validated_at_ns)]

# The times of the evidence an approval covers; the approval must follow them all.
evidence_times contains t if {
	some r in validations
	t := r.validated_at_ns
}

evidence_times contains bias.created_at_ns if is_number(bias.created_at_ns)

last_evidence_ns := max(evidence_times) if count(evidence_times) > 0

# METADATA
# title: Bias audit precedes data validation
# description: >-
#   The bias audit was produced before a data validation it depends on: the
#   permitted order is data validation, then bias audit, then approval, then
#   the decision.
# custom:
#   id: MLG-SEQ-001
#   severity: high
#   controls: [21CFR11.10(f), GMLP-5]
#   remediation: Validate the datasets first, then run the bias audit again on the validated data (mlgate evidence bias).
#   expected: >-
#     Every data validation result that has a time was produced at or before the
#     bias audit's creation time.
violation contains v if {
	some r in validations
	is_number(bias.created_at_ns)
	r.validated_at_ns > bias.created_at_ns
	v := {
		"id": "MLG-SEQ-001",
		"severity": "high",
		"controls": ["21CFR11.10(f)", "GMLP-5"],
		"remediation": "Validate the datasets first, then run the bias audit again on the validated data (mlgate evidence bias).",
		"message": sprintf("bias audit created %s precedes data validation %s at %s; expected data validation <= bias audit", [lib.s(bias, "created_at"), lib.s(r, "path"), lib.s(r, "validated_at")]),
		"subject": lib.s(r, "path"),
	}
}

# METADATA
# title: Approval signed before the evidence it covers
# description: >-
#   An approval of this model for this environment was signed before the last
#   data validation or bias audit it covers was produced: the approver cannot
#   have reviewed it. (Approvals in the future are MLG-APPR-009.)
# custom:
#   id: MLG-SEQ-002
#   severity: critical
#   controls: [21CFR11.10(f), 21CFR11.70]
#   remediation: Have the approver review the current evidence and sign again (mlgate approve).
#   expected: >-
#     Every approval of this model for this environment that has a signing time
#     was signed at or after the latest data validation and bias audit time.
violation contains v if {
	some a in lib.list_of(lib.evidence("approvals"), "records")
	a.environment == input.environment
	a.subject_digest == lib.model_digest
	is_number(a.signed_at_ns)
	a.signed_at_ns < last_evidence_ns
	v := {
		"id": "MLG-SEQ-002",
		"severity": "critical",
		"controls": ["21CFR11.10(f)", "21CFR11.70"],
		"remediation": "Have the approver review the current evidence and sign again (mlgate approve).",
		"message": sprintf("approval %s by %s signed %s, before the last evidence it covers (%v ns > %v ns); expected evidence <= approval <= decision", [lib.s(a, "path"), lib.s(a, "signer_id"), lib.s(a, "signed_at"), last_evidence_ns, a.signed_at_ns]),
		"subject": lib.s(a, "path"),
	}
}

# --- GMLP 10 / PCCP: re-training under the change control plan ----------------

# (A lineage that is not an object reads as none: object.get on it raises on OPA and reads as
# undefined on the compiled engine.)
lineage := x if {
	x := object.get(input, "lineage", {})
	is_object(x)
} else := {}

cfg := lib.thresholds("lineage")

kinds := {"initial", "retrain"}

# METADATA
# title: Release lineage not declared
# description: >-
#   The environment requires every release to declare whether it is an initial
#   model or a re-trained version (spec.lineage.kind in mlgate.yaml), and this
#   one does not (or names another kind).
# custom:
#   id: MLG-PCCP-001
#   severity: high
#   controls: [GMLP-10]
#   remediation: Add spec.lineage to mlgate.yaml, kind initial or retrain (with predecessor and pccpModification).
#   expected: >-
#     Unless lineage.required is false, the release declares its lineage kind as
#     initial or retrain.
violation contains v if {
	not cfg.required == false
	not object.get(lineage, "kind", null) in kinds
	v := {
		"id": "MLG-PCCP-001",
		"severity": "high",
		"controls": ["GMLP-10"],
		"remediation": "Add spec.lineage to mlgate.yaml, kind initial or retrain (with predecessor and pccpModification).",
		"message": sprintf("lineage.kind is %s; environment %s requires initial or retrain", [lib.s(lineage, "kind"), lib.s(input, "environment")]),
	}
}

predecessor := object.get(lineage, "predecessor", {})

names_predecessor if {
	lib.has_text(predecessor, "version")
	lib.has_text(predecessor, "model_digest")
	predecessor.model_digest != lib.model_digest
}

# METADATA
# title: Re-trained version does not name its predecessor
# description: >-
#   A release declared as a re-training does not name the version and model
#   digest it replaces, or names its own digest, so the change cannot be traced
#   to the model it modifies.
# custom:
#   id: MLG-PCCP-002
#   severity: high
#   controls: [GMLP-10, EUAIA-12]
#   remediation: Set spec.lineage.predecessor.version and .modelDigest to the deployed version this release re-trains.
#   expected: >-
#     A release declared as a re-training names its predecessor's version and
#     model digest, and that digest differs from this model's digest.
violation contains v if {
	lineage.kind == "retrain"
	not names_predecessor
	v := {
		"id": "MLG-PCCP-002",
		"severity": "high",
		"controls": ["GMLP-10", "EUAIA-12"],
		"remediation": "Set spec.lineage.predecessor.version and .modelDigest to the deployed version this release re-trains.",
		"message": sprintf("re-trained release names predecessor version %s, model digest %s (this model: %s); expected the replaced version and a different model digest", [lib.s(predecessor, "version"), lib.short(predecessor, "model_digest"), lib.short(input.model, "digest")]),
	}
}

authorized := lib.list_of(cfg, "authorized_modifications")

# METADATA
# title: Re-training not covered by an authorised PCCP modification
# description: >-
#   A re-trained release does not cite a modification of the predetermined
#   change control plan, or cites one the environment's policy data does not
#   authorise (lineage.authorized_modifications).
# custom:
#   id: MLG-PCCP-003
#   severity: critical
#   controls: [GMLP-10]
#   remediation: Cite the authorised PCCP modification in spec.lineage.pccpModification, or obtain a new authorisation (a 510(k)/PMA supplement) before adding it to the policy data.
#   expected: >-
#     A release declared as a re-training cites a PCCP modification listed in
#     lineage.authorized_modifications.
violation contains v if {
	lineage.kind == "retrain"
	not object.get(lineage, "pccp_modification", null) in {m | some m in authorized}
	v := {
		"id": "MLG-PCCP-003",
		"severity": "critical",
		"controls": ["GMLP-10"],
		"remediation": "Cite the authorised PCCP modification in spec.lineage.pccpModification, or obtain a new authorisation (a 510(k)/PMA supplement) before adding it to the policy data.",
		"message": sprintf("re-trained release cites PCCP modification %s; expected one of %s", [lib.s(lineage, "pccp_modification"), lib.join(authorized)]),
	}
}
