package mlgate.rules.keys

import rego.v1

import data.mlgate.lib

limits := lib.cfg("limits")

# METADATA
# title: Too many things
# description: Reads limits.max (missing in staging) and nolimits.max (missing everywhere).
# custom:
#   id: MLG-KEYS-001
#   severity: low
#   controls: [GMLP-2]
#   remediation: Fewer things.
violation contains v if {
	count(input.things) > lib.get(limits, "max")
	count(input.things) > lib.cfg("nolimits").max
	some item in limits.items
	item.name == "x"
	v := {"id": "MLG-KEYS-001", "severity": "low", "controls": ["GMLP-2"], "remediation": "Fewer things.", "message": "too many"}
}
