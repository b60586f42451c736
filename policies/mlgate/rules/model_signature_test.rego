package mlgate.rules.model_signature_test

import rego.v1

import data.mlgate.rules.model_signature
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := model_signature.violation with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

test_good_signature_passes if {
	count(violations(td.good_input)) == 0
}

test_missing_signature_in_production if {
	vs := violations(td.with_value("/evidence/model_signature", td.absent))
	td.ids(vs) == {"MLG-SIG-001"}
	some v in vs
	v.message == "no model signature in the release; environment production requires a signed model"
}

test_missing_signature_allowed_in_staging if {
	inp := json.patch(td.good_staging_input, [{"op": "replace", "path": "/evidence/model_signature", "value": td.absent}])
	count(violations(inp)) == 0
}

test_required_unless_literally_false if {
	envs := json.patch(td.environments, [{"op": "remove", "path": "/staging/model_signature"}])
	inp := json.patch(td.good_staging_input, [{"op": "replace", "path": "/evidence/model_signature", "value": td.absent}])
	vs := model_signature.violation with input as inp with data.mlgate.environments as envs
	td.ids(vs) == {"MLG-SIG-001"}
}

test_invalid_signature if {
	ids(td.with_value("/evidence/model_signature/valid", false)) == {"MLG-SIG-002"}
}

test_unverified_signature if {
	inp := json.patch(td.good_input, [
		{"op": "replace", "path": "/evidence/model_signature/verified", "value": false},
		{"op": "replace", "path": "/evidence/model_signature/reason", "value": "key 96d9632f is not in the trust policy"},
	])
	vs := violations(inp)
	td.ids(vs) == {"MLG-SIG-003"}
	some v in vs
	v.message == "model signature model.sig (signer ml-platform-ci) is not verified: key 96d9632f is not in the trust policy; expected a verified signature"
}

test_unverified_signature_checked_in_staging_too if {
	inp := json.patch(td.good_staging_input, [{"op": "replace", "path": "/evidence/model_signature/verified", "value": false}])
	td.ids(violations(inp)) == {"MLG-SIG-003"}
}

test_signature_for_other_model if {
	vs := violations(td.with_value("/model/digest", td.other_digest))
	some v in vs
	v.id == "MLG-SIG-004"
	v.message == "model signature model.sig was made for model digest 9372c470eead but the release model digest is 05b3abf2579a; expected a signature over this model"
}

test_per_file_mismatches if {
	inp := td.with_value("/evidence/model_signature/mismatches", {"missing": ["model/tokenizer.json"], "extra": ["model/backdoor.bin"], "changed": ["model/weights.safetensors"]})
	vs := violations(inp)
	{v.subject | some v in vs; v.id == "MLG-SIG-005"} == {"model/tokenizer.json", "model/backdoor.bin", "model/weights.safetensors"}
	some v in vs
	v.message == "model file model/weights.safetensors differs from its signed digest (changed); expected the model files to match the signature model.sig"
}

test_missing_mismatch_report_fails_closed if {
	ids(td.without("/evidence/model_signature/mismatches")) == {"MLG-SIG-005"}
}

test_incomplete_mismatch_report_fails_closed if {
	ids(td.without("/evidence/model_signature/mismatches/changed")) == {"MLG-SIG-005"}
}
