package mlgate.rules.privacy_test

import rego.v1

import data.mlgate.rules.privacy
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := privacy.violation with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

test_good_input_passes if {
	count(violations(td.good_input)) == 0
}

test_declaration_missing if {
	vs := violations(td.without("/privacy"))
	td.ids(vs) == {"MLG-PRIV-001"}
	some v in vs
	v.message == "de-identification method <missing>, statement <missing>; environment production requires both"
}

test_statement_missing if {
	ids(td.without("/privacy/deidentification/statement")) == {"MLG-PRIV-001"}
}

test_not_required_when_environment_says_false if {
	envs := json.patch(td.environments, [{"op": "replace", "path": "/production/privacy/deidentification_required", "value": false}])
	count(privacy.violation) == 0 with input as td.without("/privacy") with data.mlgate.environments as envs
}

test_method_not_accepted if {
	vs := violations(td.with_value("/privacy/deidentification/method", "pseudonymised"))
	td.ids(vs) == {"MLG-PRIV-002"}
	some v in vs
	v.message == "de-identification method is pseudonymised; expected one of safe-harbor, expert-determination"
}
