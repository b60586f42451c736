# Monitoring: a window of production predictions with outcomes, judged by
# `mlgate monitor` (entry point data.mlgate.monitoring.decision). The bias
# audit recomputed on the window is judged by the release gate's own bias rule
# with the same thresholds; the data drift of each live input feature against
# the training reference by the population stability index and the
# Kolmogorov-Smirnov test (GMLP principle 10: deployed models are monitored).
package mlgate.monitoring

import rego.v1

import data.mlgate.lib

t := lib.thresholds("monitoring")

drift := lib.list_of(object.get(input, "monitoring", {}), "drift")

# x is a number below m (in Rego null < 0.2 is true, so the type is checked first)
below(x, m) if {
	is_number(x)
	x < m
}

# METADATA
# title: Monitoring thresholds incomplete
# description: The environment's monitoring thresholds (psi_max, ks_alpha, ks_min_statistic) are missing or not numbers.
# custom:
#   id: MLG-MON-000
#   severity: critical
#   controls: [21CFR11.10(a), GMLP-10]
#   remediation: Add monitoring.psi_max, monitoring.ks_alpha and monitoring.ks_min_statistic to policies/mlgate/environments/<env>/data.json.
#   expected: >-
#     The environment's data file sets monitoring.psi_max, monitoring.ks_alpha
#     and monitoring.ks_min_statistic, each to a number.
violation contains v if {
	is_object(lib.env)
	some key in ["psi_max", "ks_alpha", "ks_min_statistic"]
	not is_number(object.get(t, key, null))
	v := {
		"id": "MLG-MON-000",
		"severity": "critical",
		"controls": ["21CFR11.10(a)", "GMLP-10"],
		"remediation": "Add monitoring.psi_max, monitoring.ks_alpha and monitoring.ks_min_statistic to policies/mlgate/environments/<env>/data.json.",
		"message": sprintf("environment %s threshold monitoring.%s is %s; expected a number", [lib.s(input, "environment"), key, lib.s(t, key)]),
	}
}

# METADATA
# title: Population stability index above threshold
# description: >-
#   The distribution of a live input feature moved away from the training
#   reference: its population stability index is at least psi_max, or could
#   not be computed.
# custom:
#   id: MLG-MON-001
#   severity: high
#   controls: [GMLP-10, EUAIA-15]
#   remediation: Investigate the shift (population, measurement, coding); re-validate the model on current data and retrain if needed.
#   expected: >-
#     Every live input feature has a population stability index that is a number
#     below monitoring.psi_max.
violation contains v if {
	some f in drift
	not below(object.get(f, "psi", null), object.get(t, "psi_max", null))
	v := {
		"id": "MLG-MON-001",
		"severity": "high",
		"controls": ["GMLP-10", "EUAIA-15"],
		"remediation": "Investigate the shift (population, measurement, coding); re-validate the model on current data and retrain if needed.",
		"message": sprintf("feature %s drifted: PSI %s >= %s (window n=%s vs reference n=%s); expected PSI below %s", [lib.s(f, "feature"), lib.n(f, "psi"), lib.num(t.psi_max), lib.s(f, "n_window"), lib.s(f, "n_reference"), lib.num(t.psi_max)]),
		"subject": lib.s(f, "feature"),
	}
}

# METADATA
# title: Kolmogorov-Smirnov drift
# description: >-
#   A numeric live input feature differs from the training reference by the
#   two-sample Kolmogorov-Smirnov test: p below ks_alpha and a statistic of at
#   least ks_min_statistic (large windows make tiny differences significant).
# custom:
#   id: MLG-MON-002
#   severity: high
#   controls: [GMLP-10, EUAIA-15]
#   remediation: Investigate the shift (population, measurement, coding); re-validate the model on current data and retrain if needed.
#   expected: >-
#     For every live input feature with Kolmogorov-Smirnov results, the p-value
#     is at least monitoring.ks_alpha or the statistic is below
#     monitoring.ks_min_statistic.
violation contains v if {
	some f in drift
	is_number(object.get(f, "ks_statistic", null))
	is_number(object.get(f, "ks_p_value", null))
	f.ks_p_value < t.ks_alpha
	f.ks_statistic >= t.ks_min_statistic
	v := {
		"id": "MLG-MON-002",
		"severity": "high",
		"controls": ["GMLP-10", "EUAIA-15"],
		"remediation": "Investigate the shift (population, measurement, coding); re-validate the model on current data and retrain if needed.",
		"message": sprintf("feature %s drifted: KS statistic %s >= %s with p %s < alpha %s; expected the training distribution", [lib.s(f, "feature"), lib.n(f, "ks_statistic"), lib.num(t.ks_min_statistic), lib.p(f, "ks_p_value"), lib.num(t.ks_alpha)]),
		"subject": lib.s(f, "feature"),
	}
}

# METADATA
# title: No drift statistics
# description: The monitoring input carries no drift statistics, so the live inputs were not compared with the training data.
# custom:
#   id: MLG-MON-003
#   severity: high
#   controls: [GMLP-10]
#   remediation: Give the window the model's input features and a training reference (the release's train dataset or --reference).
#   expected: >-
#     The monitoring input carries drift statistics for at least one live input
#     feature.
violation contains v if {
	count(drift) == 0
	v := {
		"id": "MLG-MON-003",
		"severity": "high",
		"controls": ["GMLP-10"],
		"remediation": "Give the window the model's input features and a training reference (the release's train dataset or --reference).",
		"message": "no drift statistics in the monitoring input; expected PSI and KS per input feature",
	}
}

all_violations := data.mlgate.rules.bias.violation | violation | {v | some v in data.mlgate.rules.config.violation}

# Findings in a stable order: by id, then message (as data.mlgate.decision orders them).
ordered(findings) := [f |
	some key in sort({[f.id, f.message] | some f in findings})
	some f in findings
	[f.id, f.message] == key
]

default allow := false

allow if {
	is_object(lib.env)
	count(all_violations) == 0
}

decision := {
	"allow": allow,
	"violations": ordered(all_violations),
	"warnings": ordered(data.mlgate.rules.bias.warning),
}
