# Provenance: where the release came from (git, DVC, MLflow), as recorded by
# `mlgate evidence collect` in the manifest's spec.provenance. Production
# requires a clean working tree, a training commit found in the repository,
# a sha256 for every train/eval/test dataset that matches the digest its data
# validation records name, and evaluation data independent of the training
# data (GMLP principle 4). The DVC md5 is a content address, never compared.
package mlgate.rules.provenance

import rego.v1

import data.mlgate.lib

block := lib.evidence("provenance")

t := lib.thresholds("provenance")

git := object.get(block, "git", {})

prov_datasets := lib.list_of(block, "datasets")

datasets := lib.list_of(input, "datasets")

records := lib.list_of(lib.evidence("data_validation"), "records")

present if block.present == true

# Every threshold is required unless it says, literally, false.
required if not t.required == false

clean_tree if not t.clean_tree == false

training_commit if not t.training_commit == false

dataset_digests if not t.dataset_digests == false

independent_eval if not t.independent_eval == false

needs_git if clean_tree

needs_git if training_commit

threshold_keys := ["required", "clean_tree", "training_commit", "dataset_digests", "independent_eval"]

# A dataset's role comes from its name, as `mlgate evidence collect` assigns it.
# A name that is not a string has no role (and no lower() error: OPA raises one, the
# compiled engine reads it as undefined).
role(name) := "other" if {
	not is_string(name)
} else := "train" if {
	startswith(lower(name), "train")
} else := "test" if {
	startswith(lower(name), "test")
} else := "eval" if {
	some prefix in ["eval", "val", "holdout", "hold-out"]
	startswith(lower(name), prefix)
} else := "other"

judged_roles := {"train", "eval", "test"}

hex_commit(x) if {
	is_string(x)
	regex.match(`^[0-9a-f]{40}([0-9a-f]{24})?$`, x)
}

# The provenance entries that record a sha256, and their names. When every
# name is recorded once (the normal case) an entry is found by lookup, so the
# joins below stay linear in the number of datasets; with a name recorded
# twice, by scanning, as before.
prov_with_sha := [p | some p in prov_datasets; is_string(p.sha256)]

prov_names := {p.name | some p in prov_with_sha}

unique_prov_names if count(prov_names) == count(prov_with_sha)

prov_by_name := {p.name: p | some p in prov_with_sha} if unique_prov_names

# The provenance entries (with a sha256) for a dataset name.
prov_entries(name) := [p] if {
	unique_prov_names
	p := prov_by_name[name]
}

prov_entries(name) := [p | some p in prov_with_sha; p.name == name] if not unique_prov_names

# The sha256 the provenance records for a dataset (undefined when none).
prov_sha256(name) := p.sha256 if {
	some p in prov_entries(name)
}

# Every digest known for a dataset: declared in the manifest, or recorded by provenance.
digests(d) := {x | some x in [object.get(d, "declared_digest", null), object.get(d, "actual_digest", null)]; is_string(x)} | {x | x := prov_sha256(d.name); is_string(x)}

# METADATA
# title: Provenance thresholds incomplete
# description: >-
#   The environment's provenance thresholds are missing or not booleans, so
#   the provenance checks cannot be configured as reviewed.
# custom:
#   id: MLG-PROV-000
#   severity: critical
#   controls: [21CFR11.10(a)]
#   remediation: Add the provenance block (required, clean_tree, training_commit, dataset_digests, independent_eval; each true or false) to policies/mlgate/environments/<env>/data.json.
#   expected: >-
#     The environment's data file sets provenance.required,
#     provenance.clean_tree, provenance.training_commit,
#     provenance.dataset_digests and provenance.independent_eval, each to true
#     or false.
violation contains v if {
	is_object(lib.env)
	some key in threshold_keys
	not is_boolean(object.get(t, key, null))
	v := {
		"id": "MLG-PROV-000",
		"severity": "critical",
		"controls": ["21CFR11.10(a)"],
		"remediation": "Add the provenance block (required, clean_tree, training_commit, dataset_digests, independent_eval; each true or false) to policies/mlgate/environments/<env>/data.json.",
		"message": sprintf("environment %s threshold provenance.%s is %s; expected true or false", [lib.s(input, "environment"), key, lib.s(t, key)]),
		"subject": sprintf("provenance.%s", [key]),
	}
}

# METADATA
# title: Provenance missing
# description: The environment requires provenance and the manifest has no spec.provenance block.
# custom:
#   id: MLG-PROV-001
#   severity: high
#   controls: [GMLP-2, EUAIA-10, EUAIA-12]
#   remediation: Run `mlgate evidence collect RELEASE` in the training repository (with --mlflow-model when the model is registered in MLflow) and commit the updated mlgate.yaml.
#   expected: >-
#     Unless provenance.required is false, the release carries provenance.
violation contains v if {
	required
	not present
	v := {
		"id": "MLG-PROV-001",
		"severity": "high",
		"controls": ["GMLP-2", "EUAIA-10", "EUAIA-12"],
		"remediation": "Run `mlgate evidence collect RELEASE` in the training repository (with --mlflow-model when the model is registered in MLflow) and commit the updated mlgate.yaml.",
		"message": sprintf("no provenance in the release; environment %s requires the git, DVC and MLflow record of how the model was built", [lib.s(input, "environment")]),
	}
}

# METADATA
# title: Provenance invalid
# description: >-
#   The provenance block was read with errors: a DVC file that does not parse,
#   a local file whose md5 no longer matches DVC's record, a dataset the
#   manifest does not declare, or no collection time.
# custom:
#   id: MLG-PROV-002
#   severity: high
#   controls: [EUAIA-10, EUAIA-12, 21CFR11.10(a)]
#   remediation: Fix the errors listed in the message (repair dvc.lock, re-run `dvc repro` or `dvc add`), then run `mlgate evidence collect` again.
#   expected: >-
#     When the release carries provenance, it was read without errors.
violation contains v if {
	present
	not block.valid == true
	v := {
		"id": "MLG-PROV-002",
		"severity": "high",
		"controls": ["EUAIA-10", "EUAIA-12", "21CFR11.10(a)"],
		"remediation": "Fix the errors listed in the message (repair dvc.lock, re-run `dvc repro` or `dvc add`), then run `mlgate evidence collect` again.",
		"message": sprintf("the provenance block is not valid (errors: %s); expected provenance read without errors", [lib.join(lib.list_of(block, "errors"))]),
	}
}

# METADATA
# title: Git provenance missing
# description: >-
#   The environment requires a clean tree or a training commit, and the
#   provenance records no git facts (the release was not collected inside a
#   git repository).
# custom:
#   id: MLG-PROV-003
#   severity: high
#   controls: [GMLP-2, EUAIA-12]
#   remediation: Run `mlgate evidence collect` inside the git repository of the training code (or pass --repo).
#   expected: >-
#     When the release carries provenance and provenance.clean_tree or
#     provenance.training_commit is not false, the provenance records git facts
#     about the training repository.
violation contains v if {
	present
	needs_git
	not git.present == true
	v := {
		"id": "MLG-PROV-003",
		"severity": "high",
		"controls": ["GMLP-2", "EUAIA-12"],
		"remediation": "Run `mlgate evidence collect` inside the git repository of the training code (or pass --repo).",
		"message": sprintf("the provenance has no git facts (%s); environment %s requires the training code's commit and a clean tree", [lib.s(git, "reason"), lib.s(input, "environment")]),
	}
}

# METADATA
# title: Working tree not clean
# description: >-
#   The training repository had uncommitted or untracked changes when the
#   provenance was collected: the recorded commit is not the code that ran.
# custom:
#   id: MLG-PROV-004
#   severity: high
#   controls: [GMLP-2, EUAIA-12]
#   remediation: Commit (or remove) the changes, retrain from the committed code, and collect the provenance again.
#   expected: >-
#     When the release carries provenance with git facts and
#     provenance.clean_tree is not false, the training repository had no changed
#     or untracked files when the provenance was collected.
violation contains v if {
	present
	clean_tree
	git.present == true
	not git.dirty == false
	v := {
		"id": "MLG-PROV-004",
		"severity": "high",
		"controls": ["GMLP-2", "EUAIA-12"],
		"remediation": "Commit (or remove) the changes, retrain from the committed code, and collect the provenance again.",
		"message": sprintf("the training repository at commit %s was dirty (%s changed, %s untracked: %s); environment %s requires a clean tree", [lib.short(git, "commit"), lib.s(git, "changed_count"), lib.s(git, "untracked_count"), lib.join(lib.list_of(git, "changed_paths")), lib.s(input, "environment")]),
	}
}

# METADATA
# title: Training commit missing or unknown
# description: >-
#   The provenance names no commit of the training code, or names one that
#   is not in the repository it was collected from.
# custom:
#   id: MLG-PROV-005
#   severity: high
#   controls: [GMLP-2, EUAIA-12]
#   remediation: Train from a committed revision (MLflow records it as mlflow.source.git.commit) and collect the provenance in that repository.
#   expected: >-
#     When the release carries provenance with git facts and
#     provenance.training_commit is not false, it names a training commit as a
#     full lowercase hex git commit id (40 or 64 digits) that is a commit of the
#     repository it was collected in.
violation contains v if {
	present
	training_commit
	git.present == true
	not hex_commit(object.get(git, "training_commit", null))
	v := {
		"id": "MLG-PROV-005",
		"severity": "high",
		"controls": ["GMLP-2", "EUAIA-12"],
		"remediation": "Train from a committed revision (MLflow records it as mlflow.source.git.commit) and collect the provenance in that repository.",
		"message": sprintf("the provenance names training commit %s; expected a git commit id", [lib.s(git, "training_commit")]),
	}
}

violation contains v if {
	present
	training_commit
	git.present == true
	hex_commit(object.get(git, "training_commit", null))
	not git.training_commit_in_repo == true
	v := {
		"id": "MLG-PROV-005",
		"severity": "high",
		"controls": ["GMLP-2", "EUAIA-12"],
		"remediation": "Train from a committed revision (MLflow records it as mlflow.source.git.commit) and collect the provenance in that repository.",
		"message": sprintf("training commit %s (from %s) is not a commit of the repository at %s; expected the training code's commit in the repository", [lib.short(git, "training_commit"), lib.s(git, "training_commit_source"), lib.short(git, "commit")]),
	}
}

# METADATA
# title: Dataset without provenance digest
# description: >-
#   A train, eval or test dataset has no sha256 in the provenance: DVC does not
#   track it, or only its md5 is known because the file was not present
#   locally when the provenance was collected.
# custom:
#   id: MLG-PROV-006
#   severity: high
#   controls: [GMLP-4, EUAIA-10]
#   remediation: Track the dataset with DVC (`dvc add` or as a pipeline dependency) and run `mlgate evidence collect` where the data files are checked out (`dvc pull`).
#   expected: >-
#     When the release carries provenance and provenance.dataset_digests is not
#     false, every declared train, eval or test dataset (a name starting with
#     train, test, eval, val, holdout or hold-out) has a sha256 in the
#     provenance.
violation contains v if {
	present
	dataset_digests
	some d in datasets
	role(d.name) in judged_roles
	not prov_sha256(d.name)
	v := {
		"id": "MLG-PROV-006",
		"severity": "high",
		"controls": ["GMLP-4", "EUAIA-10"],
		"remediation": "Track the dataset with DVC (`dvc add` or as a pipeline dependency) and run `mlgate evidence collect` where the data files are checked out (`dvc pull`).",
		"message": sprintf("dataset %s (%s) has no sha256 in the provenance; expected the digest of the tracked file", [lib.s(d, "name"), role(d.name)]),
		"subject": lib.s(d, "name"),
	}
}

# METADATA
# title: Provenance digest differs from the validated data
# description: >-
#   The sha256 the provenance records for a dataset differs from the digest the
#   manifest declares or that a data validation record names: the data that
#   was trained or evaluated is not the data that was validated.
# custom:
#   id: MLG-PROV-007
#   severity: critical
#   controls: [GMLP-3, GMLP-5, EUAIA-10, 21CFR11.10(a)]
#   remediation: Validate and declare the dataset version the pipeline used (the digest in the message), or retrain on the validated data.
#   expected: >-
#     When the release carries provenance, every sha256 it records for a dataset
#     equals the digest the manifest declares for that dataset and the digest
#     every data validation result for that dataset name validated.
violation contains v if {
	present
	some r in records
	some p in prov_entries(r.dataset.name)
	r.dataset.digest != p.sha256
	v := {
		"id": "MLG-PROV-007",
		"severity": "critical",
		"controls": ["GMLP-3", "GMLP-5", "EUAIA-10", "21CFR11.10(a)"],
		"remediation": "Validate and declare the dataset version the pipeline used (the digest in the message), or retrain on the validated data.",
		"message": sprintf("dataset %s: the provenance records sha256 %s (%s) but validation result %s validated digest %s; expected the same data", [lib.s(p, "name"), lib.short(p, "sha256"), lib.s(p, "source"), lib.s(r, "path"), lib.short(r.dataset, "digest")]),
		"subject": lib.s(p, "name"),
	}
}

violation contains v if {
	present
	some d in datasets
	some p in prov_entries(d.name)
	d.declared_digest != p.sha256
	v := {
		"id": "MLG-PROV-007",
		"severity": "critical",
		"controls": ["GMLP-3", "GMLP-5", "EUAIA-10", "21CFR11.10(a)"],
		"remediation": "Validate and declare the dataset version the pipeline used (the digest in the message), or retrain on the validated data.",
		"message": sprintf("dataset %s: the provenance records sha256 %s (%s) but the manifest declares %s; expected the same data", [lib.s(p, "name"), lib.short(p, "sha256"), lib.s(p, "source"), lib.short(d, "declared_digest")]),
		"subject": lib.s(p, "name"),
	}
}

# Each dataset's role and digests by its index, computed once (the pairs below
# read them; digests only for the roles judged here, as before).
roles := {i: role(d.name) | some i, d in datasets}

digests_at := {i: digests(d) | some i, d in datasets; roles[i] in judged_roles}

# Every digest of a training dataset: an eval or test dataset that shares none
# is independent without looking at the training datasets one by one.
# (keys, not `some i, r in roles`: rego-cpp reads the comma in a set comprehension as a set literal's)
train_digests := {x | some i in object.keys(roles); roles[i] == "train"; some x in digests_at[i]}

# METADATA
# title: Evaluation data not independent of training data
# description: >-
#   An eval or test dataset has the same digest as a training dataset (GMLP
#   principle 4: training data sets are independent of test sets).
# custom:
#   id: MLG-PROV-008
#   severity: critical
#   controls: [GMLP-4, EUAIA-10]
#   remediation: Evaluate on a held-out dataset that is disjoint from the training data, validate it, and declare its digest.
#   expected: >-
#     Unless provenance.independent_eval is false, no eval or test dataset
#     shares a digest (declared, actual or recorded in the provenance) with a
#     training dataset.
violation contains v if {
	independent_eval
	some i, e in datasets
	roles[i] in {"eval", "test"}
	count(digests_at[i] & train_digests) > 0
	some j, tr in datasets
	roles[j] == "train"
	shared := digests_at[i] & digests_at[j]
	count(shared) > 0
	v := {
		"id": "MLG-PROV-008",
		"severity": "critical",
		"controls": ["GMLP-4", "EUAIA-10"],
		"remediation": "Evaluate on a held-out dataset that is disjoint from the training data, validate it, and declare its digest.",
		"message": sprintf("%s dataset %s has the same digest %s as training dataset %s; expected evaluation data independent of the training data", [role(e.name), lib.s(e, "name"), substring(sort(shared)[0], 0, 12), lib.s(tr, "name")]),
		"subject": lib.s(e, "name"),
	}
}

# METADATA
# title: No train and evaluation datasets to show independence
# description: >-
#   Independence of the evaluation data is required, but the manifest does not
#   declare both a training dataset and an eval or test dataset.
# custom:
#   id: MLG-PROV-009
#   severity: medium
#   controls: [GMLP-4, EUAIA-10]
#   remediation: Declare the training dataset and the held-out evaluation (or test) dataset under spec.datasets (names starting with train, eval or test).
#   expected: >-
#     When the release carries provenance and provenance.independent_eval is not
#     false, the manifest declares at least one training dataset and at least
#     one eval or test dataset (by name prefix).
violation contains v if {
	independent_eval
	present
	some wanted in [{"train"}, {"eval", "test"}]
	count([d | some d in datasets; role(d.name) in wanted]) == 0
	v := {
		"id": "MLG-PROV-009",
		"severity": "medium",
		"controls": ["GMLP-4", "EUAIA-10"],
		"remediation": "Declare the training dataset and the held-out evaluation (or test) dataset under spec.datasets (names starting with train, eval or test).",
		"message": sprintf("the manifest declares no %s dataset (datasets: %s); expected both training and held-out evaluation data", [trim_prefix(concat(" or ", sort(wanted)), ""), lib.join([lib.s(d, "name") | some d in datasets])]),
	}
}

# METADATA
# title: Dataset known only by its DVC md5
# description: >-
#   Warning only: the provenance has DVC's md5 for a dataset but no sha256;
#   md5 is a content address, not a security digest, so it was not compared.
# custom:
#   id: MLG-PROV-010
#   severity: low
#   controls: [EUAIA-10]
#   remediation: Run `mlgate evidence collect` where the data files are present (`dvc pull`), so their sha256 is recorded.
#   expected: >-
#     When the release carries provenance, every dataset it knows by a DVC md5
#     also has a sha256.
warning contains w if {
	present
	some p in prov_datasets
	is_object(p)
	is_string(object.get(p, "md5", null))
	not is_string(object.get(p, "sha256", null))
	w := {
		"id": "MLG-PROV-010",
		"severity": "low",
		"controls": ["EUAIA-10"],
		"remediation": "Run `mlgate evidence collect` where the data files are present (`dvc pull`), so their sha256 is recorded.",
		"message": sprintf("dataset %s is known only by DVC md5 %s (%s), which is not a security digest; it was not compared", [lib.s(p, "name"), lib.short(p, "md5"), lib.s(p, "source")]),
		"subject": lib.s(p, "name"),
	}
}
