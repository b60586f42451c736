# Shared fixtures for the Rego unit tests (and, through the engine, for
# tests/test_rego_policies.py): one complete input document that passes in
# production, one that passes in staging, and a fixed copy of the thresholds so
# that the rule tests do not change when a compliance officer edits the
# shipped environment data (decision_test.rego uses the shipped data instead).
package mlgate.testdata

import rego.v1

model_digest := "9372c470eeadd5ecd9c3c74c2b3cb633f8e2f2fad799250a0f70d652b6b825e4"

other_digest := "05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f"

evaluated_at_ns := 1795946400000000000 # 2026-11-29T10:00:00Z

day_ns := 86400000000000

evidence_files := {
	"evidence/model_card.md": "8367cd66fdd136bba8ba23f8805bb050dd6289401c8ec3b0be44a3c233eef90d",
	"evidence/validation_train.json": "60f5a5ee2724bba2918ca275f4403fb62af497421dede31f1a7c40164a584688",
	"evidence/validation_eval.json": "63c291e77cbaa65d0529b94a2ab0b004f118c4523eb88a6265647ae476ee50f5",
	"evidence/bias_audit.json": "fa4824e83746480e1029c47ad659fdc3854195c0fa76c9209807cef32e29243e",
	"model.sig": "a543997d84f12798350c09bdef2cdb171bf41ed3e4a5f808af2feb0c56263009",
}

section := {"present": true, "empty": false}

validation_record(name, path, dataset_digest) := {
	"path": path,
	"digest": evidence_files[path],
	"format": "great_expectations",
	"valid": true,
	"errors": [],
	"success": true,
	"suite_name": "readmission_input_suite",
	"evaluated": 12,
	"successful": 12,
	"unsuccessful": 0,
	"failed_expectations": [],
	"validated_at": "2026-10-01T08:00:00Z",
	"validated_at_ns": 1790841600000000000,
	"gx_version": "1.24.1",
	"dataset": {"name": name, "digest": dataset_digest},
}

approval(path, signer, name, role, meaning, env) := {
	"path": path,
	"digest": "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2",
	"verified": true,
	"reason": null,
	"signer_id": signer,
	"printed_name": name,
	"role": role,
	"meaning": meaning,
	"manifestation": sprintf("%s, %s as %s, signed 2026-11-20T09:30:00Z", [name, meaning, role]),
	"role_authorised": true,
	"meaning_authorised": true,
	"environment_authorised": true,
	"identity_source": "key",
	"identity": "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a",
	"key_id": "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a",
	"certificate": null,
	"key_status": "valid",
	"key_revoked_at": null,
	"key_revoked_at_ns": null,
	"key_revocation_reason": null,
	"signed_at_source": "signer",
	"statement_digest": concat("", ["statement of ", path]),
	"release_binding": "bound",
	"release_changes": [],
	"authored": [],
	"signed_at": "2026-11-20T09:30:00Z",
	"signed_at_ns": 1795167000000000000,
	"expires_at": "2027-11-20T09:30:00Z",
	"expires_at_ns": 1826703000000000000,
	"environment": env,
	"subject_digest": model_digest,
	"evidence_digests": evidence_files,
	"comment": "Reviewed release 1.4.0",
}

qa_review := approval(
	"evidence/approvals/john.smith.sigstore.json", "john.smith@hospital.example", "John Smith",
	"quality-assurance", "review", "production",
)

cso_approval := approval(
	"evidence/approvals/jane.roe.sigstore.json", "jane.roe@hospital.example", "Dr. Jane Roe",
	"clinical-safety-officer", "approval", "production",
)

group(attribute, name, n, positives, tp) := {
	"attribute": attribute, "group": name, "n": n, "positives": positives,
	"tp": tp, "fn": positives - tp, "successes": tp, "trials": positives, "value": tp / positives,
	"ci_low": (tp / positives) - 0.06, "ci_high": (tp / positives) + 0.05, "insufficient": false,
}

comparison(attribute, name, value, gap, ci_low, ci_high, p_holm) := {
	"attribute": attribute, "group": name, "reference_group": "rest",
	"value": value, "reference_value": value + gap,
	"gap": gap, "gap_ci_low": ci_low, "gap_ci_high": ci_high,
	"p_value": p_holm / 2, "p_holm": p_holm, "insufficient": false,
}

# A release that passes every production rule.
good_input := {
	"apiVersion": "mlgate.dev/input/v1",
	"environment": "production",
	"evaluated_at": "2026-11-29T10:00:00Z",
	"evaluated_at_ns": evaluated_at_ns,
	"request": {"source": "cli", "user": "ci@example", "namespace": null, "operation": "promote", "dry_run": false},
	"release": {
		"name": "readmission-risk", "version": "1.4.0", "owner": "ml-platform@hospital.example",
		"manifest_digest": "05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f",
	},
	"model": {"digest": model_digest, "path": "model/", "file_count": 2, "storage_uri": null},
	"datasets": [
		{
			"name": "train", "uri": "data/train.csv",
			"declared_digest": "116f54c41d0405dbb10e7b04ebc31e262a5b8c85c1233fcf36eaee344d91ae58",
			"actual_digest": "116f54c41d0405dbb10e7b04ebc31e262a5b8c85c1233fcf36eaee344d91ae58",
			"digest_matches": true,
		},
		{
			"name": "eval", "uri": "data/eval.csv",
			"declared_digest": "1bbd174404efbce95f1af489ef93f4aa0f4d55718f24c3504682216afa7b7fb1",
			"actual_digest": "1bbd174404efbce95f1af489ef93f4aa0f4d55718f24c3504682216afa7b7fb1",
			"digest_matches": true,
		},
	],
	"evidence_files": evidence_files,
	"lineage": {"kind": "initial"},
	"privacy": {"deidentification": {"method": "safe-harbor", "statement": "The 18 HIPAA identifiers were removed before extraction (privacy office, 2026-09)."}},
	"evidence": {
		"model_card": {
			"present": true, "valid": true, "authenticated": false, "errors": [],
			"path": "evidence/model_card.md", "digest": evidence_files["evidence/model_card.md"],
			"format": "huggingface",
			"sections": {
				"model_details": section, "intended_use": section, "out_of_scope_use": section,
				"training_data": section, "evaluation_data": section, "evaluation_results": section,
				"limitations": section, "ethical_considerations": section, "how_to_use": section,
			},
			"intended_use": "Flag adult inpatients at high risk of 30-day readmission for discharge-planning review by a nurse.",
			"out_of_scope_use": "Not for paediatric patients, triage, or any automated treatment decision.",
			"limitations": "Trained on one hospital network (2019-2024); recalibrate before use elsewhere.",
			"evaluation_results_present": true,
			"placeholders": [],
		},
		"data_validation": {
			"present": true, "valid": true, "authenticated": false, "errors": [],
			"records": [
				validation_record("train", "evidence/validation_train.json", "116f54c41d0405dbb10e7b04ebc31e262a5b8c85c1233fcf36eaee344d91ae58"),
				validation_record("eval", "evidence/validation_eval.json", "1bbd174404efbce95f1af489ef93f4aa0f4d55718f24c3504682216afa7b7fb1"),
			],
		},
		"bias_audit": {
			"present": true, "valid": true, "authenticated": false, "errors": [],
			"path": "evidence/bias_audit.json", "digest": evidence_files["evidence/bias_audit.json"],
			"subject_digest": model_digest,
			"metric": "recall", "reference": "rest",
			"created_at": "2026-11-01T12:00:00Z", "created_at_ns": 1793534400000000000,
			"n_min": 30, "alpha": 0.05, "confidence": 0.95,
			"predictions_digest": "a426dfbaa8dd42e211238cb4d58a9ae95fb1644520949eba53f56fa399adc6ac", "seed": 0,
			"tool_versions": {"fairlearn": "0.13.0", "statsmodels": "0.14.5", "mlgate": "0.1.0"},
			"groups": [
				group("race", "A", 900, 300, 252),
				group("race", "B", 700, 200, 166),
				group("sex", "F", 1000, 260, 218),
			],
			"comparisons": [
				comparison("race", "A", 0.84, 0.0, -0.04, 0.04, 1.0),
				comparison("race", "B", 0.83, 0.01, -0.03, 0.045, 0.62),
				comparison("sex", "F", 0.838, 0.004, -0.03, 0.038, 1.0),
			],
		},
		"approvals": {
			"present": true, "valid": true, "authenticated": true, "errors": [],
			"records": [qa_review, cso_approval],
		},
		"model_signature": {
			"present": true, "valid": true, "authenticated": true, "errors": [],
			"path": "model.sig", "digest": evidence_files["model.sig"],
			"verified": true, "reason": null,
			"signer_id": "ml-platform-ci", "signer_name": "ML platform CI", "identity_source": "key",
			"identity": "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a",
			"key_id": "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a", "certificate": null,
			"key_status": "valid", "key_revoked_at": null, "key_revoked_at_ns": null, "key_revocation_reason": null,
			"signed_at": null, "signed_at_ns": null,
			"subject_digest": model_digest,
			"mismatches": {"missing": [], "extra": [], "changed": []},
		},
		"provenance": provenance,
	},
}

# The provenance facts of the reference release (only the fields the rules read;
# docs/input-document.md lists every field `mlgate evidence collect` records).
training_commit := "4f0c2a61d9b7e3c85a1f6e2d0b9c8a7f6e5d4c3b"

provenance := {
	"present": true, "valid": true, "authenticated": false, "errors": [],
	"git": {"present": true, "dirty": false, "training_commit": training_commit, "training_commit_in_repo": true},
	"datasets": [
		{"name": "train", "sha256": "116f54c41d0405dbb10e7b04ebc31e262a5b8c85c1233fcf36eaee344d91ae58"},
		{"name": "eval", "sha256": "1bbd174404efbce95f1af489ef93f4aa0f4d55718f24c3504682216afa7b7fb1"},
	],
}

# The same release gated for staging: one approval, signed for staging.
good_staging_input := json.patch(good_input, [
	{"op": "replace", "path": "/environment", "value": "staging"},
	{"op": "replace", "path": "/evidence/approvals/records", "value": [object.union(cso_approval, {"environment": "staging"})]},
])

# Evidence block for an evidence kind the manifest does not name.
absent := {"present": false, "valid": false, "authenticated": false, "errors": []}

absent_list := object.union(absent, {"records": []})

human_roles := ["nurse", "physician", "clinician", "radiologist"]

# The thresholds the rule tests run against (a fixed copy of the shipped ones).
environments := {
	"production": {
		"bias": {"metrics": ["recall"], "delta": 0.05, "alpha": 0.05, "n_min": 30, "non_inferiority": true},
		"approvals": {
			"required": [
				{"role": "quality-assurance", "meaning": "review"},
				{"role": "clinical-safety-officer", "meaning": "approval"},
			],
			"distinct_people": true,
			"min_disciplines": 2,
		},
		"evidence": {"max_age_days": 365},
		"model_card": {"human_roles": human_roles, "required_sections": [
			"model_details", "intended_use", "out_of_scope_use", "training_data",
			"evaluation_data", "evaluation_results", "limitations", "ethical_considerations",
		]},
		"model_signature": {"required": true},
		"data_validation": {"required": true},
		"provenance": {"required": true, "clean_tree": true, "training_commit": true, "dataset_digests": true, "independent_eval": true},
		"lineage": {"required": true, "authorized_modifications": ["PCCP-READMIT-001"]},
		"privacy": {"deidentification_required": true, "deidentification_methods": ["safe-harbor", "expert-determination"]},
	},
	"staging": {
		"bias": {"metrics": ["recall"], "delta": 0.05, "alpha": 0.05, "n_min": 30, "non_inferiority": false},
		"approvals": {
			"required": [{"role": "clinical-safety-officer", "meaning": "approval"}],
			"distinct_people": true,
			"min_disciplines": 1,
		},
		"evidence": {"max_age_days": 365},
		"model_card": {"human_roles": human_roles, "required_sections": [
			"model_details", "intended_use", "out_of_scope_use", "evaluation_results", "limitations",
		]},
		"model_signature": {"required": false},
		"data_validation": {"required": true},
		"provenance": {"required": false, "clean_tree": false, "training_commit": false, "dataset_digests": false, "independent_eval": true},
		"lineage": {"required": false, "authorized_modifications": ["PCCP-READMIT-001"]},
		"privacy": {"deidentification_required": true, "deidentification_methods": ["safe-harbor", "expert-determination"]},
	},
}

# patch(doc, ops): json.patch with "replace"/"add"/"remove" ops, for mutations.
patch(doc, ops) := json.patch(doc, ops)

# The ids of the violations (or warnings) in a set of findings.
ids(findings) := {f.id | some f in findings}

# good_input with one JSON-patch "replace" (or "add") at path.
with_value(path, value) := json.patch(good_input, [{"op": "add", "path": path, "value": value}])

# good_input with the value at path removed.
without(path) := json.patch(good_input, [{"op": "remove", "path": path}])
