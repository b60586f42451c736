# An organisation's own rule, layered on the mlgate library without forking it (README: "For
# compliance officers: your organisation's own rules"). A package mlgate.rules.org_<name> counts
# in data.mlgate.decision as soon as it is loaded beside the library: no edit to decision.rego.
package mlgate.rules.org_governance

import rego.v1

env := data.mlgate.environments[input.environment]

board_reviewed if {
	some r in input.evidence.approvals.records
	r.verified == true
	r.role == "ai-governance-board"
	r.meaning == "review"
	r.environment == input.environment
}

# METADATA
# title: AI governance board review missing
# description: The environment requires a review by the organisation's AI governance board (policy AIG-4) and the release ships no verified review for it.
# custom:
#   id: MLG-ORG-001
#   severity: high
#   controls: [GMLP-1]
#   remediation: Have the AI governance board review the release and sign it (mlgate approve --role ai-governance-board --meaning review).
#   expected: A verified approval by role ai-governance-board with meaning review, for this environment.
violation contains v if {
	env.org_governance.board_review == true
	not board_reviewed
	v := {
		"id": "MLG-ORG-001",
		"severity": "high",
		"controls": ["GMLP-1"],
		"remediation": "Have the AI governance board review the release and sign it (mlgate approve --role ai-governance-board --meaning review).",
		"message": sprintf("environment %s requires a review by the AI governance board; no verified review for it is shipped", [input.environment]),
	}
}
