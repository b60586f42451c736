package mlgate.rules.data_validation_test

import rego.v1

import data.mlgate.rules.data_validation
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := data_validation.violation with input as inp with data.mlgate.environments as td.environments
}

warnings(inp) := ws if {
	ws := data_validation.warning with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

test_good_validation_passes if {
	count(violations(td.good_input)) == 0
	count(warnings(td.good_input)) == 0
}

test_missing_validation if {
	"MLG-DATA-001" in ids(td.with_value("/evidence/data_validation", td.absent_list))
}

test_missing_validation_names_each_dataset if {
	vs := violations(td.with_value("/evidence/data_validation", td.absent_list))
	{v.subject | some v in vs; v.id == "MLG-DATA-003"} == {"train", "eval"}
}

test_not_required_and_absent_passes if {
	envs := json.patch(td.environments, [{"op": "replace", "path": "/production/data_validation/required", "value": false}])
	inp := td.with_value("/evidence/data_validation", td.absent_list)
	count(data_validation.violation) == 0 with input as inp with data.mlgate.environments as envs
}

test_required_unless_literally_false if {
	envs := json.patch(td.environments, [{"op": "remove", "path": "/production/data_validation"}])
	inp := td.with_value("/evidence/data_validation", td.absent_list)
	vs := data_validation.violation with input as inp with data.mlgate.environments as envs
	"MLG-DATA-001" in td.ids(vs)
}

test_invalid_block if {
	vs := violations(td.with_value("/evidence/data_validation/valid", false))
	{v.id | some v in vs} == {"MLG-DATA-002"}
}

test_invalid_record if {
	inp := td.with_value("/evidence/data_validation/records/0/valid", false)
	vs := violations(json.patch(inp, [{"op": "replace", "path": "/evidence/data_validation/valid", "value": false}]))
	some v in vs
	v.id == "MLG-DATA-002"
	v.subject == "evidence/validation_train.json"

	# the invalid record does not count for its dataset either
	"MLG-DATA-003" in td.ids(vs)
}

test_dataset_without_record if {
	inp := json.patch(td.good_input, [{"op": "remove", "path": "/evidence/data_validation/records/1"}])
	vs := violations(inp)
	{v.id | some v in vs} == {"MLG-DATA-003"}
	some v in vs
	v.subject == "eval"
	v.message == "dataset eval (declared digest 1bbd174404ef) has no valid validation result linked to it; expected one Great Expectations result for it (1 results in the release)"
}

test_failed_validation if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/data_validation/records/0/success", "value": false},
		{"op": "replace", "path": "/evidence/data_validation/records/0/unsuccessful", "value": 1},
		{"op": "replace", "path": "/evidence/data_validation/records/0/failed_expectations", "value": [{"type": "expect_column_values_to_not_be_null", "column": "age", "unexpected_count": 1, "severity": "critical"}]},
	])
	vs := violations(inp)
	{v.id | some v in vs} == {"MLG-DATA-004"}
	some v in vs
	v.message == "validation result evidence/validation_train.json (suite readmission_input_suite) did not succeed: 1 of 12 expectations failed (expect_column_values_to_not_be_null on age (1 unexpected)); expected success"
}

test_missing_success_fails_closed if {
	"MLG-DATA-004" in ids(td.without("/evidence/data_validation/records/0/success"))
}

test_unlinked_record if {
	vs := violations(td.with_value("/evidence/data_validation/records/1/dataset", null))
	"MLG-DATA-005" in td.ids(vs)
	"MLG-DATA-003" in td.ids(vs)
}

test_record_for_undeclared_dataset_version if {
	vs := violations(td.with_value("/evidence/data_validation/records/1/dataset/digest", td.other_digest))
	some v in vs
	v.id == "MLG-DATA-005"
	contains(v.message, "validated dataset eval with digest 05b3abf2579a, which the manifest does not declare")
}

test_dataset_digest_mismatch if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/datasets/0/actual_digest", "value": td.other_digest},
		{"op": "replace", "path": "/datasets/0/digest_matches", "value": false},
	])
	vs := violations(inp)
	{v.id | some v in vs} == {"MLG-DATA-006"}
	some v in vs
	v.message == "dataset train file data/train.csv has digest 05b3abf2579a but the manifest declares 116f54c41d04; expected the declared digest"
}

test_dataset_digest_match_missing_fails_closed if {
	"MLG-DATA-006" in ids(td.without("/datasets/0/digest_matches"))
}

test_missing_local_dataset_denies_naming_it if {
	# The file at a local uri was deleted: no digest, and no match (not the remote case below).
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/datasets/0/actual_digest", "value": null},
		{"op": "replace", "path": "/datasets/0/digest_matches", "value": false},
	])
	vs := violations(inp)
	{v.id | some v in vs} == {"MLG-DATA-006"}
	some v in vs
	v.message == "dataset train file data/train.csv is missing but the manifest declares 116f54c41d04; expected the declared digest"
	not "MLG-DATA-009" in {w.id | some w in warnings(inp)}
}

test_remote_dataset_warns_only if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/datasets/0/uri", "value": "s3://bucket/train.csv"},
		{"op": "replace", "path": "/datasets/0/actual_digest", "value": null},
		{"op": "replace", "path": "/datasets/0/digest_matches", "value": null},
	])
	count(violations(inp)) == 0
	{w.id | some w in warnings(inp)} == {"MLG-DATA-009"}
}

test_stale_validation if {
	# 400 days before evaluation; the limit is 365
	inp := td.with_value("/evidence/data_validation/records/0/validated_at_ns", td.evaluated_at_ns - (400 * td.day_ns))
	vs := violations(inp)
	{v.id | some v in vs} == {"MLG-DATA-007"}
	some v in vs
	contains(v.message, "is 400 days old; expected at most 365 days old")
}

test_validation_at_age_limit_passes if {
	inp := td.with_value("/evidence/data_validation/records/0/validated_at_ns", td.evaluated_at_ns - (365 * td.day_ns))
	count(violations(inp)) == 0
}

test_validation_in_future if {
	inp := td.with_value("/evidence/data_validation/records/0/validated_at_ns", td.evaluated_at_ns + td.day_ns)
	"MLG-DATA-007" in ids(inp)
}

test_validation_without_time if {
	"MLG-DATA-007" in ids(td.with_value("/evidence/data_validation/records/0/validated_at_ns", null))
}

test_no_datasets_declared if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/datasets", "value": []},
		{"op": "replace", "path": "/evidence/data_validation/records", "value": []},
	])
	ids(inp) == {"MLG-DATA-008"}
}
