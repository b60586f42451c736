"""Issue 19: an unknown environment is one error naming the valid ones (exit 2) in every command
that takes --env, recorded as an error decision where the command records decisions; the audit
URL has one grammar for --audit and MLGATE_AUDIT; approve/waive/keygen never overwrite without
--force; a deleted local dataset denies; the help lists only what works."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_helpers import run
from conftest import EXAMPLES, REPO

RELEASE = EXAMPLES / "readmission-risk"
# The examples' trust policy (it moved out of the bundled policies; fall back while it lived there).
TRUST = next(p for p in (EXAMPLES / "trust.yaml", REPO / "policies" / "trust.yaml") if p.exists())
KEYS = EXAMPLES / "keys"
VALID = "dev, production, staging"


def _records(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", ["check", "explain"])
def test_unknown_environment_is_one_error_and_an_error_decision(command, tmp_path):
    log = tmp_path / "audit.jsonl"
    code, out, err = run([command, RELEASE, "--env", "prod", "--trust", TRUST, "--audit-log", log])
    assert code == 2
    line = _one_error_line(err)
    assert "unknown environment 'prod'" in line and VALID in line
    assert "<missing>" not in out and "MLG-" not in out
    [record] = _records(log)
    assert record["result"] == "error" and "unknown environment 'prod'" in record["error"]
    assert record["policy_revision"]  # the policy that said so is named


def test_environment_from_a_data_override_is_valid(tmp_path):
    # The list comes from the loaded policy's data, overrides included.
    prod = json.loads((REPO / "policies" / "mlgate" / "environments" / "production" / "data.json").read_text())
    override = tmp_path / "prod.json"
    override.write_text(json.dumps({"mlgate": {"environments": {"prod": prod}}}))
    code, _, err = run(["check", RELEASE, "--env", "prod", "--trust", TRUST, "--data", override, "--audit-log", tmp_path / "a.jsonl"])
    assert code in (0, 1) and "unknown environment" not in err


def test_monitor_unknown_environment(tmp_path):
    v2 = EXAMPLES / "triage-acuity-v2"
    log = tmp_path / "audit.jsonl"
    code, _, err = run(["monitor", v2, "--window", v2 / "monitoring" / "window_2026-12.csv", "--env", "prod", "--label", "y_true",
                        "--pred", "y_pred", "--sensitive", "ethnicity", "--audit-log", log])
    assert code == 2
    line = _one_error_line(err)
    assert "unknown environment 'prod'" in line and VALID in line
    [record] = _records(log)
    assert record["result"] == "error" and record["action"] == "monitor"


def _approve_args(release, env="staging", *extra):
    return ["approve", release, "--key", KEYS / "jane.roe.key", "--name", "Dr. Jane Roe", "--id", "jane.roe@hospital.example",
            "--role", "clinical-safety-officer", "--meaning", "approval", "--env", env, "--trust", TRUST, *extra]


def _waive_args(release, out, env="production", *extra):
    return ["waive", release, "--rule", "MLG-BIAS-002", "--env", env, "--justification", "Mitigated by clinician review of every alert.",
            "--expires", "2026-12-20T00:00:00Z", "--key", KEYS / "jane.roe.key", "--name", "Dr. Jane Roe", "--id", "jane.roe@hospital.example",
            "--role", "clinical-safety-officer", "-o", out, "--trust", TRUST, *extra]


@pytest.fixture
def release(tmp_path):
    target = tmp_path / "readmission-risk"
    shutil.copytree(RELEASE, target)
    return target


def test_approve_and_waive_refuse_an_unknown_environment(release, tmp_path):
    code, _, err = run(_approve_args(release, "prod"))
    assert code == 2 and "unknown environment 'prod'" in _one_error_line(err) and VALID in err
    assert not list((release / "evidence" / "approvals").glob("*.prod.*"))
    out = tmp_path / "w.sigstore.json"
    code, _, err = run(_waive_args(release, out, "prod"))
    assert code == 2 and "unknown environment 'prod'" in _one_error_line(err)
    assert not out.exists()


def test_approve_never_overwrites_without_force(release):
    existing = release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.staging.sigstore.json"
    before = existing.read_bytes()
    code, _, err = run(_approve_args(release))
    assert code == 2
    line = _one_error_line(err)
    assert existing.name in line and "--force" in line
    assert existing.read_bytes() == before
    code, _, err = run(_approve_args(release, "staging", "--force"))
    assert code == 0 and existing.read_bytes() != before


def test_waive_never_overwrites_without_force(release, tmp_path):
    out = tmp_path / "w.sigstore.json"
    out.write_bytes(b"someone's signed waiver")
    code, _, err = run(_waive_args(release, out))
    assert code == 2 and "w.sigstore.json" in _one_error_line(err) and "--force" in err
    assert out.read_bytes() == b"someone's signed waiver"
    code, _, _ = run(_waive_args(release, out, "production", "--force"))
    assert code == 0 and out.read_bytes() != b"someone's signed waiver"


def test_keygen_never_overwrites_without_force(tmp_path):
    prefix = tmp_path / "k"
    assert run(["keygen", "-o", prefix])[0] == 0
    key = (tmp_path / "k.key").read_bytes()
    code, _, err = run(["keygen", "-o", prefix])
    assert code == 2 and "k.key" in _one_error_line(err) and "--force" in err
    assert (tmp_path / "k.key").read_bytes() == key
    assert run(["keygen", "-o", prefix, "--force"])[0] == 0 and (tmp_path / "k.key").read_bytes() != key


def test_approve_warns_when_the_key_is_not_in_the_trust_policy(release, tmp_path):
    run(["keygen", "-o", tmp_path / "stranger"])
    args = _approve_args(release, "staging", "-o", tmp_path / "a.sigstore.json")
    args[args.index("--key") + 1] = tmp_path / "stranger.key"
    code, _, err = run(args)
    assert code == 0
    assert "mlgate: warning:" in err and "not an approver key in the trust policy" in err
    # The listed key signing for its own approver: no warning.
    code, _, err = run(_approve_args(release, "staging", "-o", tmp_path / "b.sigstore.json"))
    assert code == 0 and "warning" not in err


def test_mlgate_audit_env_has_the_audit_flag_grammar(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLGATE_AUDIT", "garbage")
    for args in (["check", RELEASE, "--env", "staging", "--trust", TRUST], ["audit", "show"]):
        code, _, err = run(args)
        assert code == 2
        line = _one_error_line(err)
        assert "MLGATE_AUDIT" in line and "not an audit URL" in line
    assert not (tmp_path / "garbage").exists()
    monkeypatch.delenv("MLGATE_AUDIT")
    code, _, err = run(["check", RELEASE, "--env", "staging", "--trust", TRUST, "--audit", "garbage"])
    assert code == 2 and "--audit" in _one_error_line(err) and "not an audit URL" in err
    assert not (tmp_path / "garbage").exists()
    # A path that looks like one still works, from either place.
    monkeypatch.setenv("MLGATE_AUDIT", "trail.jsonl")
    assert run(["check", RELEASE, "--env", "staging", "--trust", TRUST])[0] == 0
    assert len(_records(tmp_path / "trail.jsonl")) == 1


def test_monitor_takes_audit(tmp_path):
    v2 = EXAMPLES / "triage-acuity-v2"
    log = tmp_path / "m.jsonl"
    code, _, err = run(["monitor", v2, "--window", v2 / "monitoring" / "window_2026-12.csv", "--env", "production", "--label", "y_true",
                        "--pred", "y_pred", "--sensitive", "ethnicity,sex", "--audit", f"file:{log}"])
    assert code in (0, 1), err
    assert [r["action"] for r in _records(log)] == ["monitor"]


def test_deleted_local_dataset_denies_naming_it(release, tmp_path):
    (release / "data" / "train.csv").unlink()
    code, out, _ = run(["check", release, "--env", "production", "--trust", TRUST, "-o", "json", "--audit-log", tmp_path / "a.jsonl"])
    doc = json.loads(out)
    assert code == 1 and doc["result"] == "deny"
    [v] = [v for v in doc["violations"] if v["id"] == "MLG-DATA-006"]
    assert "data/train.csv is missing" in v["message"]
    assert "MLG-DATA-009" not in {w["id"] for w in doc["warnings"]}


def test_help_lists_only_what_works():
    code, out, _ = run(["explain", "--help"])
    assert code == 0 and "[text|json]" in out and "junit" not in out and "sarif" not in out
    code, out, _ = run(["serve", "--help"])
    assert "default: --timeout" not in " ".join(out.split())
    code, out, _ = run(["check", "--help"])
    flat = " ".join(out.split())
    assert "mlgate/environments/" in flat and "policy doc" in flat
    code, out, _ = run(["monitor", "--help"])
    assert "--audit " in out or "--audit TEXT" in out
