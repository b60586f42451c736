# Subgroup performance (bias) audit. The audit compares a metric (recall: a
# proportion over each group's positives) between each subgroup and the
# reference. A subgroup fails when its gap is both practically large
# (gap >= delta) and statistically significant (Holm-corrected p < alpha); in
# strict environments (non_inferiority: true) also when the upper bound of the
# gap's confidence interval reaches delta, i.e. non-inferiority within delta is
# not shown. A group with too few positives (< n_min) is insufficient evidence
# and fails closed. delta, alpha and n_min come from the environment, never
# from the audit file (GMLP principles 3 and 8, EU AI Act Art. 10 and 15).
package mlgate.rules.bias

import rego.v1

import data.mlgate.lib

audit := lib.evidence("bias_audit")

path := lib.s(audit, "path")

cfg := lib.thresholds("bias")

metric := lib.s(audit, "metric")

comparisons := lib.list_of(audit, "comparisons")

groups := lib.list_of(audit, "groups")

label(x) := sprintf("%s=%s", [lib.s(x, "attribute"), lib.s(x, "group")])

sufficient(c) if c.insufficient == false

# The comparisons the audit marks sufficient, filtered once for the rules that
# judge only those (MLG-BIAS-002, -003, -006, -011).
sufficient_comparisons := [c | some c in comparisons; c.insufficient == false]

# "95% CI" for messages
ci_label := sprintf("%v%% CI", [round(audit.confidence * 100)]) if is_number(audit.confidence)

ci_label := "CI (confidence <missing>)" if not has_confidence

has_confidence if is_number(audit.confidence)

# (positive forms, negated in the rules: see lib.env_known)
confident_enough if audit.confidence >= (1 - cfg.alpha) - 0.000000001

# The comparison passes the significance test: the gap is below delta, or the
# difference is not significant. A missing gap or p-value passes neither.
not_significant_harm(c) if {
	is_number(c.gap)
	c.gap < cfg.delta
}

not_significant_harm(c) if {
	is_number(c.p_holm)
	c.p_holm >= cfg.alpha
}

# METADATA
# title: Bias audit missing
# description: The release names no subgroup performance audit.
# custom:
#   id: MLG-BIAS-001
#   severity: high
#   controls: [GMLP-3, GMLP-8, EUAIA-10]
#   remediation: Run `mlgate evidence bias` on the held-out predictions and name the audit record under evidence in mlgate.yaml.
#   expected: >-
#     The release carries a bias audit. Every environment requires one, of the
#     metrics listed in bias.metrics.
violation contains v if {
	not audit.present == true
	v := {
		"id": "MLG-BIAS-001",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-8", "EUAIA-10"],
		"remediation": "Run `mlgate evidence bias` on the held-out predictions and name the audit record under evidence in mlgate.yaml.",
		"message": sprintf("no bias audit in the release; environment %s requires a subgroup audit of %s", [lib.s(input, "environment"), lib.join(lib.list_of(cfg, "metrics"))]),
	}
}

# METADATA
# title: Subgroup performance gap
# description: >-
#   A subgroup's metric is worse than the reference by at least delta and the
#   difference is significant (Holm-corrected p < alpha).
# custom:
#   id: MLG-BIAS-002
#   severity: high
#   controls: [GMLP-3, GMLP-8, EUAIA-10, EUAIA-15]
#   remediation: Investigate the subgroup (representation, labels, features), retrain or recalibrate, and audit again; do not raise delta to pass.
#   expected: >-
#     For every comparison the audit marks sufficient (insufficient is false),
#     the gap (reference minus subgroup) is below bias.delta or the difference
#     is not significant (Holm-corrected p >= bias.alpha).
violation contains v if {
	audit.present == true
	some c in sufficient_comparisons
	not not_significant_harm(c)
	v := {
		"id": "MLG-BIAS-002",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-8", "EUAIA-10", "EUAIA-15"],
		"remediation": "Investigate the subgroup (representation, labels, features), retrain or recalibrate, and audit again; do not raise delta to pass.",
		"message": sprintf("%s for %s is %s vs %s for %s (gap %s, %s %s to %s; p_holm %s < alpha %s; gap >= delta %s); expected a gap below delta or no significant difference", [
			metric, label(c), lib.n(c, "value"), lib.n(c, "reference_value"), lib.s(c, "reference_group"),
			lib.n(c, "gap"), ci_label, lib.n(c, "gap_ci_low"), lib.n(c, "gap_ci_high"),
			lib.p(c, "p_holm"), lib.s(cfg, "alpha"), lib.s(cfg, "delta"),
		]),
		"subject": label(c),
	}
}

# METADATA
# title: Bias audit invalid
# description: >-
#   The audit record exists but does not conform to the mlgate bias record
#   format, or a comparison lacks one of its numbers.
# custom:
#   id: MLG-BIAS-003
#   severity: high
#   controls: [GMLP-8, EUAIA-10]
#   remediation: Regenerate the audit with `mlgate evidence bias`; do not edit the record by hand.
#   expected: >-
#     The audit conforms to the mlgate bias record format, and every comparison
#     it marks sufficient carries numbers for value, reference_value, gap,
#     gap_ci_low, gap_ci_high and p_holm.
violation contains v if {
	audit.present == true
	not audit.valid == true
	v := {
		"id": "MLG-BIAS-003",
		"severity": "high",
		"controls": ["GMLP-8", "EUAIA-10"],
		"remediation": "Regenerate the audit with `mlgate evidence bias`; do not edit the record by hand.",
		"message": sprintf("bias audit %s does not conform to its format (errors: %s); expected a valid mlgate bias record", [path, lib.join(lib.list_of(audit, "errors"))]),
		"subject": path,
	}
}

# The numbers a sufficient comparison must carry.
comparison_numbers := ["value", "reference_value", "gap", "gap_ci_low", "gap_ci_high", "p_holm"]

# Every one of comparison_numbers is a number (checked field by field: the list
# is walked only for a comparison that lacks one, to name what is missing).
has_numbers(c) if {
	is_number(c.value)
	is_number(c.reference_value)
	is_number(c.gap)
	is_number(c.gap_ci_low)
	is_number(c.gap_ci_high)
	is_number(c.p_holm)
}

violation contains v if {
	audit.present == true
	some c in sufficient_comparisons
	not has_numbers(c)
	missing := [k | some k in comparison_numbers; not is_number(object.get(c, k, null))]
	count(missing) > 0
	v := {
		"id": "MLG-BIAS-003",
		"severity": "high",
		"controls": ["GMLP-8", "EUAIA-10"],
		"remediation": "Regenerate the audit with `mlgate evidence bias`; do not edit the record by hand.",
		"message": sprintf("bias audit %s comparison %s has no number for %s; expected %s", [path, label(c), lib.join(missing), lib.join(comparison_numbers)]),
		"subject": label(c),
	}
}

# METADATA
# title: Bias audit is for another model
# description: The model digest the audit names is not the digest of the model in this release.
# custom:
#   id: MLG-BIAS-004
#   severity: critical
#   controls: [GMLP-8, EUAIA-10, 21CFR11.10(c)]
#   remediation: Audit the model being released (its predictions) and replace the audit record.
#   expected: >-
#     The model digest the audit names is the digest of the model in this
#     release.
violation contains v if {
	audit.present == true
	not audit.subject_digest == lib.model_digest
	v := {
		"id": "MLG-BIAS-004",
		"severity": "critical",
		"controls": ["GMLP-8", "EUAIA-10", "21CFR11.10(c)"],
		"remediation": "Audit the model being released (its predictions) and replace the audit record.",
		"message": sprintf("bias audit %s was made for model digest %s but the release model is %s; expected an audit of this model", [path, lib.short(audit, "subject_digest"), lib.short(object.get(input, "model", {}), "digest")]),
		"subject": path,
	}
}

# Every metric is a proportion successes / trials; n_min applies to the trials:
# positives for recall, negatives for specificity, predicted positives for
# precision, members for selection rate.
denominator_names := {"recall": "positives", "specificity": "negatives", "precision": "predicted positives", "selection_rate": "members"}

denominator_name := object.get(denominator_names, metric, "trials")

insufficient_group(g) if not g.insufficient == false

insufficient_group(g) if not enough_trials(g)

# (a positive rule: `not x >= cfg.n_min` is undefined on OPA when n_min is missing)
enough_trials(g) if {
	is_object(g)
	object.get(g, "trials", null) >= cfg.n_min
}

# METADATA
# title: Insufficient evidence for a subgroup
# description: >-
#   A subgroup has fewer than n_min cases for its metric (or the audit marks it
#   insufficient), so no conclusion about it is possible. This fails closed.
# custom:
#   id: MLG-BIAS-005
#   severity: high
#   controls: [GMLP-3, GMLP-8, EUAIA-10]
#   remediation: Collect more evaluation cases for the subgroup (at least n_min) and audit again.
#   expected: >-
#     Every group the audit lists is marked sufficient and has at least
#     bias.n_min cases in its metric's denominator (positives for recall), and
#     every comparison is marked sufficient and has a group entry with its
#     counts.
violation contains v if {
	audit.present == true
	some g in groups
	insufficient_group(g)
	v := {
		"id": "MLG-BIAS-005",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-8", "EUAIA-10"],
		"remediation": "Collect more evaluation cases for the subgroup (at least n_min) and audit again.",
		"message": sprintf("group %s has %s %s (audit marks insufficient: %s); expected at least n_min %s to judge %s", [label(g), lib.s(g, "trials"), denominator_name, lib.s(g, "insufficient"), lib.s(cfg, "n_min"), metric]),
		"subject": label(g),
	}
}

violation contains v if {
	audit.present == true
	some c in comparisons
	not sufficient(c)
	v := {
		"id": "MLG-BIAS-005",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-8", "EUAIA-10"],
		"remediation": "Collect more evaluation cases for the subgroup (at least n_min) and audit again.",
		"message": sprintf("comparison of %s with %s is marked insufficient (%s); expected enough evidence to judge %s", [label(c), lib.s(c, "reference_group"), lib.s(c, "insufficient"), metric]),
		"subject": label(c),
	}
}

# Note: null < 0.05 is true in Rego (null sorts first), hence is_number.
upper_bound_below_delta(c) if {
	is_number(c.gap_ci_high)
	c.gap_ci_high < cfg.delta
}

# Joins by lookup, not by nested iteration (a decision stays linear in the
# number of comparisons): [attribute, group] of every group, of every compared
# group, and [attribute, reference_group] of every comparison.
group_keys := {[g.attribute, g.group] | some g in groups}

compared_keys := {[c.attribute, c.group] | some c in comparisons}

reference_keys := {[c.attribute, c.reference_group] | some c in comparisons}

# The comparison has a group entry (with its counts).
has_group(c) if [c.attribute, c.group] in group_keys

violation contains v if {
	audit.present == true
	some c in comparisons
	not has_group(c)
	v := {
		"id": "MLG-BIAS-005",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-8", "EUAIA-10"],
		"remediation": "Collect more evaluation cases for the subgroup (at least n_min) and audit again.",
		"message": sprintf("comparison of %s with %s has no group entry with its counts; expected the group's n and positives to check n_min %s", [label(c), lib.s(c, "reference_group"), lib.s(cfg, "n_min")]),
		"subject": label(c),
	}
}

# METADATA
# title: Non-inferiority not shown
# description: >-
#   In environments with non_inferiority true, the upper bound of the gap's
#   confidence interval must stay below delta: the subgroup must be shown to be
#   no worse than the reference by delta or more, not merely not significantly worse.
# custom:
#   id: MLG-BIAS-006
#   severity: high
#   controls: [GMLP-3, GMLP-8, EUAIA-10, EUAIA-15]
#   remediation: Collect more evaluation cases for the subgroup to narrow the interval, or improve the model for it, and audit again.
#   expected: >-
#     Unless bias.non_inferiority is false, for every comparison the audit marks
#     sufficient the upper bound of the gap's confidence interval is below
#     bias.delta.
violation contains v if {
	audit.present == true
	not cfg.non_inferiority == false
	some c in sufficient_comparisons
	not upper_bound_below_delta(c)
	v := {
		"id": "MLG-BIAS-006",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-8", "EUAIA-10", "EUAIA-15"],
		"remediation": "Collect more evaluation cases for the subgroup to narrow the interval, or improve the model for it, and audit again.",
		"message": sprintf("%s for %s: gap %s has %s upper bound %s >= delta %s; environment %s requires non-inferiority (upper bound < delta)", [
			metric, label(c), lib.n(c, "gap"), ci_label, lib.n(c, "gap_ci_high"), lib.s(cfg, "delta"), lib.s(input, "environment"),
		]),
		"subject": label(c),
	}
}

# METADATA
# title: Bias audit too old
# description: The audit is older than evidence.max_age_days, dated after the evaluation, or has no time.
# custom:
#   id: MLG-BIAS-007
#   severity: medium
#   controls: [GMLP-8, GMLP-10, EUAIA-10]
#   remediation: Audit the model again on current evaluation data.
#   expected: >-
#     The audit has a creation time that is not after the evaluation time and is
#     at most evidence.max_age_days old.
violation contains v if {
	audit.present == true
	t := object.get(audit, "created_at_ns", null)
	not lib.fresh(t)
	v := {
		"id": "MLG-BIAS-007",
		"severity": "medium",
		"controls": ["GMLP-8", "GMLP-10", "EUAIA-10"],
		"remediation": "Audit the model again on current evaluation data.",
		"message": sprintf("bias audit %s (created_at %s) %s; expected at most %s old", [path, lib.s(audit, "created_at"), lib.age_text(t), lib.max_age_text]),
		"subject": path,
	}
}

# METADATA
# title: Bias audit measures the wrong metric
# description: The environment requires an audit of a metric (bias.metrics) that the audit does not measure.
# custom:
#   id: MLG-BIAS-008
#   severity: high
#   controls: [GMLP-3, GMLP-8, EUAIA-10]
#   remediation: Run the audit with the metric the environment requires (mlgate evidence bias --metric).
#   expected: >-
#     The metric the audit measures is the one listed in bias.metrics (every
#     entry of bias.metrics must be that metric).
violation contains v if {
	audit.present == true
	some m in lib.list_of(cfg, "metrics")
	not audit.metric == m
	v := {
		"id": "MLG-BIAS-008",
		"severity": "high",
		"controls": ["GMLP-3", "GMLP-8", "EUAIA-10"],
		"remediation": "Run the audit with the metric the environment requires (mlgate evidence bias --metric).",
		"message": sprintf("bias audit %s measures %s; environment %s requires an audit of %v", [path, metric, lib.s(input, "environment"), m]),
		"subject": sprintf("%v", [m]),
	}
}

# METADATA
# title: Bias audit compares nothing
# description: The audit holds no subgroup comparisons, so it shows nothing about any subgroup.
# custom:
#   id: MLG-BIAS-009
#   severity: high
#   controls: [GMLP-3, EUAIA-10]
#   remediation: Name the sensitive attributes to audit (e.g. race, sex, age band) when running the audit.
#   expected: >-
#     The audit holds at least one subgroup comparison.
violation contains v if {
	audit.present == true
	count(comparisons) == 0
	v := {
		"id": "MLG-BIAS-009",
		"severity": "high",
		"controls": ["GMLP-3", "EUAIA-10"],
		"remediation": "Name the sensitive attributes to audit (e.g. race, sex, age band) when running the audit.",
		"message": sprintf("bias audit %s holds 0 subgroup comparisons (%d groups); expected at least one comparison", [path, count(groups)]),
		"subject": path,
	}
}

# METADATA
# title: Bias audit confidence too low
# description: >-
#   The audit's confidence intervals were computed at a lower confidence level
#   than 1 - alpha, which makes them too narrow for the non-inferiority check.
# custom:
#   id: MLG-BIAS-010
#   severity: medium
#   controls: [GMLP-8, EUAIA-15]
#   remediation: Run the audit again with a confidence level of at least 1 - alpha (0.95 for alpha 0.05).
#   expected: >-
#     The audit's confidence level is at least 1 - bias.alpha (0.95 for an alpha
#     of 0.05).
violation contains v if {
	audit.present == true
	not confident_enough
	v := {
		"id": "MLG-BIAS-010",
		"severity": "medium",
		"controls": ["GMLP-8", "EUAIA-15"],
		"remediation": "Run the audit again with a confidence level of at least 1 - alpha (0.95 for alpha 0.05).",
		"message": sprintf("bias audit %s has confidence %s; expected at least %v (1 - alpha)", [path, lib.s(audit, "confidence"), 1 - object.get(cfg, "alpha", 0)]),
		"subject": path,
	}
}

# METADATA
# title: Large but not significant subgroup gap
# description: >-
#   Warning only: a subgroup's gap reaches delta but is not significant after
#   Holm correction. In environments without non-inferiority this passes.
# custom:
#   id: MLG-BIAS-011
#   severity: low
#   controls: [GMLP-3, GMLP-8]
#   remediation: Consider collecting more evaluation data for the subgroup so the difference can be judged.
#   expected: >-
#     Every comparison the audit marks sufficient has a gap below bias.delta or
#     a Holm-corrected p below bias.alpha (a large, significant gap is
#     MLG-BIAS-002).
warning contains w if {
	audit.present == true
	some c in sufficient_comparisons
	is_number(c.gap) # rego-cpp reads false >= 0.05 as true (Rego orders booleans before numbers)
	c.gap >= cfg.delta
	is_number(c.p_holm)
	c.p_holm >= cfg.alpha
	w := {
		"id": "MLG-BIAS-011",
		"severity": "low",
		"controls": ["GMLP-3", "GMLP-8"],
		"remediation": "Consider collecting more evaluation data for the subgroup so the difference can be judged.",
		"message": sprintf("%s for %s is %s vs %s (gap %s >= delta %s) but not significant (p_holm %s >= alpha %s)", [metric, label(c), lib.n(c, "value"), lib.n(c, "reference_value"), lib.n(c, "gap"), lib.s(cfg, "delta"), lib.p(c, "p_holm"), lib.s(cfg, "alpha")]),
		"subject": label(c),
	}
}

# The group is the reference of its attribute's comparisons (a named or the best
# group): it is the baseline, never compared with itself.
is_reference(g) if [g.attribute, g.group] in reference_keys

# Some comparison judges the group.
is_compared(g) if [g.attribute, g.group] in compared_keys

# METADATA
# title: Audited group without comparison
# description: >-
#   The audit lists a subgroup (with its counts) but no comparison of it with
#   the reference, so the subgroup was measured but never judged.
# custom:
#   id: MLG-BIAS-012
#   severity: high
#   controls: [GMLP-3, EUAIA-10]
#   remediation: Regenerate the audit with `mlgate evidence bias`, which compares every group it measures.
#   expected: >-
#     Every group the audit lists is the subgroup of at least one comparison
#     (same attribute and group), or the named reference its attribute's
#     groups are compared with (`--reference GROUP` or `best`).
violation contains v if {
	audit.present == true
	some g in groups
	not is_compared(g)
	not is_reference(g)
	v := {
		"id": "MLG-BIAS-012",
		"severity": "high",
		"controls": ["GMLP-3", "EUAIA-10"],
		"remediation": "Regenerate the audit with `mlgate evidence bias`, which compares every group it measures.",
		"message": sprintf("bias audit %s measures group %s but holds no comparison for it; expected a comparison with the reference for every group", [path, label(g)]),
		"subject": label(g),
	}
}

# The sensitive attributes the audit covers (those it measured groups of).
audited contains a if {
	some g in groups
	is_string(g.attribute)
	a := lower(g.attribute)
}

# An entry of bias.required_attributes: one attribute name, or a list of names
# any one of which covers it (["race", "ethnicity"]).
names_of(entry) := {lower(entry)} if is_string(entry)

names_of(entry) := {lower(n) | some n in entry; is_string(n)} if is_array(entry)

# METADATA
# title: Required sensitive attribute not audited
# description: >-
#   The environment names sensitive attributes every bias audit must cover
#   (bias.required_attributes), and the audit measures no groups for one of
#   them: an audit over a convenient attribute alone (say sex) cannot show the
#   model is fair for the others.
# custom:
#   id: MLG-BIAS-013
#   severity: high
#   controls: [GMLP-3, EUAIA-10]
#   remediation: Audit the release again with every required attribute (mlgate evidence bias --sensitive ...).
#   expected: >-
#     The bias audit measures groups of every attribute bias.required_attributes
#     lists for this environment (for a list of alternatives, one of them).
violation contains v if {
	audit.present == true
	some entry in lib.list_of(cfg, "required_attributes")
	count(names_of(entry) & audited) == 0
	v := {
		"id": "MLG-BIAS-013",
		"severity": "high",
		"controls": ["GMLP-3", "EUAIA-10"],
		"remediation": "Audit the release again with every required attribute (mlgate evidence bias --sensitive ...).",
		"message": sprintf("bias audit %s covers %s, but environment %s requires %s; expected groups of that attribute in the audit", [path, lib.join(sort(audited)), lib.s(input, "environment"), lib.join(sort(names_of(entry)))]),
		"subject": lib.join(sort(names_of(entry))),
	}
}

# The attributes the model card says it is disaggregated by (its Factors section,
# names in backticks), where the environment requires the audit to cover them.
card_factors contains f if {
	cfg.require_card_factors == true
	some f in lib.list_of(lib.evidence("model_card"), "factors")
	is_string(f)
}

# METADATA
# title: Sensitive attribute named by the model card not audited
# description: >-
#   The model card names a factor (a sensitive attribute it is disaggregated by)
#   that the bias audit does not cover: the card promises an analysis the
#   evidence does not contain.
# custom:
#   id: MLG-BIAS-014
#   severity: high
#   controls: [GMLP-3, EUAIA-10, EUAIA-13]
#   remediation: Audit the release again over every attribute the model card names (mlgate evidence bias --sensitive ...), or correct the card.
#   expected: >-
#     Where bias.require_card_factors is true, the bias audit measures groups of
#     every attribute the model card's Factors section names in backticks.
violation contains v if {
	audit.present == true
	some f in card_factors
	not f in audited
	v := {
		"id": "MLG-BIAS-014",
		"severity": "high",
		"controls": ["GMLP-3", "EUAIA-10", "EUAIA-13"],
		"remediation": "Audit the release again over every attribute the model card names (mlgate evidence bias --sensitive ...), or correct the card.",
		"message": sprintf("the model card names factor %s, but bias audit %s covers only %s; expected groups of every attribute the card names", [f, path, lib.join(sort(audited))]),
		"subject": f,
	}
}
