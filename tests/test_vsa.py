"""Signed verification summaries (issue 20 part 3): ``mlgate check --attest KEY`` writes a SLSA
Verification Summary Attestation of the decision; ``mlgate verify`` (and
:func:`mlgate.signing.summary.verify_summary`) accepts it only signed by a trusted summary
signer, for this model digest and environment, younger than the maximum age, over the evidence
as it is, and PASSED."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil

import pytest

from cli_helpers import run
from conftest import EXAMPLES, EXAMPLES_NOW
from mlgate.signing.keys import generate_keypair, load_private_key_pem
from mlgate.signing.summary import PREDICATE_TYPE, parse_max_age, verify_summary
from mlgate.signing.trust import load_trust_policy

SUMMARY = ".mlgate/verification-{env}.sigstore.json"


def _trust_with(path, pub_pem: bytes | None, *, extra: str = "") -> None:
    text = (EXAMPLES / "trust.yaml").read_text()
    if pub_pem is not None:
        text += "summarySigners:\n  - id: ci.hospital.example\n    name: Release CI\n    keys:\n      - pem: |\n"
        text += "".join(f"          {line}\n" for line in pub_pem.decode().strip().splitlines())
        text += extra
    path.write_text(text)


@pytest.fixture
def setup(tmp_path):
    private, public = generate_keypair("ecdsa-p256")
    (tmp_path / "ci.key").write_bytes(private)
    _trust_with(tmp_path / "trust.yaml", public)
    return tmp_path


def _copy(tmp_path, name):
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target)
    return target


def _attest(tmp_path, release, env, *extra, now=EXAMPLES_NOW):
    return run(["check", release, "--env", env, "-o", "json", "--trust", tmp_path / "trust.yaml",
                "--audit-log", tmp_path / "audit.jsonl", "--attest", tmp_path / "ci.key", *extra], now=now)


def _verify(tmp_path, release, *extra, now=EXAMPLES_NOW, trust=None):
    code, out, err = run(["verify", release, "-o", "json", "--trust", trust or tmp_path / "trust.yaml", *extra], now=now)
    assert code in (0, 1), err
    report = json.loads(out)
    rows = [r for r in report["signatures"] if r["kind"] == "verification-summary"]
    return code, rows


def _statement(path):
    bundle = json.loads(path.read_bytes())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def test_allowed_example_writes_a_summary_that_verifies(setup):
    release = _copy(setup, "readmission-risk")
    code, out, err = _attest(setup, release, "staging")
    assert code == 0, err
    decision = json.loads(out)
    path = release / SUMMARY.format(env="staging")
    assert "verification summary (PASSED) written to" in err and path.is_file()

    statement = _statement(path)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == PREDICATE_TYPE == "https://slsa.dev/verification_summary/v1"
    assert statement["subject"] == [{"name": "readmission-risk@1.4.0", "digest": {"sha256": decision["model_digest"]}}]
    p = statement["predicate"]
    assert p["verifier"]["id"] == "https://mlgate.dev/verifier" and p["verifier"]["version"]["mlgate"]
    assert p["timeVerified"] == decision["evaluated_at"]
    assert p["resourceUri"] == "s3://models.hospital.example/readmission-risk/1.4.0/"
    assert p["policy"]["digest"] == {"sha256": decision["policy_revision"]}
    assert {a["uri"]: a["digest"]["sha256"] for a in p["inputAttestations"]} == decision["evidence_digests"]
    assert any(a["uri"].startswith("evidence/approvals/") for a in p["inputAttestations"])
    assert p["verificationResult"] == "PASSED" and p["verifiedLevels"] == ["MLGATE_ENV_staging"] and p["slsaVersion"] == "1.0"
    assert p["mlgate"]["environment"] == "staging" and p["mlgate"]["decisionId"] == decision["decision_id"]
    assert p["mlgate"]["warnings"] == sorted({w["id"] for w in decision["warnings"]})

    code, rows = _verify(setup, release, now=EXAMPLES_NOW + dt.timedelta(minutes=5))
    assert code == 0
    assert [(r["status"], r["meaning"], r["signer"]) for r in rows] == [
        ("verified", "verification summary PASSED for staging", "Release CI <ci.hospital.example>")]
    # The text report shows the row too.
    code, out, _ = run(["verify", release, "--trust", setup / "trust.yaml"], now=EXAMPLES_NOW)
    assert code == 0 and ".mlgate/verification-staging.sigstore.json" in out and "PASSED for staging" in out


def test_tampered_summary_is_refused(setup):
    release = _copy(setup, "readmission-risk")
    assert _attest(setup, release, "staging")[0] == 0
    path = release / SUMMARY.format(env="staging")
    bundle = json.loads(path.read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["mlgate"]["warnings"] = []  # a finding removed
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(bundle))
    code, rows = _verify(setup, release)
    assert code == 1
    assert rows[0]["status"] == "failed" and "signature does not verify" in rows[0]["reason"], rows


def test_summary_older_than_max_age_is_refused(setup):
    release = _copy(setup, "readmission-risk")
    assert _attest(setup, release, "staging")[0] == 0
    code, rows = _verify(setup, release, "--summary-max-age", "24h", now=EXAMPLES_NOW + dt.timedelta(hours=23))
    assert code == 0 and rows[0]["status"] == "verified"
    code, rows = _verify(setup, release, "--summary-max-age", "24h", now=EXAMPLES_NOW + dt.timedelta(hours=25))
    assert code == 1 and rows[0]["status"] == "failed" and "older than the maximum age" in rows[0]["reason"], rows
    # A summary from the future (a signer's clock ahead of ours) is not fresh either.
    code, rows = _verify(setup, release, now=EXAMPLES_NOW - dt.timedelta(hours=1))
    assert code == 1 and "in the future" in rows[0]["reason"]
    code, _out, err = run(["verify", release, "--trust", setup / "trust.yaml", "--summary-max-age", "soon"])
    assert code == 2 and "--summary-max-age" in err and "Traceback" not in err


def test_summary_for_another_model_digest_is_refused(setup):
    other = _copy(setup, "triage-acuity-v2")
    assert _attest(setup, other, "production")[0] == 0
    release = _copy(setup, "readmission-risk")
    (release / ".mlgate").mkdir()
    shutil.copy(other / SUMMARY.format(env="production"), release / SUMMARY.format(env="production"))
    code, rows = _verify(setup, release)
    assert code == 1 and rows[0]["status"] == "failed" and "for model digest" in rows[0]["reason"], rows
    # The same when the model itself changes after the summary.
    assert _attest(setup, release, "staging")[0] == 0
    weights = next(p for p in sorted((release / "model").rglob("*")) if p.is_file())
    weights.write_bytes(weights.read_bytes() + b"\0")
    code, rows = _verify(setup, release)
    staging = next(r for r in rows if r["artifact"].endswith("verification-staging.sigstore.json"))
    assert staging["status"] == "failed" and "for model digest" in staging["reason"]


def test_summary_for_another_environment_is_refused(setup):
    release = _copy(setup, "readmission-risk")
    assert _attest(setup, release, "staging")[0] == 0
    staging = release / SUMMARY.format(env="staging")
    data = staging.read_bytes()
    trust = load_trust_policy(setup / "trust.yaml")
    assert verify_summary(data, "s", trust, now=EXAMPLES_NOW, environment="staging").ok
    check = verify_summary(data, "s", trust, now=EXAMPLES_NOW, environment="production")
    assert not check.ok and "for environment 'staging', not 'production'" in check.reason
    # A staging summary put where the production one belongs.
    staging.rename(release / SUMMARY.format(env="production"))
    code, rows = _verify(setup, release)
    assert code == 1 and rows[0]["status"] == "failed" and "named for another environment" in rows[0]["reason"], rows


def test_summary_signed_by_an_untrusted_key_is_refused(setup, tmp_path):
    release = _copy(setup, "readmission-risk")
    stranger, _public = generate_keypair("ecdsa-p256")
    (setup / "stranger.key").write_bytes(stranger)
    code, _out, err = _attest(setup, release, "staging", "--attest", setup / "stranger.key")
    assert code == 0, err
    code, rows = _verify(setup, release)
    assert code == 1 and rows[0]["status"] == "failed" and "unknown key hint" in rows[0]["reason"], rows
    # An approver's key (trusted for approvals) is no summary signer either.
    assert _attest(setup, release, "staging", "--attest", EXAMPLES / "keys" / "jane.roe.key")[0] == 0
    code, rows = _verify(setup, release)
    assert code == 1 and "unknown key hint" in rows[0]["reason"]
    # A trust policy without summarySigners trusts no summary.
    bare = tmp_path / "bare-trust.yaml"
    _trust_with(bare, None)
    assert _attest(setup, release, "staging")[0] == 0
    code, rows = _verify(setup, release, trust=bare)
    assert code == 1 and "lists no summarySigners" in rows[0]["reason"]


def test_summary_signer_key_revoked_for_compromise_is_refused(setup):
    private, public = generate_keypair("ecdsa-p256")
    (setup / "ci.key").write_bytes(private)
    _trust_with(setup / "trust.yaml", public, extra='        revoked: {at: "2026-11-20T00:00:00Z", reason: keyCompromise}\n')
    release = _copy(setup, "readmission-risk")
    assert _attest(setup, release, "staging")[0] == 0
    code, rows = _verify(setup, release)
    assert code == 1 and "revoked" in rows[0]["reason"], rows


def test_failed_summary_never_allows(setup):
    release = _copy(setup, "triage-acuity")
    code, out, err = _attest(setup, release, "production")
    assert code == 1, err
    path = release / SUMMARY.format(env="production")
    assert "verification summary (FAILED) written to" in err
    p = _statement(path)["predicate"]
    assert p["verificationResult"] == "FAILED" and p["verifiedLevels"] == ["FAILED"]
    assert "MLG-BIAS-002" in p["mlgate"]["violations"]
    check = verify_summary(path.read_bytes(), "f", load_trust_policy(setup / "trust.yaml"), now=EXAMPLES_NOW,
                           model_digest=_statement(path)["subject"][0]["digest"]["sha256"], environment="production")
    assert check.signed and not check.ok and "FAILED" in check.reason
    code, rows = _verify(setup, release)
    assert code == 1 and rows[0]["status"] == "failed" and "verification result is FAILED (" in rows[0]["reason"]


def test_evidence_changed_after_the_summary_is_refused(setup):
    release = _copy(setup, "readmission-risk")
    assert _attest(setup, release, "staging")[0] == 0
    card = release / "evidence" / "model_card.md"
    card.write_text(card.read_text() + "\nEdited after the check.\n")
    code, rows = _verify(setup, release)
    summary = next(r for r in rows if r["artifact"].endswith("verification-staging.sigstore.json"))
    assert code == 1 and summary["status"] == "failed" and "evidence changed since verification: evidence/model_card.md" in summary["reason"]


def test_bad_attest_key_is_refused_before_deciding(setup):
    release = _copy(setup, "readmission-risk")
    (setup / "bad.key").write_text("not a key")
    code, _out, err = _attest(setup, release, "staging", "--attest", setup / "bad.key")
    assert code == 2 and "bad.key" in err and "Traceback" not in err
    assert not (setup / "audit.jsonl").exists()  # no decision was made
    code, _out, err = run(["check", release, "--env", "staging", "--audit-log", setup / "a.jsonl", "--attest-output", setup / "x.json"])
    assert code == 2 and "--attest" in err


def test_no_summary_for_an_error_decision(setup):
    release = _copy(setup, "readmission-risk")
    code, _out, err = _attest(setup, release, "no-such-env")
    assert code == 2
    assert not (release / ".mlgate").exists() and "no verification summary written" in err


def test_attest_output_and_parse_max_age(setup):
    release = _copy(setup, "readmission-risk")
    target = setup / "out" / "vsa.json"
    assert _attest(setup, release, "staging", "--attest-output", target)[0] == 0
    assert _statement(target)["predicate"]["verificationResult"] == "PASSED"
    assert not (release / ".mlgate").exists()
    assert parse_max_age("24h") == dt.timedelta(hours=24) and parse_max_age("7d") == dt.timedelta(days=7)
    for bad in ("0h", "24", "-1h", "1w", 24, None):
        with pytest.raises(Exception, match="positive duration"):
            parse_max_age(bad)
    # Keys are loaded the same way the CLI loads them.
    load_private_key_pem((setup / "ci.key").read_bytes(), "ci.key")
