package mlgate.rules.config_test

import rego.v1

import data.mlgate.rules.config
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := config.violation with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

test_good_input_passes if {
	count(violations(td.good_input)) == 0
}

test_good_staging_input_passes if {
	count(violations(td.good_staging_input)) == 0
}

test_unknown_environment if {
	vs := violations(td.with_value("/environment", "prod"))
	some v in vs
	v.id == "MLG-CFG-001"
	v.message == "environment prod has no thresholds in the policy library; expected one of: production, staging"
}

test_missing_environment if {
	"MLG-CFG-001" in ids(td.without("/environment"))
}

test_wrong_api_version if {
	"MLG-CFG-002" in ids(td.with_value("/apiVersion", "mlgate.dev/input/v2"))
}

test_missing_api_version if {
	"MLG-CFG-002" in ids(td.without("/apiVersion"))
}

test_missing_evaluation_time if {
	"MLG-CFG-003" in ids(td.without("/evaluated_at_ns"))
}

test_string_evaluation_time if {
	"MLG-CFG-003" in ids(td.with_value("/evaluated_at_ns", "1795946400000000000"))
}

test_missing_model_digest if {
	"MLG-CFG-004" in ids(td.without("/model/digest"))
}

test_empty_model_digest if {
	"MLG-CFG-004" in ids(td.with_value("/model/digest", ""))
}

test_incomplete_thresholds if {
	envs := json.patch(td.environments, [{"op": "remove", "path": "/production/bias/delta"}])
	vs := config.violation with input as td.good_input with data.mlgate.environments as envs
	some v in vs
	v.id == "MLG-CFG-005"
	v.subject == "bias.delta"
	v.message == "environment production threshold bias.delta is null; expected a number"
}

test_wrongly_typed_threshold if {
	envs := json.patch(td.environments, [{"op": "replace", "path": "/production/model_signature/required", "value": "yes"}])
	vs := config.violation with input as td.good_input with data.mlgate.environments as envs
	{v.subject | some v in vs; v.id == "MLG-CFG-005"} == {"model_signature.required"}
}

test_empty_required_approvals if {
	envs := json.patch(td.environments, [{"op": "replace", "path": "/production/approvals/required", "value": []}])
	vs := config.violation with input as td.good_input with data.mlgate.environments as envs
	{v.subject | some v in vs; v.id == "MLG-CFG-005"} == {"approvals.required"}
}

test_empty_input_fires_all_config_rules if {
	ids({}) == {"MLG-CFG-001", "MLG-CFG-002", "MLG-CFG-003", "MLG-CFG-004", "MLG-CFG-006"}
}

test_evidence_not_an_object if {
	vs := violations(td.with_value("/evidence", ["model_card"]))
	some v in vs
	v.id == "MLG-CFG-006"
	v.message == "input evidence is array; expected an object of evidence blocks"
}

test_missing_evidence if {
	vs := violations(td.without("/evidence"))
	some v in vs
	v.id == "MLG-CFG-006"
	v.message == "input evidence is null; expected an object of evidence blocks"
}

test_evidence_block_not_an_object if {
	vs := violations(td.with_value("/evidence/model_signature", null))
	some v in vs
	v.id == "MLG-CFG-006"
	v.subject == "evidence.model_signature"
	v.message == "input evidence.model_signature is null; expected an evidence block (an object)"
}

test_every_malformed_block_is_named if {
	inp := td.with_value("/evidence/bias_audit", "present")
	subjects := {v.subject | some v in violations(inp); v.id == "MLG-CFG-006"}
	subjects == {"evidence.bias_audit"}
	count([v | some v in violations(inp); v.id == "MLG-CFG-006"]) == 1
}

# An environment that does not require a model signature reads a missing block as
# "not signed" and passes it; a block that is not an object is refused instead.
test_malformed_unrequired_block_denies_the_decision if {
	inp := object.union(td.good_staging_input, {"evidence": object.union(td.good_staging_input.evidence, {"model_signature": null})})
	d := data.mlgate.decision with input as inp with data.mlgate.environments as td.environments
	d.allow == false
	"MLG-CFG-006" in {v.id | some v in d.violations}
}
