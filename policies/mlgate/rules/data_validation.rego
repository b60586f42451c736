# Data validation: every dataset the manifest declares must have a Great
# Expectations validation result that is linked to it (by name and declared
# digest), parses, succeeded, and is recent; and the dataset file must still
# have the digest the manifest declares (GMLP principles 3 and 5, EU AI Act
# Art. 10).
package mlgate.rules.data_validation

import rego.v1

import data.mlgate.lib

block := lib.evidence("data_validation")

records := lib.list_of(block, "records")

datasets := lib.list_of(input, "datasets")

# Validation is required unless the environment says, literally, false.
required if not lib.is_false(lib.thresholds("data_validation"), "required")

# Judge the block when it is required or when the release ships one anyway.
judged if required

judged if block.present == true

dataset_names := {d.name | some d in datasets}

linked(r, d) if {
	r.dataset.name == d.name
	r.dataset.digest == d.declared_digest
}

# METADATA
# title: Data validation missing
# description: The environment requires data validation and the release names no validation results.
# custom:
#   id: MLG-DATA-001
#   severity: high
#   controls: [GMLP-3, GMLP-5, EUAIA-10]
#   remediation: Run the Great Expectations checkpoint on every dataset and name each validation result JSON under evidence in mlgate.yaml.
#   expected: >-
#     Unless data_validation.required is false, the release carries data
#     validation results.
violation contains v if {
	required
	not block.present == true
	v := {
		"id": "MLG-DATA-001",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-5", "EUAIA-10"],
		"remediation": "Run the Great Expectations checkpoint on every dataset and name each validation result JSON under evidence in mlgate.yaml.",
		"message": sprintf("no data validation results in the release; environment %s requires a Great Expectations result for each dataset", [lib.s(input, "environment")]),
	}
}

# METADATA
# title: Data validation result invalid
# description: A validation result file (or the block as a whole) does not conform to the Great Expectations result format.
# custom:
#   id: MLG-DATA-002
#   severity: high
#   controls: [GMLP-5, EUAIA-10]
#   remediation: Use the unmodified validation result JSON written by Great Expectations 1.x; fix the errors listed in the message.
#   expected: >-
#     When the release ships data validation results, the evidence as a whole
#     and every validation result in it conform to the Great Expectations result
#     format.
violation contains v if {
	block.present == true
	not block.valid == true
	count([r | some r in records; not r.valid == true]) == 0
	v := {
		"id": "MLG-DATA-002",
		"severity": "high",
		"controls": ["GMLP-5", "EUAIA-10"],
		"remediation": "Use the unmodified validation result JSON written by Great Expectations 1.x; fix the errors listed in the message.",
		"message": sprintf("data validation evidence does not conform to its format (errors: %s); expected valid Great Expectations results", [lib.join(lib.list_of(block, "errors"))]),
	}
}

violation contains v if {
	block.present == true
	some r in records
	not r.valid == true
	v := {
		"id": "MLG-DATA-002",
		"severity": "high",
		"controls": ["GMLP-5", "EUAIA-10"],
		"remediation": "Use the unmodified validation result JSON written by Great Expectations 1.x; fix the errors listed in the message.",
		"message": sprintf("validation result %s does not conform to the Great Expectations result format (errors: %s); expected a valid result", [lib.s(r, "path"), lib.join(lib.list_of(r, "errors"))]),
		"subject": lib.s(r, "path"),
	}
}

# METADATA
# title: Dataset without validation
# description: >-
#   A dataset the manifest declares has no valid validation result linked to it
#   by name and declared digest.
# custom:
#   id: MLG-DATA-003
#   severity: high
#   controls: [GMLP-3, GMLP-5, EUAIA-10]
#   remediation: Validate the named dataset with Great Expectations (batch named after the dataset, with its digest) and add the result to the evidence.
#   expected: >-
#     When data_validation.required is not false, or the release ships
#     validation results anyway, every declared dataset has at least one valid
#     validation result linked to it by dataset name and declared digest.
violation contains v if {
	judged
	some d in datasets
	count([r | some r in records; r.valid == true; linked(r, d)]) == 0
	v := {
		"id": "MLG-DATA-003",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-5", "EUAIA-10"],
		"remediation": "Validate the named dataset with Great Expectations (batch named after the dataset, with its digest) and add the result to the evidence.",
		"message": sprintf("dataset %s (declared digest %s) has no valid validation result linked to it; expected one Great Expectations result for it (%d results in the release)", [lib.s(d, "name"), lib.short(d, "declared_digest"), count(records)]),
		"subject": lib.s(d, "name"),
	}
}

# METADATA
# title: Validation result failed
# description: A validation result in the release (linked to a dataset or not) does not report success true (one or more expectations failed, or the result is unreadable).
# custom:
#   id: MLG-DATA-004
#   severity: high
#   controls: [GMLP-3, GMLP-5, EUAIA-10]
#   remediation: Fix the data (or, after review, the expectation suite) and validate again; the message names the failed expectations.
#   expected: >-
#     When data_validation.required is not false, or the release ships
#     validation results anyway, every validation result in the release (linked
#     to a dataset or not) reports success.
violation contains v if {
	judged
	some r in records
	not r.success == true
	failed := [sprintf("%s on %s (%s unexpected)", [lib.s(f, "type"), lib.s(f, "column"), lib.s(f, "unexpected_count")]) | some f in lib.list_of(r, "failed_expectations")]
	v := {
		"id": "MLG-DATA-004",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-5", "EUAIA-10"],
		"remediation": "Fix the data (or, after review, the expectation suite) and validate again; the message names the failed expectations.",
		"message": sprintf("validation result %s (suite %s) did not succeed: %s of %s expectations failed (%s); expected success", [lib.s(r, "path"), lib.s(r, "suite_name"), lib.s(r, "unsuccessful"), lib.s(r, "evaluated"), lib.join(failed)]),
		"subject": lib.s(r, "path"),
	}
}

# A validation result (an object) that names its dataset (an object). Negated as a rule:
# object.get on a record that is not an object raises on OPA and reads as undefined on the
# compiled engine.
# A validation result's time, null when it has none or is not an object (object.get on a
# non-object raises on OPA and reads as undefined on the compiled engine).
validated_at(r) := x if {
	is_object(r)
	x := object.get(r, "validated_at_ns", null)
} else := null

names_dataset(r) if {
	is_object(r)
	is_object(r.dataset)
}

# METADATA
# title: Validation result not linked to a declared dataset
# description: >-
#   A validation result names no dataset, names one the manifest does not
#   declare, or names a declared dataset with a different digest (it validated
#   another version of the data).
# custom:
#   id: MLG-DATA-005
#   severity: medium
#   controls: [GMLP-5, EUAIA-10]
#   remediation: Validate the dataset version the manifest declares, or remove the stray result from the evidence.
#   expected: >-
#     When data_validation.required is not false, or the release ships
#     validation results anyway, every validation result names a dataset the
#     manifest declares, with the same name and declared digest.
violation contains v if {
	judged
	some r in records
	not names_dataset(r)
	v := {
		"id": "MLG-DATA-005",
		"severity": "medium",
		"controls": ["GMLP-5", "EUAIA-10"],
		"remediation": "Validate the dataset version the manifest declares, or remove the stray result from the evidence.",
		"message": sprintf("validation result %s is not linked to any dataset; expected a link to one of the declared datasets (%s)", [lib.s(r, "path"), lib.join(sort(dataset_names))]),
		"subject": lib.s(r, "path"),
	}
}

violation contains v if {
	judged
	some r in records
	names_dataset(r)
	count([d | some d in datasets; linked(r, d)]) == 0
	v := {
		"id": "MLG-DATA-005",
		"severity": "medium",
		"controls": ["GMLP-5", "EUAIA-10"],
		"remediation": "Validate the dataset version the manifest declares, or remove the stray result from the evidence.",
		"message": sprintf("validation result %s validated dataset %s with digest %s, which the manifest does not declare; expected one of: %s", [lib.s(r, "path"), lib.s(r.dataset, "name"), lib.short(r.dataset, "digest"), lib.join([sprintf("%s %s", [lib.s(d, "name"), lib.short(d, "declared_digest")]) | some d in datasets])]),
		"subject": lib.s(r, "path"),
	}
}

# The digest of a dataset cannot be checked when its uri is remote: the reader
# then writes digest_matches null and actual_digest null (a warning below).
uncheckable(d) if {
	is_object(d) # object.get raises on a non-object in OPA (regorus reads it as undefined)
	object.get(d, "digest_matches", false) == null
	object.get(d, "actual_digest", false) == null
}

# What was found at a dataset's uri: its digest, or nothing (a local file that is missing).
found(d) := sprintf("has digest %s", [lib.short(d, "actual_digest")]) if {
	is_object(d)
	is_string(object.get(d, "actual_digest", null))
} else := "is missing"

# METADATA
# title: Dataset file differs from its declared digest
# description: >-
#   The local dataset file's digest is not the digest the manifest declares:
#   the data changed after it was declared (and validated).
# custom:
#   id: MLG-DATA-006
#   severity: critical
#   controls: [GMLP-3, EUAIA-10, 21CFR11.10(c)]
#   remediation: Restore the declared dataset, or declare the new digest and validate the new data again.
#   expected: >-
#     In every environment, each declared dataset has a file whose digest is the
#     one the manifest declares; only a dataset whose digest could not be
#     checked at all (a remote uri, MLG-DATA-009) is exempt.
violation contains v if {
	some d in datasets
	not d.digest_matches == true
	not uncheckable(d)
	v := {
		"id": "MLG-DATA-006",
		"severity": "critical",
		"controls": ["GMLP-3", "EUAIA-10", "21CFR11.10(c)"],
		"remediation": "Restore the declared dataset, or declare the new digest and validate the new data again.",
		"message": sprintf("dataset %s file %s %s but the manifest declares %s; expected the declared digest", [lib.s(d, "name"), lib.s(d, "uri"), found(d), lib.short(d, "declared_digest")]),
		"subject": lib.s(d, "name"),
	}
}

# METADATA
# title: Validation result too old
# description: >-
#   A validation result is older than evidence.max_age_days, is dated after the
#   evaluation, or has no time.
# custom:
#   id: MLG-DATA-007
#   severity: medium
#   controls: [GMLP-5, EUAIA-10]
#   remediation: Validate the dataset again and replace the old result.
#   expected: >-
#     When data_validation.required is not false, or the release ships
#     validation results anyway, every validation result has a validation time
#     that is not after the evaluation time and is at most evidence.max_age_days
#     old.
violation contains v if {
	judged
	some r in records
	t := validated_at(r)
	not lib.fresh(t)
	v := {
		"id": "MLG-DATA-007",
		"severity": "medium",
		"controls": ["GMLP-5", "EUAIA-10"],
		"remediation": "Validate the dataset again and replace the old result.",
		"message": sprintf("validation result %s (validated_at %s) %s; expected at most %s old", [lib.s(r, "path"), lib.s(r, "validated_at"), lib.age_text(t), lib.max_age_text]),
		"subject": lib.s(r, "path"),
	}
}

# METADATA
# title: No datasets declared
# description: >-
#   Data validation is required but the manifest declares no dataset, so there
#   is nothing the validation results could be shown to cover.
# custom:
#   id: MLG-DATA-008
#   severity: high
#   controls: [GMLP-3, EUAIA-10]
#   remediation: Declare the training and evaluation datasets (name, uri, digest) under spec.datasets in mlgate.yaml.
#   expected: >-
#     Unless data_validation.required is false, the manifest declares at least
#     one dataset.
violation contains v if {
	required
	count(datasets) == 0
	v := {
		"id": "MLG-DATA-008",
		"severity": "high",
		"controls": ["GMLP-3", "EUAIA-10"],
		"remediation": "Declare the training and evaluation datasets (name, uri, digest) under spec.datasets in mlgate.yaml.",
		"message": sprintf("the manifest declares no datasets; environment %s requires validated, declared datasets", [lib.s(input, "environment")]),
	}
}

# METADATA
# title: Dataset digest not checkable
# description: >-
#   Warning only: the dataset uri is not a local file, so mlgate could not check
#   the file against the declared digest.
# custom:
#   id: MLG-DATA-009
#   severity: low
#   controls: [GMLP-3, EUAIA-10]
#   remediation: Ship the dataset (or a local copy) with the release, or verify the remote object's digest in the pipeline that fetches it.
#   expected: >-
#     Every declared dataset is a local file, so that mlgate can check it
#     against its declared digest.
warning contains w if {
	some d in datasets
	uncheckable(d)
	w := {
		"id": "MLG-DATA-009",
		"severity": "low",
		"controls": ["GMLP-3", "EUAIA-10"],
		"remediation": "Ship the dataset (or a local copy) with the release, or verify the remote object's digest in the pipeline that fetches it.",
		"message": sprintf("dataset %s at %s is not a local file; its digest %s was not checked", [lib.s(d, "name"), lib.s(d, "uri"), lib.short(d, "declared_digest")]),
		"subject": lib.s(d, "name"),
	}
}
