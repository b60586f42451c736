package mlgate.rules.org_governance_test

import rego.v1

import data.mlgate.rules.org_governance

review := {"verified": true, "role": "ai-governance-board", "meaning": "review", "environment": "production"}

release(env, records) := {"environment": env, "evidence": {"approvals": {"records": records}}}

test_production_without_a_board_review_is_a_violation if {
	some v in org_governance.violation with input as release("production", [])
	v.id == "MLG-ORG-001"
	v.severity == "high"
}

test_a_verified_board_review_passes if {
	count(org_governance.violation) == 0 with input as release("production", [review])
}

test_an_unverified_review_does_not_count if {
	count(org_governance.violation) == 1 with input as release("production", [object.union(review, {"verified": false})])
}

test_a_review_for_another_environment_does_not_count if {
	count(org_governance.violation) == 1 with input as release("production", [object.union(review, {"environment": "staging"})])
}

test_another_role_does_not_count if {
	count(org_governance.violation) == 1 with input as release("production", [object.union(review, {"role": "quality-assurance"})])
}

test_staging_needs_no_board_review if {
	count(org_governance.violation) == 0 with input as release("staging", [])
}
