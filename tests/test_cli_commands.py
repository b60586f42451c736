"""keygen, approve and evidence bias through the CLI: the commands a person types."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat

import pytest

from cli_helpers import check_json, run
from conftest import EXAMPLES, EXAMPLES_NOW


@pytest.fixture
def release(tmp_path):
    dst = tmp_path / "readmission-risk"
    shutil.copytree(EXAMPLES / "readmission-risk", dst)
    return dst


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_keygen_writes_private_key_0600(tmp_path, kind):
    code, out, _ = run(["keygen", "--type", kind, "-o", tmp_path / "k" / "alice"])
    assert code == 0 and "key id" in out
    key = tmp_path / "k" / "alice.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "k" / "alice.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_keygen_refuses_to_overwrite(tmp_path):
    run(["keygen", "-o", tmp_path / "a"])
    before = (tmp_path / "a.key").read_bytes()
    code, _, err = run(["keygen", "-o", tmp_path / "a"])
    assert code == 2 and "exists" in one_error_line(err)
    assert (tmp_path / "a.key").read_bytes() == before


def _approve(release, *extra, key="jane.roe", env="production", when=EXAMPLES_NOW - dt.timedelta(hours=1)):
    return run(["approve", release, "--key", EXAMPLES / "keys" / f"{key}.key", "--name", "Dr. Jane Roe",
                "--id", "jane.roe@hospital.example", "--role", "clinical-safety-officer", "--meaning", "approval",
                "--env", env, "--expires", "2027-06-30T00:00:00Z", *extra], now=when)


def test_reapproval_after_evidence_change_restores_allow(release, tmp_path):
    card = release / "evidence" / "model_card.md"
    card.write_text(card.read_text() + "\nReviewed by the clinical safety board on 2026-11-28.\n")
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1 and "MLG-APPR-012" in {v["id"] for v in decision["violations"]}
    # Both production signers sign again over the changed evidence (replacing their own approvals: --force).
    code, out, _ = _approve(release, "--force")
    assert code == 0 and "jane.roe_hospital.example.approval.production.sigstore.json" in out
    code, _, _ = run(["approve", release, "--key", EXAMPLES / "keys" / "sam.patel.key", "--name", "Sam Patel",
                      "--id", "sam.patel@hospital.example", "--role", "quality-assurance", "--meaning", "review",
                      "--env", "production", "--expires", "2027-06-30T00:00:00Z", "--force"], now=EXAMPLES_NOW - dt.timedelta(hours=1))
    assert code == 0
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 0, decision["violations"]


def test_approval_signed_with_someone_elses_key_is_not_verified(release, tmp_path):
    out = tmp_path / "forged.sigstore.json"
    code, _, _ = _approve(release, "-o", release / "evidence" / "approvals" / "forged.sigstore.json", key="sam.patel")
    assert code == 0
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1
    assert any(v["id"] == "MLG-APPR-003" and "forged" in v["message"] for v in decision["violations"])
    assert not out.exists()


def test_approve_errors_are_one_line(release, tmp_path):
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a key")
    code, _, err = run(["approve", release, "--key", garbage, "--name", "X", "--id", "x@y", "--role", "r",
                        "--meaning", "approval", "--env", "production"])
    assert code == 2 and "garbage.key" in one_error_line(err)
    code, _, err = _approve(release, when=dt.datetime(2027, 7, 1, tzinfo=dt.timezone.utc))
    assert code == 2 and "--expires" in one_error_line(err) and "not in the future" in err
    code, _, err = _approve(tmp_path / "nowhere")
    assert code == 2 and "release directory not found" in one_error_line(err)


def test_evidence_bias_round_trip(tmp_path):
    preds = tmp_path / "preds.csv"
    rows = ["y_true,y_pred,group"] + [f"1,{int(i % 10 < 8)},A" for i in range(100)] + [f"1,{int(i % 10 < 5)},B" for i in range(100)]
    preds.write_text("\n".join(rows) + "\n")
    out = tmp_path / "bias.json"
    code, stdout, _ = run(["evidence", "bias", "--predictions", preds, "--label", "y_true", "--pred", "y_pred",
                           "--sensitive", "group", "--model-digest", "ab" * 32, "-o", out])
    assert code == 0 and "2 groups" in stdout
    record = json.loads(out.read_text())
    assert record["subject_digest"] == "ab" * 32 and record["created_at"] == "2026-11-29T12:00:00Z"
    b = next(c for c in record["comparisons"] if c["group"] == "B")
    assert b["value"] == 0.5 and b["reference_value"] == 0.8 and b["gap"] == pytest.approx(0.3)
    assert b["p_holm"] < 0.001


def test_evidence_bias_bad_column_is_one_line(tmp_path):
    preds = tmp_path / "preds.csv"
    preds.write_text("y_true,y_pred,group\n1,1,A\n")
    code, _, err = run(["evidence", "bias", "--predictions", preds, "--label", "label", "--pred", "y_pred",
                        "--sensitive", "group", "-o", tmp_path / "b.json"])
    assert code == 2 and "preds.csv" in one_error_line(err) and "label" in err
