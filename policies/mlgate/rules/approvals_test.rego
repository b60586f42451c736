package mlgate.rules.approvals_test

import rego.v1

import data.mlgate.rules.approvals
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := approvals.violation with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

# good_input with the approval records replaced
with_records(records) := td.with_value("/evidence/approvals/records", records)

qa := td.qa_review

cso := td.cso_approval

test_good_approvals_pass if {
	count(violations(td.good_input)) == 0
}

test_good_staging_approval_passes if {
	count(violations(td.good_staging_input)) == 0
}

test_no_approvals if {
	vs := violations(td.with_value("/evidence/approvals", td.absent_list))
	"MLG-APPR-001" in td.ids(vs)
	some v in vs
	v.id == "MLG-APPR-001"
	v.message == "no signed approvals in the release; environment production requires review by quality-assurance, approval by clinical-safety-officer"
}

test_approvals_block_missing if {
	"MLG-APPR-001" in ids(td.without("/evidence/approvals"))
}

test_invalid_approvals_block if {
	ids(td.with_value("/evidence/approvals/valid", false)) == {"MLG-APPR-002"}
}

test_unverified_approval if {
	bad := object.union(cso, {"verified": false, "reason": "signature does not match the key listed for jane.roe@hospital.example"})
	vs := violations(with_records([qa, bad]))
	td.ids(vs) == {"MLG-APPR-003", "MLG-APPR-004"}
	some v in vs
	v.id == "MLG-APPR-003"
	v.message == "approval evidence/approvals/jane.roe.sigstore.json by jane.roe@hospital.example is not verified: signature does not match the key listed for jane.roe@hospital.example; expected a signature that verifies against the trust policy"
}

test_missing_verified_flag_fails_closed if {
	"MLG-APPR-003" in ids(with_records([qa, object.remove(cso, ["verified"])]))
}

test_required_role_missing if {
	vs := violations(with_records([cso]))
	td.ids(vs) == {"MLG-APPR-004"}
	some v in vs
	v.subject == "review by quality-assurance"
	v.message == "environment production requires review by quality-assurance; no verified, authorised approval gives it (verified and authorised: jane.roe@hospital.example: approval by clinical-safety-officer)"
}

test_right_role_wrong_meaning if {
	vs := violations(with_records([qa, object.union(cso, {"meaning": "review"})]))
	{v.subject | some v in vs; v.id == "MLG-APPR-004"} == {"approval by clinical-safety-officer"}
}

test_unauthorised_role if {
	bad := object.union(cso, {"role_authorised": false})
	vs := violations(with_records([qa, bad]))
	td.ids(vs) == {"MLG-APPR-004", "MLG-APPR-005"}
}

test_missing_meaning_authorisation_fails_closed if {
	"MLG-APPR-005" in ids(with_records([qa, object.remove(cso, ["meaning_authorised"])]))
}

test_same_person_fills_two_roles if {
	jane_review := object.union(qa, {"path": "evidence/approvals/jane.review.sigstore.json", "signer_id": "jane.roe@hospital.example", "printed_name": "Dr. Jane Roe"})
	vs := violations(with_records([jane_review, cso]))
	td.ids(vs) == {"MLG-APPR-006", "MLG-APPR-019"}
	some v in vs
	v.message == "required signatures review by quality-assurance and approval by clinical-safety-officer are both given only by jane.roe@hospital.example; environment production requires a different person for each"
}

test_same_person_case_insensitive if {
	jane_review := object.union(qa, {"signer_id": "Jane.Roe@Hospital.Example"})
	"MLG-APPR-006" in ids(with_records([jane_review, cso]))
}

test_same_person_allowed_when_not_required_distinct if {
	envs := json.patch(td.environments, [{"op": "replace", "path": "/production/approvals/distinct_people", "value": false}])
	jane_review := object.union(qa, {"signer_id": "jane.roe@hospital.example"})
	inp := with_records([jane_review, cso])
	count(approvals.violation) == 0 with input as inp with data.mlgate.environments as envs
}

test_another_person_can_take_the_shared_role if {
	# jane signs both; john also reviews: john reviews, jane approves
	jane_review := object.union(qa, {"path": "evidence/approvals/jane.review.sigstore.json", "signer_id": "jane.roe@hospital.example", "statement_digest": "jane review"})
	count(violations(with_records([jane_review, qa, cso]))) == 0
}

test_three_roles_two_people if {
	envs := json.patch(td.environments, [{"op": "add", "path": "/production/approvals/required/-", "value": {"role": "data-protection-officer", "meaning": "responsibility"}}])
	dpo_john := object.union(qa, {"path": "evidence/approvals/john.dpo.sigstore.json", "role": "data-protection-officer", "meaning": "responsibility"})
	dpo_jane := object.union(cso, {"path": "evidence/approvals/jane.dpo.sigstore.json", "role": "data-protection-officer", "meaning": "responsibility"})
	inp := with_records([qa, cso, dpo_john, dpo_jane])
	vs := approvals.violation with input as inp with data.mlgate.environments as envs
	{v.message | some v in vs; v.id == "MLG-APPR-006"} == {"the 3 required signatures (review by quality-assurance, approval by clinical-safety-officer, responsibility by data-protection-officer) are given by only 2 people (jane.roe@hospital.example, john.smith@hospital.example); environment production requires a different person for each"}
}

test_owner_approves if {
	owner_review := object.union(qa, {"signer_id": "ml-platform@hospital.example"})
	vs := violations(with_records([owner_review, cso]))
	td.ids(vs) == {"MLG-APPR-007"}
}

test_release_without_owner if {
	"MLG-APPR-007" in ids(td.without("/release/owner"))
}

test_expired_approval if {
	expired := object.union(cso, {"expires_at": "2026-11-29T10:00:00Z", "expires_at_ns": td.evaluated_at_ns})
	vs := violations(with_records([qa, expired]))
	td.ids(vs) == {"MLG-APPR-008"}
	some v in vs
	v.message == "approval evidence/approvals/jane.roe.sigstore.json by jane.roe@hospital.example expired at 2026-11-29T10:00:00Z (expires_at_ns 1795946400000000000); expected an expiry after the evaluation time 2026-11-29T10:00:00Z"
}

test_approval_expiring_after_evaluation_passes if {
	count(violations(with_records([qa, object.union(cso, {"expires_at_ns": td.evaluated_at_ns + 1})]))) == 0
}

test_approval_without_expiry_passes if {
	count(violations(with_records([qa, object.union(cso, {"expires_at": null, "expires_at_ns": null})]))) == 0
}

test_approval_with_expiry_key_absent_fails_closed if {
	"MLG-APPR-008" in ids(with_records([qa, object.remove(cso, ["expires_at_ns"])]))
}

test_approval_signed_in_future if {
	future := object.union(cso, {"signed_at": "2026-11-30T10:00:00Z", "signed_at_ns": td.evaluated_at_ns + td.day_ns})
	ids(with_records([qa, future])) == {"MLG-APPR-009"}
}

test_approval_without_signing_time if {
	"MLG-APPR-009" in ids(with_records([qa, object.union(cso, {"signed_at_ns": null})]))
}

test_approval_for_other_model if {
	moved := object.union(cso, {"subject_digest": td.other_digest})
	vs := violations(with_records([qa, moved]))
	td.ids(vs) == {"MLG-APPR-010"}
	some v in vs
	v.message == "approval evidence/approvals/jane.roe.sigstore.json by jane.roe@hospital.example was signed for a different model digest 05b3abf2579a, but the release model digest is 9372c470eead: the model changed after approval"
}

test_model_changed_after_approval if {
	inp := td.with_value("/model/digest", td.other_digest)
	{v.subject | some v in violations(inp); v.id == "MLG-APPR-010"} == {qa.path, cso.path}
}

test_approval_for_other_environment if {
	ids(td.good_staging_input) == set()
	inp := json.patch(td.good_staging_input, [{"op": "replace", "path": "/evidence/approvals/records/0/environment", "value": "production"}])
	# the production approval is not counted for staging: the required approval is missing
	td.ids(violations(inp)) == {"MLG-APPR-004"}
	some w in data.mlgate.rules.approvals.warning with input as inp with data.mlgate.environments as td.environments
	w.id == "MLG-APPR-014"
	w.message == "approval evidence/approvals/jane.roe.sigstore.json by jane.roe@hospital.example is for environment production, not staging; not counted"
}

test_approval_for_this_environment_by_unauthorised_signer if {
	inp := json.patch(td.good_staging_input, [{"op": "replace", "path": "/evidence/approvals/records/0/environment_authorised", "value": false}])
	vs := violations(inp)
	td.ids(vs) == {"MLG-APPR-004", "MLG-APPR-005", "MLG-APPR-011"}
	some v in vs
	v.id == "MLG-APPR-011"
	v.message == "approval evidence/approvals/jane.roe.sigstore.json by jane.roe@hospital.example is for staging, but the trust policy does not authorise this signer for environment staging"
}

test_other_environment_approval_with_bad_signature_still_denies if {
	inp := json.patch(td.good_staging_input, [
		{"op": "add", "path": "/evidence/approvals/records/-", "value": object.union(td.cso_approval, {"environment": "production", "verified": false, "reason": "signature does not verify"})},
	])
	"MLG-APPR-003" in td.ids(violations(inp))
}

test_evidence_changed_since_approval if {
	inp := td.with_value("/evidence_files/evidence~1model_card.md", td.other_digest)
	vs := violations(inp)
	td.ids(vs) == {"MLG-APPR-012"}
	some v in vs
	v.subject == cso.path
	v.message == "approval evidence/approvals/jane.roe.sigstore.json by jane.roe@hospital.example covers different evidence than the release (changed since approval: evidence/model_card.md); expected the evidence digests the approver signed"
}

test_evidence_added_and_removed_since_approval if {
	inp := json.patch(td.good_input, [
		{"op": "remove", "path": "/evidence_files/evidence~1bias_audit.json"},
		{"op": "add", "path": "/evidence_files/evidence~1bias_audit_v2.json", "value": td.other_digest},
	])
	vs := violations(inp)
	some v in vs
	v.subject == qa.path
	v.message == "approval evidence/approvals/john.smith.sigstore.json by john.smith@hospital.example covers different evidence than the release (added since approval: evidence/bias_audit_v2.json; approved but no longer in the release: evidence/bias_audit.json); expected the evidence digests the approver signed"
}

test_approval_without_evidence_digests if {
	"MLG-APPR-012" in ids(with_records([qa, object.remove(cso, ["evidence_digests"])]))
}

test_input_without_evidence_files if {
	"MLG-APPR-012" in ids(td.without("/evidence_files"))
}

test_approval_without_printed_name if {
	vs := violations(with_records([qa, object.union(cso, {"printed_name": ""})]))
	td.ids(vs) == {"MLG-APPR-013"}
}

test_approvals_not_marked_present if {
	"MLG-APPR-001" in ids(td.with_value("/evidence/approvals/present", false))
}

# --------------------------------------------------------------------------
# Separation of duties, duplicates, revocation, clock skew

test_approver_signed_the_model_by_id if {
	inp := json.patch(td.good_input, [{"op": "replace", "path": "/evidence/model_signature/signer_id", "value": "Jane.Roe@hospital.example"}])
	vs := violations(inp)
	td.ids(vs) == {"MLG-APPR-015"}
	some v in vs
	v.message == "approval evidence/approvals/jane.roe.sigstore.json (Dr. Jane Roe, approval as clinical-safety-officer, signed 2026-11-20T09:30:00Z) is signed by jane.roe@hospital.example, who also signed the model (jane.roe@hospital.example); expected an approver other than the model signer"
}

test_approver_signed_the_model_by_certificate_identity if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/model_signature/identity_source", "value": "certificate"},
		{"op": "replace", "path": "/evidence/model_signature/identity", "value": "john.smith@hospital.example"},
	])
	{v.subject | some v in violations(inp); v.id == "MLG-APPR-015"} == {qa.path}
}

test_unauthenticated_model_signer_is_not_compared if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/model_signature/signer_id", "value": "jane.roe@hospital.example"},
		{"op": "replace", "path": "/evidence/model_signature/authenticated", "value": false},
	])
	not "MLG-APPR-015" in ids(inp)
}

test_same_key_id_is_not_a_shared_identity if {
	# the fixture's approvals and model signature share a key id: key ids are not people
	count(violations(td.good_input)) == 0
}

bias_author := object.union(qa, {
	"path": "evidence/approvals/ana.authorship.sigstore.json",
	"signer_id": "ana.lima@hospital.example", "printed_name": "Dr. Ana Lima",
	"role": "bias-auditor", "meaning": "authorship",
	"statement_digest": "ana authorship",
	"authored": ["evidence/bias_audit.json"],
})

test_bias_author_may_sign_authorship if {
	count(violations(with_records([qa, cso, bias_author]))) == 0
}

test_bias_author_approves if {
	ana_cso := object.union(cso, {"signer_id": "ana.lima@hospital.example", "printed_name": "Dr. Ana Lima", "statement_digest": "ana approval", "manifestation": "Dr. Ana Lima, approval as clinical-safety-officer, signed 2026-11-20T09:30:00Z"})
	vs := violations(with_records([qa, ana_cso, bias_author]))
	td.ids(vs) == {"MLG-APPR-016"}
	some v in vs
	v.message == "approval evidence/approvals/jane.roe.sigstore.json (Dr. Ana Lima, approval as clinical-safety-officer, signed 2026-11-20T09:30:00Z) is signed by ana.lima@hospital.example, an author of the bias audit evidence/bias_audit.json; expected an approver independent of the bias audit"
}

test_unverified_authorship_claim_names_nobody if {
	ana_cso := object.union(cso, {"signer_id": "ana.lima@hospital.example", "statement_digest": "ana approval"})
	forged := object.union(bias_author, {"verified": false, "reason": "bad signature"})
	not "MLG-APPR-016" in ids(with_records([qa, ana_cso, forged]))
}

test_bias_author_field_of_the_record if {
	inp := td.with_value("/evidence/bias_audit/author", "John.Smith@hospital.example")
	{v.subject | some v in violations(inp); v.id == "MLG-APPR-016"} == {qa.path}
}

test_duplicated_approval if {
	copy := object.union(cso, {"path": "evidence/approvals/jane.roe.copy.sigstore.json"})
	vs := violations(with_records([qa, cso, copy]))
	td.ids(vs) == {"MLG-APPR-017"}
	some v in vs
	v.message == "approval evidence/approvals/jane.roe.sigstore.json duplicates evidence/approvals/jane.roe.copy.sigstore.json (Dr. Jane Roe, approval as clinical-safety-officer, signed 2026-11-20T09:30:00Z): the same signed statement; each signature counts once"
}

test_duplicate_does_not_fill_a_second_role if {
	# one approval copied: still only one person, so the other required signature is missing
	copy := object.union(cso, {"path": "evidence/approvals/copy.sigstore.json"})
	ids(with_records([cso, copy])) == {"MLG-APPR-004", "MLG-APPR-017"}
}

test_revoked_after_signing_warns_and_counts if {
	later := object.union(cso, {"key_status": "revoked_after_signing", "key_revoked_at": "2026-11-25T00:00:00Z", "key_revocation_reason": "superseded"})
	inp := with_records([qa, later])
	count(violations(inp)) == 0
	ws := approvals.warning with input as inp with data.mlgate.environments as td.environments
	some w in ws
	w.id == "MLG-APPR-018"
	w.message == "approval evidence/approvals/jane.roe.sigstore.json (Dr. Jane Roe, approval as clinical-safety-officer, signed 2026-11-20T09:30:00Z) was signed with key 96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a, revoked later at 2026-11-25T00:00:00Z (superseded); counted, since it was signed before the revocation"
}

test_future_signature_message if {
	future := object.union(cso, {"signed_at": "2026-11-30T10:00:00Z", "signed_at_ns": td.evaluated_at_ns + td.day_ns})
	some v in violations(with_records([qa, future]))
	v.message == "approval evidence/approvals/jane.roe.sigstore.json by jane.roe@hospital.example has signing time 2026-11-30T10:00:00Z, which is after the evaluation time 2026-11-29T10:00:00Z; expected a signing time in the past"
}

test_signed_exactly_at_evaluation_passes if {
	count(violations(with_records([qa, object.union(cso, {"signed_at_ns": td.evaluated_at_ns})]))) == 0
}

test_manifestation_built_when_absent if {
	bare := object.remove(cso, ["manifestation"])
	copy := object.union(bare, {"path": "evidence/approvals/z.json"})
	some v in violations(with_records([qa, bare, copy]))
	v.id == "MLG-APPR-017"
	contains(v.message, "(Dr. Jane Roe, approval as clinical-safety-officer, signed 2026-11-20T09:30:00Z)")
}

test_min_disciplines_met_by_qa_and_cso if {
	not "MLG-APPR-019" in ids(with_records([qa, cso]))
}

test_one_discipline_denied_when_two_required if {
	# staging requires one approval; raise its min_disciplines to 2 and one CSO approval is not enough
	envs := json.patch(td.environments, [{"op": "replace", "path": "/staging/approvals/min_disciplines", "value": 2}])
	vs := approvals.violation with input as td.good_staging_input with data.mlgate.environments as envs
	td.ids(vs) == {"MLG-APPR-019"}
	some v in vs
	v.message == "effective approvals come from 1 role(s) (clinical-safety-officer) and 1 person(s); environment staging requires at least 2 of each"
}

test_missing_min_disciplines_fails_closed if {
	envs := json.patch(td.environments, [{"op": "remove", "path": "/production/approvals/min_disciplines"}])
	vs := approvals.violation with input as with_records([qa, cso]) with data.mlgate.environments as envs
	"MLG-APPR-019" in td.ids(vs)
}

# --- release binding (issue 14) ------------------------------------------------

test_approval_of_another_release_state_denies if {
	changed := object.union(cso, {"release_binding": "changed", "release_changes": ["metadata.name: approved 'readmission-risk', now 'sepsis-alert'"]})
	vs := violations(with_records([qa, changed]))
	td.ids(vs) == {"MLG-APPR-020"}
	some v in vs
	v.message == "approval evidence/approvals/jane.roe.sigstore.json by jane.roe@hospital.example no longer matches the release: metadata.name: approved 'readmission-risk', now 'sepsis-alert'"
}

test_legacy_approval_denies_where_not_accepted if {
	legacy := object.union(cso, {"release_binding": "legacy"})
	td.ids(violations(with_records([qa, legacy]))) == {"MLG-APPR-021"}
}

test_legacy_approval_is_a_warning_where_accepted if {
	legacy := object.union(cso, {"release_binding": "legacy"})
	accepting := json.patch(td.environments, [{"op": "add", "path": "/production/approvals/accept_unbound_identity", "value": true}])
	inp := with_records([qa, legacy])
	count(approvals.violation) == 0 with input as inp with data.mlgate.environments as accepting
	ws := approvals.warning with input as inp with data.mlgate.environments as accepting
	some w in ws
	w.id == "MLG-APPR-021"
	w.severity == "high"
}

test_unverified_approval_binding_not_judged if {
	bad := object.union(cso, {"verified": false, "reason": "x", "release_binding": null})
	not "MLG-APPR-021" in ids(with_records([qa, bad]))
	not "MLG-APPR-020" in ids(with_records([qa, bad]))
}

test_credential_ended_with_claimed_time_denies if {
	# Jane's key expired on 2026-11-25; the approval claims 2026-11-20, no trusted time.
	ended := object.union(cso, {"key_valid_until": "2026-11-25T00:00:00Z", "key_valid_until_ns": td.evaluated_at_ns - (4 * td.day_ns)})
	some v in violations(with_records([qa, ended]))
	v.id == "MLG-APPR-022"
	contains(v.message, "valid only until 2026-11-25T00:00:00Z (end of its validity period)")
	contains(v.message, "is the signer's claim, with no trusted timestamp")
}

test_credential_revoked_not_for_compromise_with_claimed_time_denies if {
	ended := object.union(cso, {"key_valid_until": "2026-11-25T00:00:00Z", "key_valid_until_ns": td.evaluated_at_ns - (4 * td.day_ns), "key_revoked_at": "2026-11-25T00:00:00Z", "key_revoked_at_ns": td.evaluated_at_ns - (4 * td.day_ns), "key_revocation_reason": "superseded"})
	some v in violations(with_records([qa, ended]))
	v.id == "MLG-APPR-022"
	contains(v.message, "(revoked, superseded)")
}

test_credential_still_valid_with_claimed_time_passes if {
	later := object.union(cso, {"key_valid_until": "2026-12-25T00:00:00Z", "key_valid_until_ns": td.evaluated_at_ns + td.day_ns})
	count(violations(with_records([qa, later]))) == 0
}

test_credential_ends_exactly_at_evaluation_denies if {
	"MLG-APPR-022" in ids(with_records([qa, object.union(cso, {"key_valid_until_ns": td.evaluated_at_ns})]))
}
