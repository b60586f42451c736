# Tests of signed waivers (waivers.rego) through the entry point, against the
# shipped production thresholds (waivers.max_days 30, roles
# [clinical-safety-officer], not_waivable MLG-APPR-/MLG-SIG-/MLG-PRIV-/MLG-REC-).
package mlgate.waivers_test

import rego.v1

import data.mlgate.testdata as td

decision_of(inp) := d if {
	d := data.mlgate.decision with input as inp
}

# The reference input with its bias audit removed: MLG-BIAS-001 (waivable in production).
no_audit := td.without("/evidence/bias_audit")

waiver(rules) := {
	"path": "evidence/waivers/jane.roe.waiver.sigstore.json",
	"digest": "0c5c5bd0f7a4b7f5e5b8a2f4d6a1c3e9b7d5f3a1c9e7b5d3f1a9c7e5b3d1f9a7",
	"verified": true,
	"reason": null,
	"signer_id": "jane.roe@hospital.example",
	"printed_name": "Dr. Jane Roe",
	"role": "clinical-safety-officer",
	"role_authorised": true,
	"environment_authorised": true,
	"environment": "production",
	"subject_digest": td.model_digest,
	"signed_at": "2026-11-28T09:00:00Z",
	"signed_at_ns": td.evaluated_at_ns - td.day_ns,
	"expires_at": "2026-12-12T09:00:00Z",
	"expires_at_ns": td.evaluated_at_ns + (13 * td.day_ns),
	"rules": rules,
	"justification": "Audit re-run scheduled; every prediction is reviewed by a clinician meanwhile (CAPA-7).",
	"ticket": "CAPA-7",
	"release_binding": "bound",
	"release_changes": [],
}

good := waiver(["MLG-BIAS-001"])

with_waivers(inp, records) := json.patch(inp, [{"op": "add", "path": "/evidence/waivers", "value": {
	"present": true, "valid": true, "authenticated": true, "errors": [], "records": records,
}}])

# A waiver that must change nothing: same allow, violations and warnings as without it.
changes_nothing(inp, w) if {
	waived := decision_of(with_waivers(inp, [w]))
	without := decision_of(inp)
	waived.allow == without.allow
	waived.violations == without.violations
	waived.warnings == without.warnings
	waived.waivers[0].applied == false
	waived.waivers[0].waived == []
}

reason(inp, w) := decision_of(with_waivers(inp, [w])).waivers[0].reason

test_no_waiver_no_report if {
	decision_of(td.good_input).waivers == []
}

test_waiver_turns_the_violation_into_a_warning if {
	decision_of(no_audit).allow == false
	d := decision_of(with_waivers(no_audit, [good]))
	d.allow == true
	d.violations == []
	some w in d.warnings
	w.id == "MLG-BIAS-001"
	w.severity == "high"
	startswith(w.message, "WAIVED by Dr. Jane Roe (clinical-safety-officer) until 2026-12-12T09:00:00Z [evidence/waivers/jane.roe.waiver.sigstore.json]: ")
	w.waiver.signer_id == "jane.roe@hospital.example"
	w.waiver.justification == good.justification
	d.waivers == [{
		"path": good.path, "rules": ["MLG-BIAS-001"], "signer_id": "jane.roe@hospital.example",
		"printed_name": "Dr. Jane Roe", "role": "clinical-safety-officer", "expires_at": "2026-12-12T09:00:00Z",
		"justification": good.justification, "applied": true, "waived": ["MLG-BIAS-001"], "reason": null,
	}]
}

test_waiver_covers_only_the_named_rules if {
	inp := json.patch(no_audit, [{"op": "remove", "path": "/evidence/model_card"}])
	d := decision_of(with_waivers(inp, [good]))
	d.allow == false
	{v.id | some v in d.violations} == {v.id | some v in decision_of(inp).violations} - {"MLG-BIAS-001"}
	"MLG-CARD-001" in {v.id | some v in d.violations}
}

test_expired_waiver_changes_nothing if {
	w := json.patch(good, [{"op": "replace", "path": "/expires_at_ns", "value": td.evaluated_at_ns}])
	changes_nothing(no_audit, w)
	startswith(reason(no_audit, w), "expired at ")
}

test_waiver_by_an_ended_credential_with_claimed_time_changes_nothing if {
	w := json.patch(good, [
		{"op": "add", "path": "/key_valid_until", "value": "2026-11-28T12:00:00Z"},
		{"op": "add", "path": "/key_valid_until_ns", "value": td.evaluated_at_ns - td.day_ns},
	])
	changes_nothing(no_audit, w)
	contains(reason(no_audit, w), "valid only until 2026-11-28T12:00:00Z, and its signing time is the signer's claim (no trusted timestamp)")
}

test_waiver_by_a_credential_valid_until_later_applies if {
	w := json.patch(good, [{"op": "add", "path": "/key_valid_until_ns", "value": td.evaluated_at_ns + td.day_ns}])
	decision_of(with_waivers(no_audit, [w])).allow == true
}

test_waiver_signed_after_evaluation_changes_nothing if {
	w := json.patch(good, [{"op": "replace", "path": "/signed_at_ns", "value": td.evaluated_at_ns + 1}])
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "signed after the evaluation time"
}

test_unsigned_waiver_changes_nothing if {
	w := json.patch(good, [
		{"op": "replace", "path": "/verified", "value": false},
		{"op": "replace", "path": "/reason", "value": "w.json: no signature"},
	])
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "not verified: w.json: no signature"
}

test_wrong_digest_waiver_changes_nothing if {
	w := json.patch(good, [{"op": "replace", "path": "/subject_digest", "value": td.other_digest}])
	changes_nothing(no_audit, w)
	startswith(reason(no_audit, w), "waives model 05b3abf2579a, not this model 9372c470eead")
}

test_wrong_rule_waiver_changes_nothing if {
	w := waiver(["MLG-CARD-001"])
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "names no rule that reported a violation"
}

test_waiver_for_another_environment_changes_nothing if {
	w := json.patch(good, [{"op": "replace", "path": "/environment", "value": "staging"}])
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "is for environment staging, not production"
}

test_waiver_longer_than_max_days_changes_nothing if {
	w := json.patch(good, [{"op": "replace", "path": "/expires_at_ns", "value": good.signed_at_ns + (31 * td.day_ns)}])
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "valid for 31 days, more than waivers.max_days 30"
}

test_waiver_of_exactly_max_days_applies if {
	w := json.patch(good, [{"op": "replace", "path": "/expires_at_ns", "value": good.signed_at_ns + (30 * td.day_ns)}])
	decision_of(with_waivers(no_audit, [w])).allow == true
}

test_role_that_may_not_accept_risk_changes_nothing if {
	w := json.patch(good, [{"op": "replace", "path": "/role", "value": "quality-assurance"}])
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "role quality-assurance may not accept risk in production (waivers.roles: clinical-safety-officer)"
}

test_role_not_authorised_by_the_trust_policy_changes_nothing if {
	w := json.patch(good, [{"op": "replace", "path": "/role_authorised", "value": false}])
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "the trust policy does not give jane.roe@hospital.example the role clinical-safety-officer"
}

test_signer_not_allowed_in_the_environment_changes_nothing if {
	w := json.patch(good, [{"op": "replace", "path": "/environment_authorised", "value": false}])
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "the trust policy does not let jane.roe@hospital.example act in production"
}

test_not_waivable_rule_stays_a_violation if {
	inp := td.without("/evidence/model_signature")
	w := waiver(["MLG-SIG-001"])
	changes_nothing(inp, w)
	reason(inp, w) == "cannot waive MLG-SIG-001 in production (waivers.not_waivable)"
}

test_exact_entry_of_not_waivable_blocks_the_rule if {
	inp := with_waivers(no_audit, [good])
	d := data.mlgate.decision with input as inp with data.mlgate.environments.production.waivers.not_waivable as ["MLG-BIAS-001"]
	d.allow == false
	d.waivers[0].reason == "cannot waive MLG-BIAS-001 in production (waivers.not_waivable)"
}

test_prefix_entry_of_not_waivable_blocks_the_rule if {
	inp := with_waivers(no_audit, [good])
	d := data.mlgate.decision with input as inp with data.mlgate.environments.production.waivers.not_waivable as ["MLG-BIAS-"]
	d.allow == false
}

test_other_entries_of_not_waivable_do_not_block if {
	inp := with_waivers(no_audit, [good])
	d := data.mlgate.decision with input as inp with data.mlgate.environments.production.waivers.not_waivable as [7, "MLG-BIAS-00", "MLG-BIAS-0011"]
	d.allow == true
}

test_configuration_rules_are_never_waivable if {
	inp := with_waivers(td.good_input, [waiver(["MLG-CFG-005"])])
	d := data.mlgate.decision with input as inp with data.mlgate.environments.production.waivers.not_waivable as [] with data.mlgate.environments.production.bias.delta as "0.05"
	d.allow == false
	"MLG-CFG-005" in {v.id | some v in d.violations}
	d.waivers[0].reason == "cannot waive MLG-CFG-005 in production (waivers.not_waivable)"
}

test_environment_without_waivers_accepts_none if {
	inp := with_waivers(no_audit, [good])
	envs := {"production": {"bias": {}}}
	d := data.mlgate.decision with input as inp with data.mlgate.environments as envs
	d.allow == false
	d.waivers[0].reason == "environment production accepts no waivers (no waivers.max_days in its data)"
}

test_malformed_record_changes_nothing if {
	changes_nothing(no_audit, json.patch(good, [{"op": "replace", "path": "/rules", "value": "MLG-BIAS-001"}]))
	changes_nothing(no_audit, json.patch(good, [{"op": "replace", "path": "/verified", "value": "true"}]))
	changes_nothing(no_audit, json.patch(good, [{"op": "remove", "path": "/expires_at_ns"}]))
}

test_first_applicable_waiver_is_named if {
	second := json.patch(good, [{"op": "replace", "path": "/path", "value": "evidence/waivers/z.json"}])
	d := decision_of(with_waivers(no_audit, [good, second]))
	d.allow == true
	some w in d.warnings
	w.id == "MLG-BIAS-001"
	w.waiver.path == good.path
	[r.applied | some r in d.waivers] == [true, true]
}

# --- release binding and separation of duties (issue 14) ---------------------

test_legacy_waiver_changes_nothing if {
	w := object.remove(good, ["release_binding"])
	changes_nothing(no_audit, w)
	contains(reason(no_audit, w), "legacy waiver")
}

test_waiver_of_another_release_state_changes_nothing if {
	w := object.union(good, {"release_binding": "changed", "release_changes": ["metadata.owner: waived 'a', now 'b'"]})
	changes_nothing(no_audit, w)
	reason(no_audit, w) == "no longer matches the release: metadata.owner: waived 'a', now 'b'"
}

test_owner_cannot_waive_own_release if {
	inp := json.patch(no_audit, [{"op": "replace", "path": "/release/owner", "value": "Jane.Roe@hospital.example"}])
	changes_nothing(inp, good)
	contains(reason(inp, good), "the release owner")
}

test_model_signer_cannot_waive if {
	inp := json.patch(no_audit, [{"op": "replace", "path": "/evidence/model_signature/signer_id", "value": "jane.roe@hospital.example"}])
	changes_nothing(inp, good)
	contains(reason(inp, good), "also signed the model")
}

test_trainer_cannot_waive if {
	inp := json.patch(no_audit, [{"op": "add", "path": "/evidence/provenance/mlflow", "value": {"present": true, "run_user": "jane.roe@hospital.example"}}])
	changes_nothing(inp, good)
	contains(reason(inp, good), "trained the model")
}

two_person_data := {"mlgate": {"environments": {"production": object.union(data.mlgate.environments.production, {"waivers": object.union(data.mlgate.environments.production.waivers, {"two_person": ["MLG-BIAS-"]})})}}}

test_two_person_rule_needs_two_signers if {
	d := data.mlgate.decision with input as with_waivers(no_audit, [good]) with data.mlgate.environments as two_person_data.mlgate.environments
	d.allow == false
	d.waivers[0].applied == false
	contains(d.waivers[0].reason, "two distinct people")
}

test_two_person_rule_waived_by_two_signers if {
	second := object.union(good, {"path": "evidence/waivers/lee.waiver.sigstore.json", "signer_id": "lee.chan@hospital.example", "printed_name": "Dr. Lee Chan"})
	d := data.mlgate.decision with input as with_waivers(no_audit, [good, second]) with data.mlgate.environments as two_person_data.mlgate.environments
	d.allow == true
	d.waivers[0].applied == true
}

test_trainer_login_cannot_waive if {
	inp := json.patch(no_audit, [{"op": "add", "path": "/evidence/provenance/mlflow", "value": {"present": true, "run_user": "Jane.Roe"}}])
	changes_nothing(inp, good)
	contains(reason(inp, good), "trained the model")
}

test_data_not_the_approved_data_is_not_waivable_in_production if {
	inp := json.patch(no_audit, [{"op": "replace", "path": "/datasets/0/digest_matches", "value": false}])
	d := decision_of(with_waivers(inp, [waiver(["MLG-DATA-006"])]))
	d.allow == false
	"MLG-DATA-006" in {v.id | some v in d.violations}
}
