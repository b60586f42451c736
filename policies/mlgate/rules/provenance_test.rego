package mlgate.rules.provenance_test

import rego.v1

import data.mlgate.rules.provenance
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := provenance.violation with input as inp with data.mlgate.environments as td.environments
}

warnings(inp) := ws if {
	ws := provenance.warning with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

staging(ops) := json.patch(td.good_staging_input, ops)

train_digest := td.good_input.datasets[0].declared_digest

eval_digest := td.good_input.datasets[1].declared_digest

test_good_provenance_passes if {
	count(violations(td.good_input)) == 0
	count(warnings(td.good_input)) == 0
}

test_missing_provenance_in_production if {
	vs := violations(td.with_value("/evidence/provenance", td.absent))
	td.ids(vs) == {"MLG-PROV-001"}
	some v in vs
	v.message == "no provenance in the release; environment production requires the git, DVC and MLflow record of how the model was built"
}

test_missing_provenance_allowed_in_staging if {
	count(violations(staging([{"op": "replace", "path": "/evidence/provenance", "value": td.absent}]))) == 0
}

test_required_unless_literally_false if {
	envs := json.patch(td.environments, [{"op": "remove", "path": "/production/provenance/required"}])
	inp := td.with_value("/evidence/provenance", td.absent)
	vs := provenance.violation with input as inp with data.mlgate.environments as envs
	td.ids(vs) == {"MLG-PROV-000", "MLG-PROV-001"}
}

test_threshold_of_wrong_type if {
	envs := json.patch(td.environments, [{"op": "replace", "path": "/production/provenance/clean_tree", "value": "yes"}])
	vs := provenance.violation with input as td.good_input with data.mlgate.environments as envs
	some v in vs
	v.id == "MLG-PROV-000"
	v.subject == "provenance.clean_tree"
	v.message == "environment production threshold provenance.clean_tree is yes; expected true or false"
}

test_invalid_provenance if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/provenance/valid", "value": false},
		{"op": "replace", "path": "/evidence/provenance/errors", "value": ["mlgate.yaml: spec.provenance.dvc: dvc.lock: invalid YAML at line 3 column 1"]},
	])
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-002"}
	some v in vs
	contains(v.message, "dvc.lock: invalid YAML at line 3")
}

test_invalid_provenance_denies_in_staging_too if {
	"MLG-PROV-002" in td.ids(violations(staging([{"op": "replace", "path": "/evidence/provenance/valid", "value": false}])))
}

test_no_git_facts if {
	inp := td.with_value("/evidence/provenance/git", {"present": false, "reason": "/srv/release: not inside a git repository"})
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-003"}
	some v in vs
	contains(v.message, "(/srv/release: not inside a git repository)")
}

test_dirty_tree if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/provenance/git/dirty", "value": true},
		{"op": "add", "path": "/evidence/provenance/git/changed_count", "value": 1},
		{"op": "add", "path": "/evidence/provenance/git/untracked_count", "value": 0},
		{"op": "add", "path": "/evidence/provenance/git/changed_paths", "value": ["train.py"]},
		{"op": "add", "path": "/evidence/provenance/git/commit", "value": td.training_commit},
	])
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-004"}
	some v in vs
	v.message == "the training repository at commit 4f0c2a61d9b7 was dirty (1 changed, 0 untracked: train.py); environment production requires a clean tree"
}

test_dirty_tree_allowed_in_staging if {
	count(violations(staging([{"op": "replace", "path": "/evidence/provenance/git/dirty", "value": true}]))) == 0
}

test_missing_dirty_flag_is_dirty if {
	"MLG-PROV-004" in ids(td.without("/evidence/provenance/git/dirty"))
}

test_training_commit_missing if {
	vs := violations(td.with_value("/evidence/provenance/git/training_commit", null))
	td.ids(vs) == {"MLG-PROV-005"}
	some v in vs
	v.message == "the provenance names training commit <missing>; expected a git commit id"
}

test_training_commit_not_hex if {
	"MLG-PROV-005" in ids(td.with_value("/evidence/provenance/git/training_commit", "main"))
}

test_training_commit_not_in_repo if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/provenance/git/training_commit_in_repo", "value": false},
		{"op": "add", "path": "/evidence/provenance/git/training_commit_source", "value": "mlflow-run-tag"},
	])
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-005"}
	some v in vs
	contains(v.message, "training commit 4f0c2a61d9b7 (from mlflow-run-tag) is not a commit of the repository")
}

test_dataset_without_digest if {
	vs := violations(td.with_value("/evidence/provenance/datasets", [{"name": "train", "sha256": train_digest}]))
	td.ids(vs) == {"MLG-PROV-006"}
	{v.subject | some v in vs} == {"eval"}
}

test_md5_only_dataset_warns_and_is_not_a_digest if {
	inp := json.patch(td.good_input, [{"op": "replace", "path": "/evidence/provenance/datasets/1", "value": {"name": "eval", "md5": "0123456789abcdef0123456789abcdef", "sha256": null, "source": "dvc:data/eval.csv.dvc"}}])
	td.ids(violations(inp)) == {"MLG-PROV-006"}
	ws := warnings(inp)
	td.ids(ws) == {"MLG-PROV-010"}
	some w in ws
	w.message == "dataset eval is known only by DVC md5 0123456789ab (dvc:data/eval.csv.dvc), which is not a security digest; it was not compared"
}

test_dataset_digests_not_required_in_staging if {
	count(violations(staging([{"op": "replace", "path": "/evidence/provenance/datasets", "value": []}]))) == 0
}

test_other_role_needs_no_digest if {
	inp := json.patch(td.good_input, [{"op": "add", "path": "/datasets/-", "value": {"name": "reference_population", "uri": "s3://x/ref.csv", "declared_digest": td.other_digest, "actual_digest": null, "digest_matches": null}}])
	count(violations(inp)) == 0
}

test_digest_differs_from_validation_record if {
	inp := td.with_value("/evidence/provenance/datasets/0/sha256", td.other_digest)
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-007"}
	count(vs) == 2 # the validation record and the manifest declaration
	some v in vs
	v.message == "dataset train: the provenance records sha256 05b3abf2579a (<missing>) but validation result evidence/validation_train.json validated digest 116f54c41d04; expected the same data"
}

test_digest_mismatch_denies_in_staging_too if {
	"MLG-PROV-007" in td.ids(violations(staging([{"op": "replace", "path": "/evidence/provenance/datasets/0/sha256", "value": td.other_digest}])))
}

test_eval_equal_to_train if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/datasets/1/declared_digest", "value": train_digest},
		{"op": "replace", "path": "/datasets/1/actual_digest", "value": train_digest},
		{"op": "replace", "path": "/evidence/provenance/datasets/1/sha256", "value": train_digest},
		{"op": "replace", "path": "/evidence/data_validation/records/1/dataset/digest", "value": train_digest},
	])
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-008"}
	some v in vs
	v.message == "eval dataset eval has the same digest 116f54c41d04 as training dataset train; expected evaluation data independent of the training data"
}

test_test_set_equal_to_train_even_without_provenance if {
	inp := json.patch(td.good_staging_input, [
		{"op": "replace", "path": "/evidence/provenance", "value": td.absent},
		{"op": "add", "path": "/datasets/-", "value": {"name": "test", "uri": "data/test.csv", "declared_digest": train_digest, "actual_digest": train_digest, "digest_matches": true}},
	])
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-008"}
	{v.subject | some v in vs} == {"test"}
}

test_no_eval_dataset if {
	inp := json.patch(td.good_input, [
		{"op": "remove", "path": "/datasets/1"},
		{"op": "remove", "path": "/evidence/provenance/datasets/1"},
	])
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-009"}
	some v in vs
	v.message == "the manifest declares no eval or test dataset (datasets: train); expected both training and held-out evaluation data"
}

test_roles_from_names if {
	provenance.role("Training-2024") == "train"
	provenance.role("test_holdout") == "test"
	provenance.role("validation") == "eval"
	provenance.role("holdout") == "eval"
	provenance.role("reference") == "other"
}

# The joins by name (issue 17 part 4): with a name the provenance records twice (here
# with the same sha256: two different ones are an evaluation error, a deny), the entries
# are scanned instead of looked up, and each is compared.
test_a_name_recorded_twice_is_still_compared if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/provenance/datasets/0/sha256", "value": td.other_digest},
		{"op": "add", "path": "/evidence/provenance/datasets/-", "value": {"name": "train", "sha256": td.other_digest, "source": "second"}},
	])
	vs := violations(inp)
	td.ids(vs) == {"MLG-PROV-007"}
	{v.message | some v in vs} == {
		"dataset train: the provenance records sha256 05b3abf2579a (<missing>) but validation result evidence/validation_train.json validated digest 116f54c41d04; expected the same data",
		"dataset train: the provenance records sha256 05b3abf2579a (<missing>) but the manifest declares 116f54c41d04; expected the same data",
		"dataset train: the provenance records sha256 05b3abf2579a (second) but validation result evidence/validation_train.json validated digest 116f54c41d04; expected the same data",
		"dataset train: the provenance records sha256 05b3abf2579a (second) but the manifest declares 116f54c41d04; expected the same data",
	}
}

test_an_eval_set_equal_to_the_second_training_set if {
	inp := json.patch(td.good_input, [
		{"op": "add", "path": "/datasets/-", "value": {"name": "train-extra", "uri": "data/extra.csv", "declared_digest": td.other_digest, "actual_digest": td.other_digest, "digest_matches": true}},
		{"op": "add", "path": "/datasets/-", "value": {"name": "test", "uri": "data/test.csv", "declared_digest": td.other_digest, "actual_digest": td.other_digest, "digest_matches": true}},
		{"op": "replace", "path": "/evidence/provenance/datasets", "value": []},
	])
	vs := [v | some v in violations(inp); v.id == "MLG-PROV-008"]
	{v.message | some v in vs} == {"test dataset test has the same digest 05b3abf2579a as training dataset train-extra; expected evaluation data independent of the training data"}
}
