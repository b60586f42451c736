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
    assert set(approval) == {"artifact", "kind", "signer", "source", "meaning", "signed_at", "time_source", "status", "reason", "expires_at", "rules"}
    assert approval["rules"] == [] and approval["expires_at"].endswith("Z")


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
            "mods = [m for m in ('cryptography', 'sigstore', 'mlgate.signing.pki', 'mlgate.signing.verify', 'mlgate.signing.signers') if m in sys.modules]; "
            "print(mods)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- waivers (issue #5 part 6) -------------------------------------------------------------------

WAIVER = "evidence/waivers/w.sigstore.json"


def _waived_release(tmp_path: Path, **sign_args) -> Path:
    """A copy of triage-acuity carrying Dr. Jane Roe's waiver of MLG-BIAS-002/006 (signed 2026-11-28T12:00:00Z, 20 days)."""
    from test_waivers import sign

    release = tmp_path / "triage-acuity"
    shutil.copytree(EXAMPLES / "triage-acuity", release)
    assert "    waivers: [evidence/waivers/]\n" in (release / "mlgate.yaml").read_text()  # the example declares its waivers directory
    sign(release, **sign_args)
    return release


def _waiver_row(out: str) -> dict:
    (row,) = [r for r in json.loads(out)["signatures"] if r["kind"] == "waiver"]
    return row


def test_waiver_row(tmp_path: Path) -> None:
    release = _waived_release(tmp_path)
    code, out, err = run(["verify", release])
    assert code == 0, err
    (line,) = [line for line in out.splitlines() if line.startswith(WAIVER)]
    assert "Dr. Jane Roe <jane.roe@hospital.example>" in line and " key " in line
    assert "waiver of MLG-BIAS-002, MLG-BIAS-006 (clinical-safety-officer) for production" in line
    assert "2026-11-28T12:00:00Z  claimed      verified  expires at 2026-12-18T12:00:00Z (in 19.0 days)" in line
    assert out.splitlines()[-1] == "4 signature(s): 4 verified, 0 failed"
    code, out, _ = run(["verify", release, "-o", "json"])
    assert _waiver_row(out) == {
        "artifact": WAIVER, "kind": "waiver", "signer": "Dr. Jane Roe <jane.roe@hospital.example>", "source": "key",
        "meaning": "waiver of MLG-BIAS-002, MLG-BIAS-006 (clinical-safety-officer) for production",
        "signed_at": "2026-11-28T12:00:00Z", "status": "verified", "reason": "expires at 2026-12-18T12:00:00Z (in 19.0 days)",
        "expires_at": "2026-12-18T12:00:00Z", "rules": ["MLG-BIAS-002", "MLG-BIAS-006"], "time_source": "claimed",
    }


def test_expired_waiver_fails(tmp_path: Path) -> None:
    import datetime as dt

    release = _waived_release(tmp_path)
    code, out, _ = run(["verify", release, "-o", "json"], now=dt.datetime(2026, 12, 18, 13, tzinfo=dt.timezone.utc))
    assert code == 1
    row = _waiver_row(out)
    assert row["status"] == "failed" and row["reason"] == "expired at 2026-12-18T12:00:00Z (1.0 hours ago)"
    assert row["rules"] == ["MLG-BIAS-002", "MLG-BIAS-006"]  # still says what it waived


def test_tampered_waiver_fails(tmp_path: Path) -> None:
    release = _waived_release(tmp_path)
    path = release / WAIVER
    doc = json.loads(path.read_bytes())
    doc["dsseEnvelope"]["signatures"] = []
    path.write_text(json.dumps(doc))
    code, out, _ = run(["verify", release, "-o", "json"])
    assert code == 1
    row = _waiver_row(out)
    assert row["status"] == "failed" and row["reason"].startswith(WAIVER) and row["meaning"] == "waiver"


def test_waiver_for_another_model_fails(tmp_path: Path) -> None:
    from mlgate.evidence.model_digest import compute_model_digest

    other = compute_model_digest(EXAMPLES / "readmission-risk" / "model").root
    release = _waived_release(tmp_path, model_digest=other)
    code, out, _ = run(["verify", release, "-o", "json"])
    assert code == 1
    row = _waiver_row(out)
    assert row["status"] == "failed" and row["reason"].startswith(f"signed for model digest {other[:12]}, the release model is ")


def test_waiver_by_a_signer_without_the_role_fails(tmp_path: Path) -> None:
    from test_waivers import JANE

    release = _waived_release(tmp_path, signer={**JANE, "role": "data-steward"})
    code, out, _ = run(["verify", release, "-o", "json"])
    assert code == 1
    assert "not authorised by the trust policy for role data-steward / environment production" in _waiver_row(out)["reason"]
