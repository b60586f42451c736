package mlgate.rules.footgun

import rego.v1

# A boolean where a set of messages was meant: conftest and mlgate read a set.
deny if {
	input.kind == "Deployment"
	not input.approved
}
