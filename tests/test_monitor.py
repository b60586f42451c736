"""`mlgate monitor` (issue 7 part 5): bias recomputed with the gate's thresholds, PSI and KS drift,
a monitoring record, the audit trail and the exit code, on the triage-acuity-v2 windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run
from conftest import EXAMPLES

RELEASE = EXAMPLES / "triage-acuity-v2"
STABLE = RELEASE / "monitoring" / "window_2026-12.csv"
SHIFTED = RELEASE / "monitoring" / "window_2027-03.csv"
ARGS = ["--env", "production", "--label", "y_true", "--pred", "y_pred", "--sensitive", "ethnicity,sex"]


def monitor(window, tmp_path, *extra):
    log = tmp_path / "audit.jsonl"
    code, out, err = run(["monitor", RELEASE, "--window", window, *ARGS, "--audit-log", log, *extra])
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return code, out, err, records


def test_psi_and_ks():
    from mlgate.monitor import psi_categorical, psi_numeric

    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    assert psi_numeric(ref, rng.normal(0, 1, 5000)) < 0.01
    assert psi_numeric(ref, rng.normal(1, 1, 5000)) > 0.5
    assert psi_categorical(["a"] * 50 + ["b"] * 50, ["a"] * 50 + ["b"] * 50) == pytest.approx(0.0)
    # a category the reference never saw is a large shift, not a division by zero
    assert psi_categorical(["a"] * 100, ["a"] * 50 + ["c"] * 50) > 1
    assert psi_numeric([], [1.0]) is None


def test_stable_window_passes_and_is_recorded(tmp_path):
    out_file = tmp_path / "record.json"
    code, out, err, records = monitor(STABLE, tmp_path, "-o", out_file)
    assert code == 0, out + err
    assert "monitoring PASS" in out
    record = json.loads(out_file.read_text())
    assert record["apiVersion"] == "mlgate.dev/monitoring/v1" and record["result"] == "pass"
    assert record["window"]["rows"] == 14000 and record["reference"]["dataset"] == "train"
    assert {d["feature"] for d in record["drift"]} == {"age", "heart_rate", "resp_rate", "spo2", "sbp", "temp_c", "arrival_ambulance", "pain_score"}
    assert record["bias_audit"]["n_min"] == 30 and record["thresholds"]["monitoring"]["psi_max"] == 0.2
    (audit,) = records
    assert audit["action"] == "monitor" and audit["result"] == "allow"
    assert audit["subject_digest"] == record["model_digest"]


def test_shifted_window_fails_on_recall_gap_and_drift(tmp_path):
    code, out, err, records = monitor(SHIFTED, tmp_path)
    assert code == 1
    gap = next(line for line in out.splitlines() if "MLG-BIAS-002" in line)
    assert "ethnicity=Black" in gap and "p_holm" in gap
    drifted = {line.split("feature ")[1].split(" ")[0] for line in out.splitlines() if "MLG-MON-00" in line}
    assert {"age", "resp_rate"} <= drifted and "sbp" not in drifted
    assert records[-1]["result"] == "deny"


def test_signed_record_verifies(tmp_path):
    from mlgate.signing.attestation import verify_bundle
    from mlgate.signing.keys import load_public_key_pem

    out_file = tmp_path / "record.json"
    code, _, err, _ = monitor(STABLE, tmp_path, "-o", out_file, "--key", EXAMPLES / "keys" / "ml-platform-ci.key")
    assert code == 0, err
    pub = load_public_key_pem((EXAMPLES / "keys" / "ml-platform-ci.pub").read_bytes(), "ml-platform-ci.pub")
    bundle = Path(f"{out_file}.sigstore.json").read_bytes()
    verified = verify_bundle(bundle, "record.sigstore.json", [pub])
    statement = verified.statement if hasattr(verified, "statement") else verified[0]
    assert statement["predicateType"] == "https://mlgate.dev/attestation/monitoring/v1"
    assert statement["predicate"] == json.loads(out_file.read_text())


def test_parquet_window_gives_the_same_judgement(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    parquet = tmp_path / "window.parquet"
    pd.read_csv(SHIFTED).to_parquet(parquet)
    code, out, _, _ = monitor(parquet, tmp_path)
    assert code == 1 and "MLG-BIAS-002" in out and "MLG-MON-001" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--features", "age,blood_type"], "feature column 'blood_type' not found"),
        (["--reference", "/nonexistent/train.csv"], "file not found"),
    ],
)
def test_bad_input_is_an_audited_error(tmp_path, extra, message):
    code, out, err, records = monitor(STABLE, tmp_path, *extra)
    assert code == 2 and message in err and "Traceback" not in err
    assert records[-1]["result"] == "error" and message in records[-1]["error"]


def test_missing_columns_and_unknown_environment(tmp_path):
    window = tmp_path / "w.csv"
    window.write_text("age,y_true\n40,1\n")
    code, _, err, records = monitor(window, tmp_path)
    assert code == 2 and "'y_pred', 'ethnicity', 'sex'" in err
    log = tmp_path / "b.jsonl"
    code, _, err = run(["monitor", RELEASE, "--window", STABLE, "--env", "qa", "--label", "y_true", "--pred", "y_pred",
                        "--sensitive", "ethnicity", "--audit-log", log])
    assert code == 2 and "unknown environment 'qa'; the policy defines dev, production, staging" in err
    code, _, err = run(["monitor", RELEASE, "--window", STABLE, *ARGS, "--key", "k.key"])
    assert code == 2 and "give both" in err
