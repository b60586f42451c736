package mlgate.rules.model_card_test

import rego.v1

import data.mlgate.rules.model_card
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := model_card.violation with input as inp with data.mlgate.environments as td.environments
}

warnings(inp) := ws if {
	ws := model_card.warning with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

test_good_card_passes if {
	count(violations(td.good_input)) == 0
	count(warnings(td.good_input)) == 0
}

test_missing_card if {
	ids(td.with_value("/evidence/model_card", td.absent)) == {"MLG-CARD-001"}
}

test_card_block_absent_from_input if {
	ids(td.without("/evidence/model_card")) == {"MLG-CARD-001"}
}

test_invalid_card if {
	inp := td.with_value("/evidence/model_card/valid", false)
	vs := violations(json.patch(inp, [{"op": "replace", "path": "/evidence/model_card/errors", "value": ["evidence/model_card.md: front matter: not YAML"]}]))
	some v in vs
	v.id == "MLG-CARD-002"
	v.message == "model card evidence/model_card.md does not conform to its format (errors: evidence/model_card.md: front matter: not YAML); expected a valid card"
}

test_required_section_missing if {
	vs := violations(td.without("/evidence/model_card/sections/training_data"))
	some v in vs
	v.id == "MLG-CARD-003"
	v.subject == "training_data"
	v.message == "model card evidence/model_card.md section training_data is missing; environment production requires it with content"
}

test_required_section_empty if {
	vs := violations(td.with_value("/evidence/model_card/sections/limitations", {"present": true, "empty": true}))
	some v in vs
	v.id == "MLG-CARD-003"
	contains(v.message, "section limitations is empty")
}

test_section_without_empty_flag_fails_closed if {
	"MLG-CARD-003" in ids(td.with_value("/evidence/model_card/sections/limitations", {"present": true}))
}

test_optional_section_may_be_missing if {
	count(violations(td.without("/evidence/model_card/sections/how_to_use"))) == 0
}

test_staging_requires_fewer_sections if {
	inp := json.patch(td.good_staging_input, [{"op": "remove", "path": "/evidence/model_card/sections/training_data"}])
	count(violations(inp)) == 0
}

test_intended_use_missing if {
	ids(td.with_value("/evidence/model_card/intended_use", null)) == {"MLG-CARD-004"}
}

test_intended_use_blank if {
	ids(td.with_value("/evidence/model_card/intended_use", "   ")) == {"MLG-CARD-004"}
}

test_out_of_scope_use_missing if {
	ids(td.without("/evidence/model_card/out_of_scope_use")) == {"MLG-CARD-005"}
}

test_placeholder if {
	vs := violations(td.with_value("/evidence/model_card/placeholders", ["Training Data"]))
	some v in vs
	v.id == "MLG-CARD-006"
	v.subject == "Training Data"
}

test_limitations_text_missing_warns if {
	inp := td.with_value("/evidence/model_card/limitations", null)
	count(violations(inp)) == 0
	{w.id | some w in warnings(inp)} == {"MLG-CARD-007"}
}

test_missing_placeholder_report_fails_closed if {
	ids(td.without("/evidence/model_card/placeholders")) == {"MLG-CARD-006"}
}

test_intended_use_without_human_role if {
	vs := violations(td.with_value("/evidence/model_card/intended_use", "Flags patients at risk of readmission."))
	td.ids(vs) == {"MLG-CARD-008"}
	some v in vs
	v.message == "model card evidence/model_card.md intended use names none of the human roles nurse, physician, clinician, radiologist; expected the person who acts on the output"
}

test_human_role_matched_case_insensitively if {
	count(violations(td.with_value("/evidence/model_card/intended_use", "Radiologists read every study."))) == 0
}
