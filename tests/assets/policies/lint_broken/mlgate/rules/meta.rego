package mlgate.rules.meta

import rego.v1

violation contains v if {
	input.a
	v := {"message": "no annotation, no id"}
}

# METADATA
# title: Bad id
# description: The id does not match the pattern.
# custom:
#   id: MLG-bad-1
#   severity: low
#   controls: [GMLP-2]
#   remediation: Fix it.
violation contains v if {
	input.b
	v := {"id": "MLG-bad-1", "severity": "low", "controls": ["GMLP-2"], "remediation": "Fix it.", "message": "b"}
}

# METADATA
# title: Same id twice
# description: Uses the id of keys.rego.
# custom:
#   id: MLG-KEYS-001
#   severity: urgent
#   controls: []
#   remediation: Fix it.
violation contains v if {
	input.c
	v := {"id": "MLG-KEYS-001", "severity": "urgent", "controls": [], "remediation": "Fix it.", "message": "c"}
}

# METADATA
# title: No description, unknown control, finding differs
# custom:
#   id: MLG-META-004
#   severity: high
#   controls: [GMLP-11]
#   remediation: Fix it.
warning contains v if {
	input.d
	v := {"id": "MLG-META-004", "severity": "medium", "controls": ["GMLP-11"], "remediation": "Fix it.", "message": "d"}
}
