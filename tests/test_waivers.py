"""Signed waivers (issue #5 part 6): sign, verify, and their effect on real decisions.

The Rego side (every reason a waiver does not apply) is unit-tested in
policies/mlgate/waivers_test.rego; here the whole path is exercised on a copy of the
triage-acuity example (denied in production for MLG-BIAS-002 and MLG-BIAS-006): a signed
waiver file, the collector, the policy, the decision, the audit record, the CLI outputs.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import check_json, run
from conftest import EXAMPLES, EXAMPLES_NOW

from mlgate.signing.attestation import make_statement, sign_statement
from mlgate.errors import InputError
from mlgate.evidence.model_digest import compute_model_digest
from mlgate.evidence.waiver import PREDICATE_TYPE, create_waiver, verify_waiver
from mlgate.signing.keys import load_private_key_pem
from mlgate.manifest import load_release
from mlgate.signing.trust import load_trust_policy

KEYS = EXAMPLES / "keys"
TRUST = load_trust_policy(EXAMPLES / "trust.yaml")
BIAS_RULES = ["MLG-BIAS-002", "MLG-BIAS-006"]
JUSTIFICATION = "Charge nurse double-checks every high-acuity score for Black patients until v2 ships (CAPA-2026-114)."
JANE = {"printed_name": "Dr. Jane Roe", "signer_id": "jane.roe@hospital.example", "role": "clinical-safety-officer"}
SAM = {"printed_name": "Sam Patel", "signer_id": "sam.patel@hospital.example", "role": "quality-assurance"}


def key(name: str) -> bytes:
    return (KEYS / f"{name}.key").read_bytes()


@pytest.fixture
def triage(tmp_path) -> Path:
    """A copy of the triage-acuity example, whose manifest lists a waivers directory (empty)."""
    root = tmp_path / "triage-acuity"
    shutil.copytree(EXAMPLES / "triage-acuity", root)
    assert "    waivers: [evidence/waivers/]\n" in (root / "mlgate.yaml").read_text()
    assert [p.name for p in (root / "evidence" / "waivers").iterdir()] == [".gitkeep"]
    return root


def digest_of(release: Path) -> str:
    return compute_model_digest(release / "model").root


def sign(release: Path, *, signer=JANE, key_name="jane.roe", rules=BIAS_RULES, env="production", days=20.0,
         signed_at=EXAMPLES_NOW - dt.timedelta(days=1), model_digest=None, name="w.sigstore.json", bind=True) -> Path:
    bundle = create_waiver(
        key(key_name), release_name="triage-acuity", model_digest=model_digest or digest_of(release), rules=list(rules),
        environment=env, justification=JUSTIFICATION, signed_at=signed_at, expires_at=signed_at + dt.timedelta(days=days),
        ticket="CAPA-2026-114", release=load_release(release).binding if bind else None, **signer,
    )
    path = release / "evidence" / "waivers" / name
    path.write_bytes(bundle)
    return path


# --- signing and verification ------------------------------------------------------------------


def test_signed_waiver_verifies_with_its_facts(triage):
    path = sign(triage)
    record = verify_waiver(path.read_bytes(), "evidence/waivers/w.sigstore.json", trust=TRUST)
    assert record["verified"], record["reason"]
    assert record["rules"] == BIAS_RULES
    assert record["subject_digest"] == digest_of(triage)
    assert record["environment"] == "production"
    assert record["role"] == "clinical-safety-officer" and record["role_authorised"] and record["environment_authorised"]
    assert record["expires_at"] == "2026-12-18T12:00:00Z"
    assert record["expires_at_ns"] - record["signed_at_ns"] == 20 * 86_400 * 10**9
    assert record["justification"] == JUSTIFICATION and record["ticket"] == "CAPA-2026-114"
    assert record["manifestation"] == "Dr. Jane Roe, risk acceptance of MLG-BIAS-002, MLG-BIAS-006 as clinical-safety-officer, signed 2026-11-28T12:00:00Z"


def test_tampered_waiver_is_not_verified(triage):
    path = sign(triage)
    doc = json.loads(path.read_bytes())
    import base64

    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload["predicate"]["expiresAt"] = "2027-12-31T00:00:00Z"  # a longer waiver, same signature
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    record = verify_waiver(json.dumps(doc).encode(), "w.json", trust=TRUST)
    assert not record["verified"]
    assert "signature" in record["reason"]


def test_waiver_claiming_another_signer_is_not_verified(triage):
    forged = create_waiver(
        key("sam.patel"), release_name="triage-acuity", model_digest=digest_of(triage), rules=BIAS_RULES, environment="production",
        justification=JUSTIFICATION, signed_at=EXAMPLES_NOW, expires_at=EXAMPLES_NOW + dt.timedelta(days=5), **JANE,
    )
    record = verify_waiver(forged, "w.json", trust=TRUST)
    assert not record["verified"]
    assert "but the waiver claims signer 'jane.roe@hospital.example'" in record["reason"]


def test_approval_is_not_a_waiver(triage):
    approval = next((triage / "evidence" / "approvals").iterdir())
    record = verify_waiver(approval.read_bytes(), "a.json", trust=TRUST)
    assert not record["verified"]
    assert f"expected {PREDICATE_TYPE!r}" in record["reason"]


def test_waiver_without_expiry_is_not_verified(triage):
    statement = make_statement([{"name": "triage-acuity", "digest": {"sha256": digest_of(triage)}}], PREDICATE_TYPE, {
        "rules": BIAS_RULES, "environment": "production", "justification": JUSTIFICATION,
        "signer": {"id": JANE["signer_id"], "printedName": JANE["printed_name"]}, "role": JANE["role"],
        "signedAt": "2026-11-28T12:00:00Z", "expiresAt": None,
    })
    bundle = sign_statement(statement, load_private_key_pem(key("jane.roe"), "jane.roe.key"))
    record = verify_waiver(bundle, "w.json", trust=TRUST)
    assert not record["verified"]
    assert "dsseEnvelope.payload.predicate.expiresAt" in record["reason"]


@pytest.mark.parametrize("change, field", [
    ({"rules": ["bias-002"]}, "predicate.rules[0]"),
    ({"rules": []}, "predicate.rules"),
    ({"justification": "because"}, "predicate.justification"),
])
def test_create_refuses_what_the_verifier_would_refuse(triage, change, field):
    args = dict(release_name="triage-acuity", model_digest=digest_of(triage), rules=BIAS_RULES, environment="production",
                justification=JUSTIFICATION, signed_at=EXAMPLES_NOW, expires_at=EXAMPLES_NOW + dt.timedelta(days=5), **JANE)
    args.update(change)
    with pytest.raises(InputError) as err:
        create_waiver(key("jane.roe"), **args)
    assert field in err.value.diagnostics()


def test_create_refuses_an_expiry_before_signing(triage):
    with pytest.raises(InputError, match="is not after signed_at"):
        create_waiver(key("jane.roe"), release_name="t", model_digest=digest_of(triage), rules=BIAS_RULES, environment="production",
                      justification=JUSTIFICATION, signed_at=EXAMPLES_NOW, expires_at=EXAMPLES_NOW, **JANE)


# --- effect on decisions -------------------------------------------------------------------------


def test_without_waiver_triage_is_denied_for_bias(triage, tmp_path):
    code, decision, _ = check_json(triage, "production", tmp_path / "a.jsonl")
    assert code == 1
    assert {v["id"] for v in decision["violations"]} == set(BIAS_RULES)
    assert decision["waivers"] == []


def test_valid_waiver_turns_the_violations_into_warnings_and_is_recorded(triage, tmp_path):
    path = sign(triage)
    audit = tmp_path / "a.jsonl"
    code, decision, _ = check_json(triage, "production", audit)
    assert code == 0, decision["violations"]
    assert decision["allowed"] and decision["violations"] == []
    waived = [w for w in decision["warnings"] if w["id"] in BIAS_RULES]
    assert len(waived) == 2
    for w in waived:
        assert w["message"].startswith("WAIVED by Dr. Jane Roe (clinical-safety-officer) until 2026-12-18T12:00:00Z [evidence/waivers/w.sigstore.json]: ")
        assert w["waiver"]["justification"] == JUSTIFICATION and w["waiver"]["signer_id"] == "jane.roe@hospital.example"
    assert decision["waivers"] == [{
        "path": "evidence/waivers/w.sigstore.json", "signer_id": "jane.roe@hospital.example", "printed_name": "Dr. Jane Roe",
        "role": "clinical-safety-officer", "expires_at": "2026-12-18T12:00:00Z", "justification": JUSTIFICATION, "reason": None,
        "applied": True, "rules": BIAS_RULES, "waived": BIAS_RULES,
    }]
    record = json.loads(audit.read_text().splitlines()[-1])
    assert record["result"] == "allow"
    assert record["waivers"][0]["applied"] is True
    assert {w["id"] for w in record["warnings"] if "waiver" in w} == set(BIAS_RULES)
    assert record["evidence_digests"]["evidence/waivers/w.sigstore.json"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()


def _denied_like_without(triage, tmp_path, *, now=EXAMPLES_NOW) -> dict:
    code, decision, _ = check_json(triage, "production", tmp_path / "a.jsonl", now=now)
    assert code == 1
    assert {v["id"] for v in decision["violations"]} == set(BIAS_RULES)
    assert not any(w.get("waiver") for w in decision["warnings"])
    assert len(decision["waivers"]) == 1 and decision["waivers"][0]["applied"] is False
    return decision["waivers"][0]


def test_expired_waiver_changes_nothing(triage, tmp_path):
    sign(triage, days=20)
    entry = _denied_like_without(triage, tmp_path, now=EXAMPLES_NOW + dt.timedelta(days=19, hours=1))
    assert entry["reason"] == "expired at 2026-12-18T12:00:00Z"


def test_unsigned_waiver_changes_nothing(triage, tmp_path):
    path = sign(triage)
    doc = json.loads(path.read_bytes())
    doc["dsseEnvelope"]["signatures"] = []
    path.write_text(json.dumps(doc))
    assert _denied_like_without(triage, tmp_path)["reason"].startswith("not verified: evidence/waivers/w.sigstore.json")


def test_waiver_for_another_model_changes_nothing(triage, tmp_path):
    sign(triage, model_digest=compute_model_digest(EXAMPLES / "readmission-risk" / "model").root)
    assert _denied_like_without(triage, tmp_path)["reason"].startswith("waives model ")


def test_waiver_of_another_rule_changes_nothing(triage, tmp_path):
    sign(triage, rules=["MLG-CARD-001"])
    assert _denied_like_without(triage, tmp_path)["reason"] == "names no rule that reported a violation"


def test_waiver_by_a_role_that_may_not_accept_risk_changes_nothing(triage, tmp_path):
    sign(triage, signer=SAM, key_name="sam.patel")
    assert _denied_like_without(triage, tmp_path)["reason"].startswith("role quality-assurance may not accept risk in production")


def test_waiver_longer_than_the_policy_maximum_changes_nothing(triage, tmp_path):
    sign(triage, days=45)
    assert _denied_like_without(triage, tmp_path)["reason"] == "valid for 45 days, more than waivers.max_days 30"


def test_waiver_for_staging_does_not_apply_in_production(triage, tmp_path):
    sign(triage, env="staging")
    assert _denied_like_without(triage, tmp_path)["reason"] == "is for environment staging, not production"


def test_partial_waiver_leaves_the_other_violation(triage, tmp_path):
    sign(triage, rules=["MLG-BIAS-002"])
    code, decision, _ = check_json(triage, "production", tmp_path / "a.jsonl")
    assert code == 1
    assert [v["id"] for v in decision["violations"]] == ["MLG-BIAS-006"]
    assert decision["waivers"][0]["waived"] == ["MLG-BIAS-002"]


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_waive_then_check_text_and_sarif(triage, tmp_path):
    code, out, err = run(["waive", triage, "--rule", "MLG-BIAS-002", "--rule", "MLG-BIAS-006", "--env", "production",
                          "--justification", JUSTIFICATION, "--expires", "2026-12-20T00:00:00Z", "--key", KEYS / "jane.roe.key",
                          "--name", "Dr. Jane Roe", "--id", "jane.roe@hospital.example", "--role", "clinical-safety-officer"])
    assert code == 0, err
    written = [p for p in (triage / "evidence" / "waivers").iterdir() if not p.name.startswith(".")]
    assert len(written) == 1 and str(written[0]) in out
    code, out, _ = run(["check", triage, "--env", "production", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 0
    assert "ALLOWED" in out and "waivers:\n  applied  evidence/waivers/" in out and f"justification: {JUSTIFICATION}" in out
    code, out, _ = run(["check", triage, "--env", "production", "-o", "sarif", "--audit-log", tmp_path / "a.jsonl"])
    results = json.loads(out)["runs"][0]["results"]
    suppressed = [r for r in results if r.get("suppressions")]
    assert {r["ruleId"] for r in suppressed} == set(BIAS_RULES)
    assert suppressed[0]["suppressions"][0]["status"] == "accepted"
    assert suppressed[0]["suppressions"][0]["justification"] == JUSTIFICATION


@pytest.mark.parametrize("args, message", [
    (["--rule", "bias"], "predicate.rules[0]"),
    (["--rule", "MLG-BIAS-002", "--expires", "2026-11-01T00:00:00Z"], "--expires: 2026-11-01T00:00:00Z is not in the future"),
    (["--rule", "MLG-BIAS-002", "--expires", "soon"], "--expires: invalid time"),
])
def test_cli_waive_bad_input_is_one_line_error(triage, args, message):
    base = {"--env": "production", "--justification": JUSTIFICATION, "--expires": "2026-12-20T00:00:00Z", "--key": KEYS / "jane.roe.key",
            "--name": "Dr. Jane Roe", "--id": "jane.roe@hospital.example", "--role": "clinical-safety-officer"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for k, v in base.items() if k != "--rule" for x in (k, v)] + ["--rule", base["--rule"]]
    code, _, err = run(["waive", triage, *flat])
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not [p for p in (triage / "evidence" / "waivers").iterdir() if not p.name.startswith(".")]


def test_cli_waive_needs_an_expiry(triage):
    code, _, err = run(["waive", triage, "--rule", "MLG-BIAS-002", "--env", "production", "--justification", JUSTIFICATION,
                        "--key", KEYS / "jane.roe.key", "--name", "Dr. Jane Roe", "--id", "jane.roe@hospital.example", "--role", "clinical-safety-officer"])
    assert code == 2 and "--expires" in err


# --- the admission webhook -------------------------------------------------------------------------


def test_webhook_admits_a_waived_release_with_the_waiver_as_warnings(triage, tmp_path):
    """Over TLS, as the apiserver calls it: the store holds the waived copy of triage-acuity; the
    Deployment is allowed, each waived finding reaches the client as a one-line warning, and the
    audit record carries the waiver. The same request without the waiver is denied."""
    pytest.importorskip("uvicorn")
    from test_gatekeeper_support import RunningWebhook, admit, deployment

    from mlgate.gatekeeper.config import Settings

    store = triage.parent
    settings = Settings(evidence_store=f"file://{store}", audit=str(tmp_path / "audit.jsonl"))
    (tmp_path / "hook").mkdir()
    path = sign(triage)
    hook = RunningWebhook(tmp_path / "hook", settings)
    try:
        with hook.client() as client:
            doc = deployment("triage-acuity@2.0.0")
            allowed = admit(client, doc).json()["response"]
            path.unlink()
            hook.gatekeeper.store.scan()
            doc = deployment("triage-acuity@2.0.0")
            denied = admit(client, doc).json()["response"]
    finally:
        hook.stop()
    assert allowed["allowed"] is True, allowed
    waived = [w for w in allowed.get("warnings", []) if "WAIVED by Dr. Jane Roe" in w]
    assert len(waived) == 2 and all("\n" not in w and any(r in w for r in BIAS_RULES) for w in waived)
    assert denied["allowed"] is False and denied["status"]["code"] == 403
    assert all(r in denied["status"]["message"] for r in BIAS_RULES)
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["result"] for r in records] == ["allow", "deny"]
    assert records[0]["waivers"][0]["applied"] is True and records[0]["actor"]
    assert "waivers" not in records[1]
