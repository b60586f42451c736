package mlgate.rules.lifecycle_test

import rego.v1

import data.mlgate.rules.lifecycle
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := lifecycle.violation with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

test_good_input_passes if {
	count(violations(td.good_input)) == 0
	count(violations(td.good_staging_input)) == 0
}

# --- 11.10(b) ---

test_evidence_digest_not_recorded if {
	vs := violations(td.with_value("/evidence/bias_audit/digest", td.other_digest))
	td.ids(vs) == {"MLG-REC-001"}
	some v in vs
	v.subject == "evidence/bias_audit.json"
	v.message == "bias_audit record evidence/bias_audit.json has digest 05b3abf2579a, evidence_files records fa4824e83746; expected the record's file and the same sha256 in both"
}

test_validation_record_without_path if {
	ids(td.without("/evidence/data_validation/records/0/path")) == {"MLG-REC-001"}
}

test_evidence_files_missing if {
	ids(td.without("/evidence_files")) == {"MLG-REC-001"}
}

# --- 11.10(f) ---

test_bias_audit_before_validation if {
	vs := violations(td.with_value("/evidence/bias_audit/created_at_ns", 1790000000000000000))
	"MLG-SEQ-001" in td.ids(vs)
	some v in vs
	v.id == "MLG-SEQ-001"
	v.subject == "evidence/validation_train.json"
}

test_approval_before_bias_audit if {
	inp := td.with_value("/evidence/approvals/records/0/signed_at_ns", 1793534000000000000)
	vs := violations(inp)
	td.ids(vs) == {"MLG-SEQ-002"}
	some v in vs
	v.subject == td.good_input.evidence.approvals.records[0].path
}

test_approval_for_other_model_left_to_appr_010 if {
	inp := td.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/approvals/records/0/signed_at_ns", "value": 1793534000000000000},
		{"op": "replace", "path": "/evidence/approvals/records/0/subject_digest", "value": td.other_digest},
	])
	count(violations(inp)) == 0
}

# --- GMLP 10 / PCCP ---

retrain := {
	"kind": "retrain",
	"predecessor": {"version": "1.3.0", "model_digest": td.other_digest},
	"pccp_modification": "PCCP-READMIT-001",
}

test_authorised_retrain_passes if {
	count(violations(td.with_value("/lineage", retrain))) == 0
}

test_lineage_required_in_production if {
	vs := violations(td.without("/lineage"))
	td.ids(vs) == {"MLG-PCCP-001"}
	some v in vs
	v.message == "lineage.kind is <missing>; environment production requires initial or retrain"
}

test_lineage_not_required_in_staging if {
	count(violations(json.patch(td.good_staging_input, [{"op": "remove", "path": "/lineage"}]))) == 0
}

test_unknown_lineage_kind if {
	ids(td.with_value("/lineage/kind", "fine-tune")) == {"MLG-PCCP-001"}
}

test_retrain_without_predecessor if {
	ids(td.with_value("/lineage", object.remove(retrain, ["predecessor"]))) == {"MLG-PCCP-002"}
}

test_retrain_names_itself_as_predecessor if {
	vs := violations(td.with_value("/lineage", object.union(retrain, {"predecessor": {"version": "1.3.0", "model_digest": td.model_digest}})))
	td.ids(vs) == {"MLG-PCCP-002"}
	some v in vs
	v.message == "re-trained release names predecessor version 1.3.0, model digest 9372c470eead (this model: 9372c470eead); expected the replaced version and a different model digest"
}

test_retrain_with_unauthorised_modification if {
	vs := violations(td.with_value("/lineage", object.union(retrain, {"pccp_modification": "PCCP-OTHER-009"})))
	td.ids(vs) == {"MLG-PCCP-003"}
	some v in vs
	v.message == "re-trained release cites PCCP modification PCCP-OTHER-009; expected one of PCCP-READMIT-001"
}

test_retrain_without_modification if {
	ids(td.with_value("/lineage", object.remove(retrain, ["pccp_modification"]))) == {"MLG-PCCP-003"}
}
