package mlgate.rules.bias_test

import rego.v1

import data.mlgate.rules.bias
import data.mlgate.testdata as td

violations(inp) := vs if {
	vs := bias.violation with input as inp with data.mlgate.environments as td.environments
}

warnings(inp) := ws if {
	ws := bias.warning with input as inp with data.mlgate.environments as td.environments
}

ids(inp) := td.ids(violations(inp))

# race=C: recall 0.625 vs 0.84 for the rest
group_c := {"attribute": "race", "group": "C", "n": 400, "positives": 120, "tp": 75, "fn": 45, "successes": 75, "trials": 120, "value": 0.625, "ci_low": 0.54, "ci_high": 0.70, "insufficient": false}

comparison_c := {
	"attribute": "race", "group": "C", "reference_group": "rest", "value": 0.625, "reference_value": 0.84,
	"gap": 0.215, "gap_ci_low": 0.12, "gap_ci_high": 0.30, "p_value": 0.000001, "p_holm": 0.00002, "insufficient": false,
}

with_c(comparison) := with_group_and_comparison(group_c, comparison)

with_group_and_comparison(g, c) := json.patch(td.good_input, [
	{"op": "add", "path": "/evidence/bias_audit/groups/-", "value": g},
	{"op": "add", "path": "/evidence/bias_audit/comparisons/-", "value": c},
])

# race=C compared with no gap at all
harmless_c := object.union(comparison_c, {"value": 0.84, "gap": 0.0, "gap_ci_low": -0.04, "gap_ci_high": 0.04, "p_holm": 1.0})

test_good_audit_passes if {
	count(violations(td.good_input)) == 0
	count(warnings(td.good_input)) == 0
}

test_missing_audit if {
	vs := violations(td.with_value("/evidence/bias_audit", td.absent))
	{v.id | some v in vs} == {"MLG-BIAS-001"}
	some v in vs
	v.message == "no bias audit in the release; environment production requires a subgroup audit of recall"
}

test_invalid_audit if {
	{"MLG-BIAS-003"} == ids(td.with_value("/evidence/bias_audit/valid", false))
}

test_significant_gap if {
	vs := violations(with_c(comparison_c))
	"MLG-BIAS-002" in td.ids(vs)
	some v in vs
	v.id == "MLG-BIAS-002"
	v.subject == "race=C"
	v.message == "recall for race=C is 0.625 vs 0.84 for rest (gap 0.215, 95% CI 0.12 to 0.3; p_holm 2.00e-05 < alpha 0.05; gap >= delta 0.05); expected a gap below delta or no significant difference"
}

test_gap_at_delta_and_significant_fails if {
	c := object.union(comparison_c, {"gap": 0.05, "gap_ci_high": 0.04})
	"MLG-BIAS-002" in ids(with_c(c))
}

test_small_gap_passes_significance if {
	c := object.union(comparison_c, {"gap": 0.049, "gap_ci_high": 0.049, "value": 0.791})
	count(violations(with_c(c))) == 0
}

test_large_not_significant_gap_warns_in_staging if {
	c := object.union(comparison_c, {"p_holm": 0.2})
	inp := json.patch(with_c(c), [{"op": "replace", "path": "/environment", "value": "staging"}])
	count(violations(inp)) == 0
	{w.id | some w in warnings(inp)} == {"MLG-BIAS-011"}
}

test_large_not_significant_gap_fails_non_inferiority_in_production if {
	c := object.union(comparison_c, {"p_holm": 0.2})
	ids(with_c(c)) == {"MLG-BIAS-006"}
}

test_missing_gap_fails_closed if {
	c := object.remove(comparison_c, ["gap", "p_holm"])
	"MLG-BIAS-002" in ids(with_c(c))
}

test_null_gap_ci_fails_closed if {
	c := object.union(comparison_c, {"gap": 0.0, "p_holm": 1.0, "gap_ci_high": null})
	ids(with_c(c)) == {"MLG-BIAS-003", "MLG-BIAS-006"}
}

test_non_inferiority_message if {
	c := object.union(comparison_c, {"gap": 0.02, "gap_ci_low": -0.01, "gap_ci_high": 0.061, "p_holm": 0.4})
	vs := violations(with_c(c))
	{v.id | some v in vs} == {"MLG-BIAS-006"}
	some v in vs
	v.message == "recall for race=C: gap 0.02 has 95% CI upper bound 0.061 >= delta 0.05; environment production requires non-inferiority (upper bound < delta)"
}

test_non_inferiority_not_required_in_staging if {
	c := object.union(comparison_c, {"gap": 0.02, "gap_ci_low": -0.01, "gap_ci_high": 0.061, "p_holm": 0.4})
	inp := json.patch(with_c(c), [{"op": "replace", "path": "/environment", "value": "staging"}])
	count(violations(inp)) == 0
}

test_audit_for_other_model if {
	vs := violations(td.with_value("/evidence/bias_audit/subject_digest", td.other_digest))
	{v.id | some v in vs} == {"MLG-BIAS-004"}
	some v in vs
	v.message == "bias audit evidence/bias_audit.json was made for model digest 05b3abf2579a but the release model is 9372c470eead; expected an audit of this model"
}

test_audit_without_subject_digest if {
	"MLG-BIAS-004" in ids(td.without("/evidence/bias_audit/subject_digest"))
}

test_group_below_n_min if {
	g := object.union(group_c, {"positives": 29, "tp": 20, "fn": 9, "successes": 20, "trials": 29})
	inp := with_group_and_comparison(g, harmless_c)
	vs := violations(inp)
	{v.id | some v in vs} == {"MLG-BIAS-005"}
	some v in vs
	v.message == "group race=C has 29 positives (audit marks insufficient: false); expected at least n_min 30 to judge recall"
}

test_group_at_n_min_passes if {
	g := object.union(group_c, {"positives": 30, "tp": 25, "fn": 5, "successes": 25, "trials": 30})
	count(violations(with_group_and_comparison(g, harmless_c))) == 0
}

test_group_marked_insufficient if {
	g := object.union(group_c, {"insufficient": true})
	"MLG-BIAS-005" in ids(with_group_and_comparison(g, harmless_c))
}

test_group_without_insufficient_flag_fails_closed if {
	g := object.remove(group_c, ["insufficient"])
	"MLG-BIAS-005" in ids(with_group_and_comparison(g, harmless_c))
}

test_comparison_marked_insufficient if {
	c := object.union(comparison_c, {"insufficient": true, "gap_ci_high": null, "p_holm": null})
	ids(with_c(c)) == {"MLG-BIAS-005"}
}

test_stricter_n_min_from_environment if {
	envs := json.patch(td.environments, [{"op": "replace", "path": "/production/bias/n_min", "value": 250}])
	vs := bias.violation with input as td.good_input with data.mlgate.environments as envs
	{v.subject | some v in vs; v.id == "MLG-BIAS-005"} == {"race=B"}
}

test_stale_audit if {
	inp := td.with_value("/evidence/bias_audit/created_at_ns", td.evaluated_at_ns - (366 * td.day_ns))
	ids(inp) == {"MLG-BIAS-007"}
}

test_audit_without_time if {
	"MLG-BIAS-007" in ids(td.without("/evidence/bias_audit/created_at_ns"))
}

test_wrong_metric if {
	vs := violations(td.with_value("/evidence/bias_audit/metric", "precision"))
	some v in vs
	v.id == "MLG-BIAS-008"
	v.message == "bias audit evidence/bias_audit.json measures precision; environment production requires an audit of recall"
}

test_second_required_metric_not_audited if {
	envs := json.patch(td.environments, [{"op": "replace", "path": "/production/bias/metrics", "value": ["recall", "false_positive_rate"]}])
	vs := bias.violation with input as td.good_input with data.mlgate.environments as envs
	{v.subject | some v in vs; v.id == "MLG-BIAS-008"} == {"false_positive_rate"}
}

test_no_comparisons if {
	ids(td.with_value("/evidence/bias_audit/comparisons", [])) == {"MLG-BIAS-009", "MLG-BIAS-012"}
}

test_low_confidence if {
	ids(td.with_value("/evidence/bias_audit/confidence", 0.8)) == {"MLG-BIAS-010"}
}

test_missing_confidence if {
	"MLG-BIAS-010" in ids(td.without("/evidence/bias_audit/confidence"))
}

test_comparison_without_group_entry if {
	inp := td.with_value("/evidence/bias_audit/comparisons/-", object.union(comparison_c, {"gap": 0.0, "gap_ci_high": 0.01, "p_holm": 1.0}))
	vs := violations(inp)
	{v.id | some v in vs} == {"MLG-BIAS-005"}
	some v in vs
	v.message == "comparison of race=C with rest has no group entry with its counts; expected the group's n and positives to check n_min 30"
}

test_groups_missing_fails_closed if {
	{"MLG-BIAS-005"} == ids(td.without("/evidence/bias_audit/groups"))
}

test_group_without_comparison if {
	ids(td.with_value("/evidence/bias_audit/groups/-", group_c)) == {"MLG-BIAS-012"}
}

# With a named reference (`--reference C`), the reference group is listed with
# its counts but compared with nothing: it is the baseline, not an unjudged group.
test_named_reference_group_needs_no_comparison_of_its_own if {
	inp := json.patch(td.good_input, [
		{"op": "add", "path": "/evidence/bias_audit/groups/-", "value": group_c},
		{"op": "replace", "path": "/evidence/bias_audit/comparisons/0/reference_group", "value": "C"},
	])
	not "MLG-BIAS-012" in ids(inp)
}

test_reference_of_another_attribute_does_not_count if {
	other := object.union(group_c, {"attribute": "sex"})
	inp := json.patch(td.good_input, [
		{"op": "add", "path": "/evidence/bias_audit/groups/-", "value": other},
		{"op": "replace", "path": "/evidence/bias_audit/comparisons/0/reference_group", "value": "C"},
	])
	"MLG-BIAS-012" in ids(inp)
}

test_comparison_missing_numbers if {
	inp := td.without("/evidence/bias_audit/comparisons/0/p_holm")
	vs := violations(inp)
	{v.id | some v in vs} == {"MLG-BIAS-003"}
	some v in vs
	v.message == "bias audit evidence/bias_audit.json comparison race=A has no number for p_holm; expected value, reference_value, gap, gap_ci_low, gap_ci_high, p_holm"
}

# --- required sensitive attributes (issue 14) ----------------------------------

requiring(list) := json.patch(td.environments, [{"op": "add", "path": "/production/bias/required_attributes", "value": list}])

violations_requiring(inp, list) := vs if {
	envs := requiring(list)
	vs := bias.violation with input as inp with data.mlgate.environments as envs
}

test_audit_covering_the_required_attributes_passes if {
	count(violations_requiring(td.good_input, [["race", "ethnicity"], "sex"])) == 0
}

test_missing_required_attribute_denies_naming_it if {
	vs := violations_requiring(td.good_input, ["age_band"])
	td.ids(vs) == {"MLG-BIAS-013"}
	some v in vs
	v.message == "bias audit evidence/bias_audit.json covers race, sex, but environment production requires age_band; expected groups of that attribute in the audit"
}

test_one_of_alternatives_suffices if {
	count(violations_requiring(td.good_input, [["ethnicity", "RACE"]])) == 0
	td.ids(violations_requiring(td.good_input, [["ethnicity", "ancestry"]])) == {"MLG-BIAS-013"}
}

# --- the model card's factors (issue 14) ----------------------------------------

card_requiring(flag) := json.patch(td.environments, [{"op": "add", "path": "/production/bias/require_card_factors", "value": flag}])

with_factors(factors) := json.patch(td.good_input, [{"op": "add", "path": "/evidence/model_card/factors", "value": factors}])

test_card_factor_not_audited_denies_naming_it if {
	envs := card_requiring(true)
	vs := bias.violation with input as with_factors(["race", "insurance"]) with data.mlgate.environments as envs
	td.ids(vs) == {"MLG-BIAS-014"}
	some v in vs
	v.message == "the model card names factor insurance, but bias audit evidence/bias_audit.json covers only race, sex; expected groups of every attribute the card names"
}

test_card_factors_covered_pass if {
	envs := card_requiring(true)
	count(bias.violation) == 0 with input as with_factors(["race", "sex"]) with data.mlgate.environments as envs
}

test_card_factors_not_required_where_the_tier_says_so if {
	envs := card_requiring(false)
	count(bias.violation) == 0 with input as with_factors(["insurance"]) with data.mlgate.environments as envs
}
