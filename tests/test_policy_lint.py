"""`mlgate policy lint`: clean on the bundled library, and each check fires on a broken policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import run
from conftest import ASSETS, REPO
from mlgate.policy import load_policy
from mlgate.policytools.datakeys import DataKeyAnalysis, missing_in
from mlgate.policytools.lint import CHECKS, lint
from mlgate.policy.rego_ast import missing_builtins, parse

POLICIES = REPO / "policies"
BROKEN = ASSETS / "policies" / "lint_broken"
B = "tests/assets/policies/lint_broken/mlgate"

# (file, line, check) of every finding the broken policies must produce, and nothing else
EXPECTED = {
    (f"{B}/rules/builtins.rego", 14, "builtin"),
    (f"{B}/rules/footgun.rego", 6, "deny-boolean"),
    (f"{B}/rules/keys.rego", 18, "data-key"),  # limits.max: missing in staging
    (f"{B}/rules/keys.rego", 19, "data-key"),  # nolimits: missing in both (two findings)
    (f"{B}/rules/keys.rego", 21, "data-key"),  # limits.items[*].name: staging's second item
    (f"{B}/rules/meta.rego", 5, "metadata"),  # no METADATA
    (f"{B}/rules/meta.rego", 10, "id"),  # MLG-bad-1
    (f"{B}/rules/meta.rego", 23, "id"),  # duplicate of keys.rego
    (f"{B}/rules/meta.rego", 23, "severity"),  # urgent
    (f"{B}/rules/meta.rego", 23, "controls"),  # []
    (f"{B}/rules/meta.rego", 36, "metadata"),  # no description
    (f"{B}/rules/meta.rego", 36, "controls"),  # GMLP-11 unknown
    (f"{B}/rules/meta.rego", 45, "finding"),  # severity medium vs high
}


@pytest.fixture(scope="module")
def broken():
    return lint(BROKEN)


def test_bundled_library_is_clean() -> None:
    report = lint(POLICIES)
    assert [str(f) for f in report.findings] == []
    assert report.rules_checked >= 50 and report.annotations_checked >= 50
    assert report.environments == ("dev", "production", "staging")
    assert report.data_reads > 20


def test_each_check_fires_where_expected(broken) -> None:
    got = {(f.file, f.line, f.check) for f in broken.findings}
    assert got == EXPECTED, "\n".join(str(f) for f in broken.findings)
    assert {c for _, _, c in got} == set(CHECKS)


def test_messages_say_what_was_found_and_expected(broken) -> None:
    text = {str(f) for f in broken.findings}
    assert f"{B}/rules/footgun.rego:6: [deny-boolean] `deny if` defines a boolean, not a set of findings; write `deny contains msg if {{ ... }}`" in text
    assert any("reads limits.max of the environment data, but in environment staging" in t and t.endswith("limits.max is missing") for t in text)
    assert any("limits.items[1].name is missing" in t for t in text)
    assert any("id MLG-KEYS-001 is already used at tests/assets/policies/lint_broken/mlgate/rules/keys.rego:9" in t for t in text)
    assert any("builtin crypto.sha256 is not available in the embedded engine" in t for t in text)
    assert any("finding severity is \"medium\", the annotation says \"high\"" in t for t in text)
    for finding in broken.findings:
        assert "\n" not in str(finding)


def test_cli_exit_codes_and_json() -> None:
    code, out, err = run(["policy", "lint"])
    assert code == 0, out + err
    assert "policies: 0 finding(s)" in out
    code, out, _ = run(["policy", "lint", BROKEN, "-o", "json"])
    assert code == 1
    doc = json.loads(out)
    assert doc["passed"] is False
    assert {(f["file"], f["line"], f["check"]) for f in doc["findings"]} == EXPECTED
    code, out, err = run(["policy", "lint", ASSETS / "policies" / "syntax_error"])
    assert code == 2 and "syntax_error/demo/demo.rego:7:1: cannot load policy" in err and "Traceback" not in err


def _copy_library(tmp_path: Path) -> Path:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_removing_a_threshold_from_one_environment_is_found(tmp_path: Path) -> None:
    copy = _copy_library(tmp_path)
    staging = copy / "mlgate" / "environments" / "staging" / "data.json"
    data = json.loads(staging.read_text())
    del data["bias"]["delta"]
    del data["model_signature"]["required"]
    staging.write_text(json.dumps(data))
    report = lint(copy)
    found = {(Path(f.file).name, f.check) for f in report.findings}
    assert found == {("bias.rego", "data-key"), ("model_signature.rego", "data-key")}
    assert all("in environment staging" in f.message for f in report.findings)
    bias_lines = {f.line for f in report.findings if f.file.endswith("bias.rego")}
    text = (copy / "mlgate" / "rules" / "bias.rego").read_text().splitlines()
    assert all("delta" in text[line - 1] for line in bias_lines)


def test_a_rule_left_without_metadata_is_found(tmp_path: Path) -> None:
    copy = _copy_library(tmp_path)
    rules = copy / "mlgate" / "rules" / "model_card.rego"
    text = rules.read_text()
    start = text.index("# METADATA\n# title: Model card missing")
    end = text.index("violation contains", start)
    rules.write_text(text[:start] + text[end:])
    report = lint(copy)
    assert [(Path(f.file).name, f.check) for f in report.findings] == [("model_card.rego", "metadata")]
    assert "has no METADATA annotation" in report.findings[0].message


def test_data_key_analysis_follows_helpers_on_the_library() -> None:
    parsed = parse(load_policy(POLICIES))
    reads = DataKeyAnalysis(parsed).run([m for m in parsed.modules if not m.is_test])
    paths = {r.path for r in reads}
    assert {
        ("bias", "delta"), ("bias", "alpha"), ("bias", "n_min"), ("bias", "non_inferiority"), ("bias", "metrics"),
        ("approvals", "required", "*", "role"), ("approvals", "required", "*", "meaning"), ("approvals", "distinct_people"),
        ("evidence", "max_age_days"), ("model_card", "required_sections"), ("model_signature", "required"),
        ("data_validation", "required"),
    } <= paths


def test_missing_in() -> None:
    doc = {"a": {"b": [{"c": 1}, {"d": 2}]}, "x": 3}
    assert missing_in(doc, ("a", "b", "*", "c")) == "a.b[1].c is missing"
    assert missing_in(doc, ("x", "y")) == "x is not an object"
    assert missing_in(doc, ("a", "b")) is None
    assert missing_in({"a": {"b": []}}, ("a", "b", "*", "c")) is None


def test_aliased_imports_are_not_mistaken_for_builtins() -> None:
    # decision_test.rego calls td.with_value (import data.mlgate.testdata as td)
    parsed = parse(load_policy(POLICIES))
    assert missing_builtins(parsed) == []


def test_sprintf_formats_the_embedded_engine_handles_unlike_opa(tmp_path: Path) -> None:
    """Each format below was tried on regorus: the first two are evaluation errors (a deny), the
    next two print differently from OPA."""
    root = tmp_path / "policies"
    (root / "demo").mkdir(parents=True)
    (root / "demo" / "demo.rego").write_text(
        "package demo\n\nimport rego.v1\n\n"
        'a := sprintf("%6.2f", [3.14159])\n'
        'b := sprintf("%+d", [3])\n'
        'c := sprintf("p %.2e", [0.000123])\n'
        'd := sprintf("[%8s]", ["x"])\n'
        'e := sprintf("%.2f %02d %v 100%%", [1.5, 3, "x"])\n'
    )
    report = lint(root)
    assert [(f.line, f.check) for f in report.findings] == [(5, "sprintf"), (6, "sprintf")]
    assert "fails on a width with a precision" in report.findings[0].message
    assert [(f.line, f.check) for f in report.warnings if f.check == "sprintf"] == [(7, "sprintf"), (8, "sprintf")]
    assert "prints 1.23456e-4 where OPA prints 1.23e-04" in report.warnings[0].message or any(
        "1.23e-04" in w.message for w in report.warnings)
    # what the lint says is what the engine does
    import regorus

    engine = regorus.Engine()
    engine.add_policy("demo.rego", (root / "demo" / "demo.rego").read_text())
    for rule in ("a", "b"):
        with pytest.raises(Exception):
            engine.eval_rule(f"data.demo.{rule}")
    assert engine.eval_rule("data.demo.c") == "p 1.23e-4"
    assert engine.eval_rule("data.demo.e") == "1.50 03 x 100%"
