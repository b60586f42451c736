"""`mlgate explain RELEASE --env ENV` and `mlgate check --explain` (issue #5 parts 5 and 7).

Real decisions on the bundled examples: triage-acuity (denied for a subgroup recall gap),
readmission-risk (allowed). The explanation must name the rule, what it expects, the tier's
thresholds (different per environment), the input paths the rule read with their values in
this input document, the remediation, and for an allow every rule evaluated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run
from conftest import EXAMPLES

from mlgate.policy import load_policy
from mlgate.policytools.doc import build_catalogue
from mlgate.policytools.explain import MAX_ELEMENTS, input_groups
from mlgate.policytools.lint import lint

POLICIES = Path(__file__).resolve().parent.parent / "policies"
ENV_DATA = {env: json.loads((POLICIES / "mlgate" / "environments" / env / "data.json").read_text()) for env in ("dev", "staging", "production")}


def explain_json(release: Path, env: str, tmp_path: Path, *extra) -> tuple[int, dict]:
    code, out, err = run(["explain", release, "--env", env, "-o", "json", "--audit-log", tmp_path / "a.jsonl", *extra])
    assert "Traceback" not in err
    return code, json.loads(out)


def finding(doc: dict, rule_id: str) -> dict:
    return next(f for f in doc["explanation"]["findings"] if f["id"] == rule_id)


def test_explains_a_subgroup_gap_with_rule_expected_tier_and_inputs(tmp_path):
    code, doc = explain_json(EXAMPLES / "triage-acuity", "production", tmp_path)
    assert code == 1 and doc["result"] == "deny"
    f = finding(doc, "MLG-BIAS-002")
    assert f["kind"] == "violation" and f["title"] == "Subgroup performance gap"
    path, line = f["rule"].rsplit(":", 1)
    assert path == "mlgate/rules/bias.rego"  # relative to the policy root (issue 19)
    source = (POLICIES / "mlgate" / "rules" / "bias.rego").read_text().splitlines()
    assert source[int(line) - 1].startswith("violation contains")
    assert "bias.delta" in f["expected"] and "bias.alpha" in f["expected"]
    prod = ENV_DATA["production"]["bias"]
    assert f["thresholds"] == {"bias.alpha": prod["alpha"], "bias.delta": prod["delta"]}
    groups = {g["path"]: g for g in f["inputs"]}
    assert groups["input"]["values"]["input.evidence.bias_audit.present"] is True
    rows = groups["input.evidence.bias_audit.comparisons[*]"]["elements"]
    black = next(r for r in rows if r["group"] == "Black")
    assert black["attribute"] == "ethnicity" and black["gap"] > prod["delta"] and black["p_holm"] < prod["alpha"]
    assert {"gap", "p_holm", "insufficient"} <= set(black)
    assert f["remediation"].startswith("Investigate the subgroup")
    assert "GMLP-3" in f["controls"]


def test_the_tier_picks_the_thresholds_shown(tmp_path):
    _, dev = explain_json(EXAMPLES / "triage-acuity", "dev", tmp_path)
    _, prod = explain_json(EXAMPLES / "triage-acuity", "production", tmp_path)
    assert ENV_DATA["dev"]["bias"]["delta"] != ENV_DATA["production"]["bias"]["delta"]
    assert finding(dev, "MLG-BIAS-002")["thresholds"]["bias.delta"] == ENV_DATA["dev"]["bias"]["delta"]
    assert finding(prod, "MLG-BIAS-002")["thresholds"]["bias.delta"] == ENV_DATA["production"]["bias"]["delta"]
    # production requires non-inferiority (MLG-BIAS-006), dev does not: a different set of findings
    assert "MLG-BIAS-006" in {f["id"] for f in prod["explanation"]["findings"]}
    assert "MLG-BIAS-006" not in {f["id"] for f in dev["explanation"]["findings"]}


def test_an_allow_lists_every_rule_evaluated(tmp_path):
    code, doc = explain_json(EXAMPLES / "readmission-risk", "production", tmp_path)
    assert code == 0
    rules = doc["explanation"]["rules"]
    catalogue = build_catalogue()
    expected_ids = {r.id for r in catalogue.rules if r.package == "mlgate" or r.package.startswith("mlgate.rules.")}
    assert {r["id"] for r in rules} == expected_ids and len(rules) > 50
    assert {r["status"] for r in rules} <= {"passed", "warned"}
    warned = {r["id"] for r in rules if r["status"] == "warned"}
    assert warned == {w["id"] for w in doc["warnings"]}
    assert not any(r["id"].startswith("MLG-MON-") for r in rules)  # monitoring is judged by `mlgate monitor`


def test_text_output_and_the_same_recorded_decision_as_check(tmp_path):
    audit = tmp_path / "a.jsonl"
    code, out, _ = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "--explain", "--audit-log", audit])
    assert code == 1
    assert "explanation (production tier" in out
    assert "x MLG-BIAS-002 [high] Subgroup performance gap" in out
    assert "    expected:    " in out and "    production:  bias.alpha = 0.05; bias.delta = 0.05" in out
    assert "      input.evidence.bias_audit.comparisons[*] (" in out and 'group="Black"' in out
    assert "rules evaluated: " in out and "violated" in out
    code2, _, _ = run(["explain", EXAMPLES / "triage-acuity", "--env", "production", "--audit-log", audit])
    assert code2 == code
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(records) == 2 and {r["result"] for r in records} == {"deny"}


def test_explain_refuses_formats_it_cannot_carry(tmp_path):
    code, out, err = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "--explain", "-o", "sarif", "--audit-log", tmp_path / "a"])
    assert code == 2 and "--explain works with -o text or -o json" in err and out == ""
    assert not (tmp_path / "a").exists()


def test_error_decision_is_explained_as_not_evaluated(tmp_path):
    code, doc = explain_json(tmp_path / "nowhere", "production", tmp_path)
    assert code == 2
    x = doc["explanation"]
    assert x["rules"] == [] and "no rule was evaluated" in x["note"]


def test_waived_violation_is_explained_with_its_waiver(tmp_path):
    from test_waivers import BIAS_RULES, JUSTIFICATION, sign

    release = tmp_path / "triage-acuity"
    shutil.copytree(EXAMPLES / "triage-acuity", release)
    assert "    waivers: [evidence/waivers/]\n" in (release / "mlgate.yaml").read_text()  # the example declares its waivers directory
    sign(release)
    code, doc = explain_json(release, "production", tmp_path)
    assert code == 0
    for rule_id in BIAS_RULES:
        f = finding(doc, rule_id)
        assert f["kind"] == "waived" and f["waiver"]["justification"] == JUSTIFICATION
    assert {r["id"] for r in doc["explanation"]["rules"] if r["status"] == "waived"} == set(BIAS_RULES)


# --- the pieces ---------------------------------------------------------------------------------


def test_input_analysis_follows_helper_functions():
    rules = {r.id: r for r in build_catalogue().rules}
    assert ("evidence", "bias_audit", "comparisons", "*", "gap") in rules["MLG-BIAS-002"].inputs  # through lib.evidence, lib.list_of
    assert ("evidence", "bias_audit", "present") in rules["MLG-BIAS-001"].inputs
    assert all(r.inputs for r in rules.values() if r.id != "MLG-CFG-000"), [r.id for r in rules.values() if not r.inputs]


def test_input_groups_show_missing_values_and_cap_long_lists():
    doc = {"a": {"b": 1}, "xs": [{"v": i} for i in range(MAX_ELEMENTS + 5)], "n": 3}
    groups = input_groups([("a", "b"), ("a", "c"), ("xs", "*", "v"), ("xs", "*", "w"), ("n", "*", "v"), ("m", "*")], doc)
    plain, *lists = groups
    assert plain.values == {"input.a.b": 1, "input.a.c": "<missing>"}
    by_path = {g.path: g for g in lists}
    xs = by_path["input.xs[*]"]
    assert xs.total == MAX_ELEMENTS + 5 and len(xs.elements) == MAX_ELEMENTS
    assert xs.elements[2] == {"index": 2, "v": 2, "w": "<missing>"}
    assert by_path["input.n[*]"].values == {"input.n": 3}
    assert by_path["input.m[*]"].values == {"input.m": "<missing>"}


def test_lint_warns_about_a_rule_without_expected(tmp_path):
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    bias = copy / "mlgate" / "rules" / "bias.rego"
    text = bias.read_text()
    start = text.index("#   expected:", text.index("id: MLG-BIAS-001"))
    end = text.index("violation contains", start)
    bias.write_text(text[:start] + text[end:])
    report = lint(copy)
    assert report.findings == ()
    assert [(f.check, f.message.split(":")[0]) for f in report.warnings if f.file.endswith("bias.rego")] == [("expected", "MLG-BIAS-001")]


def test_bundled_library_has_expected_on_every_rule():
    report = lint(POLICIES)
    assert [str(w) for w in report.warnings if w.check == "expected"] == []


@pytest.mark.parametrize("env", ["dev", "staging", "production"])
def test_catalogue_thresholds_exist_in_every_tier(env):
    catalogue = build_catalogue(policy=load_policy(None))
    for rule in catalogue.rules:
        for key, per_env in rule.thresholds.items():
            assert env in per_env, (rule.id, key)
