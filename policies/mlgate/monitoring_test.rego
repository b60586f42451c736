package mlgate.monitoring_test

import rego.v1

import data.mlgate.monitoring
import data.mlgate.testdata as td

envs := json.patch(td.environments, [
	{"op": "add", "path": "/production/monitoring", "value": {"psi_max": 0.2, "ks_alpha": 0.01, "ks_min_statistic": 0.1}},
	{"op": "add", "path": "/staging/monitoring", "value": {"psi_max": 0.25, "ks_alpha": 0.01, "ks_min_statistic": 0.1}},
])

feature(name, psi, ks, p) := {"feature": name, "kind": "numeric", "psi": psi, "ks_statistic": ks, "ks_p_value": p, "n_reference": 9000, "n_window": 6000}

window(drift) := {
	"apiVersion": "mlgate.dev/input/v1",
	"environment": "production",
	"evaluated_at_ns": td.evaluated_at_ns,
	"model": td.good_input.model,
	"evidence": {"bias_audit": td.good_input.evidence.bias_audit},
	"monitoring": {"drift": drift},
}

decide(inp) := d if {
	d := monitoring.decision with input as inp with data.mlgate.environments as envs
}

ids(inp) := {v.id | some v in decide(inp).violations}

stable := [feature("age", 0.01, 0.02, 0.4), feature("spo2", 0.03, 0.03, 0.2)]

test_stable_window_passes if {
	decide(window(stable)) == {"allow": true, "violations": [], "warnings": []}
}

test_psi_drift if {
	d := decide(window([feature("age", 0.31, 0.02, 0.4)]))
	d.allow == false
	[v.id | some v in d.violations] == ["MLG-MON-001"]
	d.violations[0].message == "feature age drifted: PSI 0.31 >= 0.2 (window n=6000 vs reference n=9000); expected PSI below 0.2"
}

test_missing_psi_fails_closed if {
	ids(window([object.remove(feature("age", 0, 0.02, 0.4), ["psi"])])) == {"MLG-MON-001"}
}

test_ks_drift_needs_significance_and_size if {
	ids(window([feature("spo2", 0.05, 0.15, 1e-12)])) == {"MLG-MON-002"}
	ids(window([feature("spo2", 0.05, 0.05, 1e-12)])) == set() # significant but tiny
	ids(window([feature("spo2", 0.05, 0.15, 0.2)])) == set() # large but not significant
}

test_categorical_feature_has_no_ks if {
	ids(window([{"feature": "sex", "kind": "categorical", "psi": 0.01, "ks_statistic": null, "ks_p_value": null}])) == set()
}

test_no_drift_statistics if {
	ids(window([])) == {"MLG-MON-003"}
}

test_recall_gap_returns if {
	inp := json.patch(window(stable), [
		{"op": "replace", "path": "/evidence/bias_audit/comparisons/1/gap", "value": 0.215},
		{"op": "replace", "path": "/evidence/bias_audit/comparisons/1/gap_ci_low", "value": 0.12},
		{"op": "replace", "path": "/evidence/bias_audit/comparisons/1/gap_ci_high", "value": 0.3},
		{"op": "replace", "path": "/evidence/bias_audit/comparisons/1/p_holm", "value": 0.00002},
	])
	"MLG-BIAS-002" in ids(inp)
}

test_thresholds_incomplete if {
	e := json.patch(envs, [{"op": "remove", "path": "/production/monitoring/psi_max"}])
	d := monitoring.decision with input as window(stable) with data.mlgate.environments as e
	d.allow == false
	"MLG-MON-000" in {v.id | some v in d.violations}
}

test_unknown_environment_denies if {
	d := decide(json.patch(window(stable), [{"op": "replace", "path": "/environment", "value": "qa"}]))
	d.allow == false
	"MLG-CFG-001" in {v.id | some v in d.violations}
}
