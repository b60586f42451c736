"""``mlgate verify RELEASE``: the signature table, JSON, exit codes; and the CLI stays light."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from cli_helpers import run
from conftest import EXAMPLES


def test_table_for_an_allowed_release() -> None:
    code, out, err = run(["verify", EXAMPLES / "readmission-risk"])
    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("artifact"))
    for column in ("artifact", "signer", "source", "meaning", "signed_at", "status", "reason"):
        assert column in header
    jane = next(line for line in lines if "jane.roe_hospital.example.approval.production" in line)
    # 21 CFR 11.50: printed name, meaning and date/time on the row
    assert "Dr. Jane Roe <jane.roe@hospital.example>" in jane and "approval (clinical-safety-officer) for production" in jane
    assert "2026-11-16T09:00:00Z" in jane and " key " in jane and "verified" in jane
    assert any(line.startswith("model.sig") and "verified" in line for line in lines)
    assert lines[-1] == "4 signature(s): 4 verified, 0 failed"


def test_json_and_failed_exit_for_a_retrained_model() -> None:
    code, out, _ = run(["verify", EXAMPLES / "chest-xray", "-o", "json"])
    assert code == 1
    report = json.loads(out)
    assert report["apiVersion"] == "mlgate.dev/verify/v1" and report["ok"] is False
    approval = next(r for r in report["signatures"] if r["kind"] == "approval")
    assert approval["status"] == "failed" and approval["source"] == "key"
    assert "signed for model digest" in approval["reason"] and "evidence changed since signing: evidence/bias_audit.json" in approval["reason"]
    assert set(approval) == {"artifact", "kind", "signer", "source", "meaning", "signed_at", "status", "reason"}


def test_expired_at_evaluation_time() -> None:
    import datetime as dt

    later = dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)
    code, out, _ = run(["verify", EXAMPLES / "readmission-risk", "-o", "json"], now=later)
    assert code == 1
    assert any("expired at" in r["reason"] for r in json.loads(out)["signatures"])


def test_release_without_signatures(tmp_path: Path) -> None:
    release = tmp_path / "r"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    shutil.rmtree(release / "evidence" / "approvals")
    (release / "evidence" / "approvals").mkdir()
    text = (release / "mlgate.yaml").read_text().replace("    signature: model.sig\n", "")
    (release / "mlgate.yaml").write_text(text)
    code, out, _ = run(["verify", release])
    assert code == 1 and "no signatures in the release" in out


def test_unreadable_release_and_trust(tmp_path: Path) -> None:
    code, _, err = run(["verify", tmp_path / "nope"])
    assert code == 2 and err.startswith("mlgate: error: ") and len(err.strip().splitlines()) == 1
    (tmp_path / "trust.yaml").write_text("apiVersion: mlgate.dev/v1\nkind: TrustPolicy\n")
    code, _, err = run(["verify", EXAMPLES / "readmission-risk", "--trust", tmp_path / "trust.yaml"])
    assert code == 2 and "trust.yaml: $: 'approvers' is required" in err


def test_help_does_not_import_crypto() -> None:
    code = ("import sys; from mlgate.cli import cli; "
            "mods = [m for m in ('cryptography', 'sigstore', 'mlgate.pki', 'mlgate.verify', 'mlgate.signers') if m in sys.modules]; "
            "print(mods)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
