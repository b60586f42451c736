"""Every example is an acceptance test through the CLI: exit code and the key message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from cli_helpers import check_json, run
from conftest import EXAMPLES, REPO


def ids(decision):
    return {v["id"] for v in decision["violations"]}


@pytest.mark.parametrize("env", ["staging", "production"])
def test_readmission_risk_is_allowed(tmp_path, env):
    code, out, _ = run(["check", EXAMPLES / "readmission-risk", "--env", env, "--audit-log", tmp_path / "a.jsonl"])
    assert code == 0, out
    assert "ALLOWED" in out and "decision id:" in out
    # 21 CFR 11.50: the signatures are shown with printed name, meaning and time.
    assert f"Dr. Jane Roe <jane.roe@hospital.example>, clinical-safety-officer: approval for {env}, signed 2026-11-16" in out


def test_triage_acuity_denied_names_subgroup_and_statistics(tmp_path):
    code, out, _ = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 1, out
    assert "DENIED" in out
    line = next(line for line in out.splitlines() if "MLG-BIAS-002" in line)
    assert "ethnicity=Black" in line
    for needle in ("recall", "gap", "CI", "p_holm"):
        assert needle in line, line


def test_triage_acuity_bias_violation_in_json(tmp_path):
    code, decision, _ = check_json(EXAMPLES / "triage-acuity", "production", tmp_path / "a.jsonl")
    assert code == 1
    bias = [v for v in decision["violations"] if v["id"] == "MLG-BIAS-002"]
    assert bias and all("ethnicity=Black" in v["message"] for v in bias)
    # Nothing else is wrong with this release: the bias audit alone denies it.
    assert ids(decision) <= {"MLG-BIAS-002", "MLG-BIAS-006"}, ids(decision)


def test_triage_acuity_v2_is_allowed(tmp_path):
    code, decision, _ = check_json(EXAMPLES / "triage-acuity-v2", "production", tmp_path / "a.jsonl")
    assert code == 0, decision["violations"]
    assert decision["allowed"] is True


def test_chest_xray_denied_for_stale_approval(tmp_path):
    code, out, _ = run(["check", EXAMPLES / "chest-xray", "--env", "staging", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 1, out
    assert "different model digest" in out
    code, decision, _ = check_json(EXAMPLES / "chest-xray", "staging", tmp_path / "a.jsonl")
    assert "MLG-APPR-010" in ids(decision)


def test_json_decision_is_machine_readable(tmp_path):
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", tmp_path / "a.jsonl")
    assert code == 0
    assert decision["apiVersion"] == "mlgate.dev/decision/v1"
    assert decision["allowed"] is True and decision["result"] == "allow"
    assert len(decision["model_digest"]) == 64 and len(decision["input_digest"]) == 64
    assert decision["audit"]["sequence"] == 1
    assert "evidence/bias_audit.json" in decision["evidence_digests"]


def test_every_check_is_audited(tmp_path):
    log = tmp_path / "audit.jsonl"
    for release, env in (("readmission-risk", "production"), ("triage-acuity", "production"), ("chest-xray", "staging")):
        run(["check", EXAMPLES / release, "--env", env, "--audit-log", log])
    run(["check", tmp_path / "missing", "--env", "production", "--audit-log", log])
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["result"] for r in records] == ["allow", "deny", "deny", "error"]
    assert [r["sequence"] for r in records] == [1, 2, 3, 4]
    assert all(records[i]["prev_hash"] == records[i - 1]["hash"] for i in range(1, 4))
    assert records[0]["subject_digest"] and records[0]["policy_revision"] and records[0]["input_digest"]


@pytest.mark.parametrize("fmt", ["junit", "sarif"])
def test_other_formats(tmp_path, fmt):
    code, out, _ = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "-o", fmt, "--audit-log", tmp_path / "a.jsonl"])
    assert code == 1
    if fmt == "sarif":
        doc = json.loads(out)
        assert doc["version"] == "2.1.0"
        assert any(r["ruleId"] == "MLG-BIAS-002" for r in doc["runs"][0]["results"])
    else:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(out)
        assert any("MLG-BIAS-002" in (c.get("classname") or "") for c in root.iter("testcase"))
        assert root.find("testsuite").get("failures") != "0"


def test_installed_console_script_runs_the_readme_command(tmp_path):
    """The README's main job, as a new user runs it: the real `mlgate` entry point, real clock."""
    exe = shutil.which("mlgate") or os.path.join(os.path.dirname(sys.executable), "mlgate")
    proc = subprocess.run([exe, "check", "examples/readmission-risk", "--env", "production", "--audit-log", str(tmp_path / "a.jsonl")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALLOWED" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "mlgate", "check", "examples/triage-acuity", "--env", "production",
                           "--audit-log", str(tmp_path / "a.jsonl")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "MLG-BIAS-002" in proc.stdout
