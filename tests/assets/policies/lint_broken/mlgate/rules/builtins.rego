package mlgate.rules.builtins

import rego.v1

# METADATA
# title: Uses a builtin regorus lacks
# description: crypto.sha256 is an OPA builtin the embedded engine does not have.
# custom:
#   id: MLG-BLT-001
#   severity: low
#   controls: [21CFR11.70]
#   remediation: Compute the digest in Python and pass it in the input.
violation contains v if {
	crypto.sha256(input.x) != input.digest
	v := {"id": "MLG-BLT-001", "severity": "low", "controls": ["21CFR11.70"], "remediation": "Compute the digest in Python and pass it in the input.", "message": "digest"}
}
