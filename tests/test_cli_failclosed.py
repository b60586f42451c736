"""Bad input is a one-line error naming the file (exit 2, no traceback), and every failure denies."""

from __future__ import annotations

import json
import shutil

import pytest

from cli_helpers import check_json, run
from conftest import EXAMPLES


@pytest.fixture
def release(tmp_path):
    dst = tmp_path / "readmission-risk"
    shutil.copytree(EXAMPLES / "readmission-risk", dst)
    return dst


def check(release, tmp_path, *extra, env="production"):
    return run(["check", release, "--env", env, "--audit-log", tmp_path / "audit.jsonl", *extra])


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def last_audit(tmp_path):
    return json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])


def test_baseline_copy_is_allowed(release, tmp_path):
    code, out, err = check(release, tmp_path)
    assert code == 0, out + err


@pytest.mark.parametrize("mutate, needle", [
    (lambda m: m.replace("apiVersion: mlgate.dev/v1", "apiVersion: [mlgate.dev/v1"), "mlgate.yaml: invalid YAML at line 2"),
    (lambda m: m + "bomb: &a [1, 2]\nboom: [*a, *a]\n", "YAML aliases are not allowed"),
    (lambda m: m.replace("biasAudit: evidence/bias_audit.json", "biasAudit: [evidence/bias_audit.json]"),
     "mlgate.yaml: spec.evidence.biasAudit: expected string, got list"),
    (lambda m: m.replace("biasAudit: evidence/bias_audit.json", "biasAudit: evidence/nope.json"), "'evidence/nope.json' does not exist"),
    (lambda m: m.replace("modelCard: evidence/model_card.md", "modelCard: ../../etc/passwd"), "leaves the release directory"),
    (lambda m: m.replace("modelCard: evidence/model_card.md", "modelCard: /etc/passwd"), "absolute path"),
])
def test_bad_manifest(release, tmp_path, mutate, needle):
    manifest = release / "mlgate.yaml"
    manifest.write_text(mutate(manifest.read_text()))
    code, out, err = check(release, tmp_path)
    assert code == 2
    line = error_line(err)
    assert needle in line and "mlgate.yaml" in line, line
    assert last_audit(tmp_path)["result"] == "error"


def test_huge_evidence_file(release, tmp_path):
    with open(release / "evidence" / "bias_audit.json", "r+b") as fh:
        fh.truncate(100_000_000)
    code, _, err = check(release, tmp_path)
    assert code == 2
    assert "evidence/bias_audit.json: file is 100.0 MB" in error_line(err)


@pytest.mark.parametrize("target", ["evidence/bias_audit.json", "evidence/validation_train.json", "evidence/model_card.md"])
def test_binary_garbage_evidence(release, tmp_path, target):
    (release / target).write_bytes(bytes(range(256)) * 4)
    code, _, err = check(release, tmp_path)
    assert code == 2
    assert target in error_line(err)


def test_garbage_approval_denies_with_reason(release, tmp_path):
    approval = next((release / "evidence" / "approvals").iterdir())
    approval.write_text('{"mediaType": "nonsense"}')
    code, decision, _ = check_json(release, "production", tmp_path / "audit.jsonl")
    assert code == 1
    assert any(v["id"] == "MLG-APPR-003" for v in decision["violations"])


def test_flipped_signature_byte_denies(release, tmp_path):
    approval = sorted((release / "evidence" / "approvals").iterdir())[0]
    doc = json.loads(approval.read_text())
    sig = doc["dsseEnvelope"]["signatures"][0]["sig"]
    doc["dsseEnvelope"]["signatures"][0]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    approval.write_text(json.dumps(doc))
    code, decision, _ = check_json(release, "production", tmp_path / "audit.jsonl")
    assert code == 1
    assert "MLG-APPR-003" in {v["id"] for v in decision["violations"]}


def test_changed_model_denies(release, tmp_path):
    (release / "model" / "config.json").write_text('{"tampered": true}\n')
    code, decision, _ = check_json(release, "production", tmp_path / "audit.jsonl")
    assert code == 1
    found = {v["id"] for v in decision["violations"]}
    assert "MLG-APPR-010" in found  # approvals name another digest now


def test_no_policy_loaded(release, tmp_path):
    empty = tmp_path / "empty-policy"
    empty.mkdir()
    code, _, err = check(release, tmp_path, "--policy", empty)
    assert code == 2
    assert "no Rego policy and no data found" in error_line(err)  # (a layer of data alone is a policy: thresholds above the library)
    assert last_audit(tmp_path)["result"] == "error"


def _policy(tmp_path, text):
    from mlgate.policy import bundled_policy_dir

    pol = tmp_path / "pol"
    shutil.copytree(bundled_policy_dir(), pol, ignore=shutil.ignore_patterns("*.rego", "__pycache__", "__init__.py"))
    (pol / "decision.rego").write_text(text)
    return pol


def test_undefined_decision_denies(release, tmp_path):
    pol = _policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": true} if input.nothing_here\n")
    code, _, err = check(release, tmp_path, "--policy", pol)
    assert code == 2
    assert "undefined" in error_line(err)


def test_string_true_is_not_allow(release, tmp_path):
    pol = _policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": \"true\", \"violations\": []}\n")
    code, out, _ = check(release, tmp_path, "--policy", pol)
    assert code == 1 and "MLG-CORE-002" in out


def test_engine_error_denies(release, tmp_path):
    pol = _policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": to_number(input.release.name)}\n")
    code, _, err = check(release, tmp_path, "--policy", pol)
    assert code == 2
    assert "policy evaluation failed" in error_line(err)


def test_engine_timeout_denies(release, tmp_path):
    slow = ("package mlgate\nimport rego.v1\ndecision := {\"allow\": count([1 | some i in numbers.range(1, 5000); "
            "some j in numbers.range(1, 5000); i < j]) > 0, \"violations\": []}\n")
    code, _, err = check(release, tmp_path, "--policy", _policy(tmp_path, slow), "--timeout", "0.2")
    assert code == 2
    assert "deadline" in error_line(err)
    assert last_audit(tmp_path)["result"] == "error"


def test_audit_write_failure_denies(release, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    code, out, err = run(["check", release, "--env", "production", "--audit-log", blocker / "audit.jsonl"])
    assert code == 2
    assert "audit record not written" in error_line(err)
    assert "ALLOWED" not in out


def test_torn_audit_log_denies_and_keeps_records(release, tmp_path):
    check(release, tmp_path)
    log = tmp_path / "audit.jsonl"
    before = log.read_bytes()
    with open(log, "ab") as fh:
        fh.write(b'{"torn":')
    code, _, err = check(release, tmp_path)
    assert code == 2 and "torn record" in err
    assert log.read_bytes().startswith(before)


def test_unknown_environment_is_an_error(release, tmp_path):
    # Issue 19: a mistyped environment is one error naming the valid ones (exit 2), not a wall of findings.
    code, decision, _ = check_json(release, "prod", tmp_path / "audit.jsonl")
    assert code == 2 and decision["result"] == "error" and not decision["violations"]
    assert "unknown environment 'prod'" in decision["error"]


def test_missing_release_dir(tmp_path):
    code, _, err = run(["check", tmp_path / "nowhere", "--env", "production", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 2
    assert "release directory not found" in error_line(err)


def test_missing_trust_policy(release, tmp_path):
    code, _, err = check(release, tmp_path, "--trust", tmp_path / "no-trust.yaml")
    assert code == 2
    assert "no-trust.yaml" in error_line(err)
