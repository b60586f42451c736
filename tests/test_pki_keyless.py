"""Sigstore keyless bundles verified offline against a TrustedRoot file (a local Sigstore instance)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlgate.signing.attestation import make_statement
from mlgate.canonical import canonical_json
from mlgate.errors import InputError
from mlgate.evidence.approval import PREDICATE_TYPE, verify_approval
from mlgate.evidence.model_digest import compute_model_digest
from mlgate.evidence.model_signature import verify_model_signature
from mlgate.signing.trust import load_trust_policy
from sigstore_local import UTC, LocalSigstore, model_signing_payload

AT = dt.datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
ISSUER = "https://login.hospital.example"
SIGSTORE = LocalSigstore.create()
MODEL_DIGEST = "3736e691028c6e93fccf6329275dbca792306cca7ebaf5b993fbab9bcc8c60c2"


def write_trust(tmp: Path, *, signer: str = "ml-platform-ci@hospital.example", extra: str = "", root: LocalSigstore = SIGSTORE, with_root: bool = True) -> Path:
    (tmp / "trusted_root.json").write_bytes(root.trusted_root_json())
    sigstore = "sigstore:\n  trustedRoot: {path: trusted_root.json}\n" if with_root else ""
    text = f"""\
apiVersion: mlgate.dev/v1
kind: TrustPolicy
{sigstore}approvers:
  - id: jane.roe@hospital.example
    name: Dr. Jane Roe
    roles: [clinical-safety-officer]
    meanings: [approval]
    keyless:
      - {{issuer: "{ISSUER}", subject: jane.roe@hospital.example}}
{extra}modelSigners:
  - id: ml-platform-ci
    name: ML platform CI
    keyless:
      - {{issuer: "{ISSUER}", subject: {signer}}}
"""
    (tmp / "trust.yaml").write_text(text)
    return tmp / "trust.yaml"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    m = tmp_path / "model"
    (m / "sub").mkdir(parents=True)
    (m / "weights.bin").write_bytes(b"w" * 10000)
    (m / "sub" / "tok.json").write_text("{}")
    return m


def sign_model(model: Path, subject: str = "ml-platform-ci@hospital.example", issuer: str = ISSUER, sigstore: LocalSigstore = SIGSTORE) -> bytes:
    return sigstore.sign_dsse(model_signing_payload(model), subject=subject, issuer=issuer, at=AT)


def check(sig: bytes, model: Path, trust_path: Path) -> dict:
    return verify_model_signature(sig, "model.sig", model_path=model, digest=compute_model_digest(model), trust=load_trust_policy(trust_path))


def test_keyless_model_signature_verifies_offline(model: Path, tmp_path: Path) -> None:
    block = check(sign_model(model), model, write_trust(tmp_path))
    assert block["verified"], block["reason"]
    assert block["identity_source"] == "keyless" and block["identity"] == "ml-platform-ci@hospital.example"
    assert block["signer_id"] == "ml-platform-ci" and block["certificate"]["ca"] == "sigstore"
    assert block["signed_at"] == "2026-11-28T09:30:00Z"  # the transparency-log time, verified
    assert block["subject_digest"] == compute_model_digest(model).root


def test_model_signing_itself_verifies_the_local_bundle(model: Path, tmp_path: Path) -> None:
    """model-signing's Sigstore verifier, given the same trust root, agrees."""
    from model_signing import verifying

    (tmp_path / "model.sig").write_bytes(sign_model(model))
    config = {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": SIGSTORE.trusted_root(),
        "signingConfig": {"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                          "caUrls": [], "oidcUrls": [], "rekorTlogUrls": [], "tsaUrls": [],
                          "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"}},
    }
    (tmp_path / "trust_config.json").write_text(json.dumps(config))
    verifying.Config().use_sigstore_verifier(
        identity="ml-platform-ci@hospital.example", oidc_issuer=ISSUER, trust_config=tmp_path / "trust_config.json",
    ).verify(model, tmp_path / "model.sig")


def test_keyless_identity_not_listed(model: Path, tmp_path: Path) -> None:
    block = check(sign_model(model, subject="intern@hospital.example"), model, write_trust(tmp_path))
    assert block["valid"] and not block["authenticated"] and not block["verified"]
    assert "keyless certificate for intern@hospital.example (OIDC issuer https://login.hospital.example) is not listed for any model signer" in block["reason"]


def test_keyless_right_subject_other_issuer(model: Path, tmp_path: Path) -> None:
    block = check(sign_model(model, issuer="https://accounts.evil.example"), model, write_trust(tmp_path))
    assert not block["verified"] and "(OIDC issuer https://accounts.evil.example) is not listed" in block["reason"]


def test_keyless_bundle_from_another_sigstore(model: Path, tmp_path: Path) -> None:
    rogue = LocalSigstore.create()
    block = check(sign_model(model, sigstore=rogue), model, write_trust(tmp_path))
    assert not block["verified"] and "Sigstore verification failed" in block["reason"]


def test_keyless_without_trusted_root(model: Path, tmp_path: Path) -> None:
    path = write_trust(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    key_only = other / "trust.yaml"
    key_only.write_text(path.read_text().split("approvers:")[0].split("sigstore:")[0] + "approvers: []\n")
    block = check(sign_model(model), model, key_only)
    assert not block["verified"] and "no sigstore.trustedRoot to verify it with" in block["reason"]
    with pytest.raises(InputError, match="keyless identities are listed but no sigstore.trustedRoot"):
        write_trust(other, with_root=False) and load_trust_policy(other / "trust.yaml")


def test_keyless_model_changed_after_signing(model: Path, tmp_path: Path) -> None:
    sig = sign_model(model)
    (model / "extra.py").write_text("x")
    block = check(sig, model, write_trust(tmp_path))
    assert block["authenticated"] and not block["verified"] and block["mismatches"]["extra"] == ["extra.py"]


def test_keyless_payload_swapped(model: Path, tmp_path: Path) -> None:
    doc = json.loads(sign_model(model))
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    block = check(json.dumps(doc).encode(), model, write_trust(tmp_path))
    assert not block["authenticated"] and not block["verified"] and "Sigstore verification failed" in block["reason"]


def keyless_approval(**changes: Any) -> bytes:
    predicate = {
        "signer": {"id": "jane.roe@hospital.example", "printedName": "Dr. Jane Roe"}, "role": "clinical-safety-officer",
        "meaning": "approval", "environment": "production", "signedAt": "2026-11-28T09:29:00Z", "expiresAt": None,
        "evidenceDigests": {"evidence/bias_audit.json": "b" * 64}, "comment": None, **changes,
    }
    statement = make_statement([{"name": "readmission-risk", "digest": {"sha256": MODEL_DIGEST}}], PREDICATE_TYPE, predicate)
    return SIGSTORE.sign_dsse(canonical_json(statement), subject="jane.roe@hospital.example", issuer=ISSUER, at=AT)


def test_keyless_approval(tmp_path: Path) -> None:
    record = verify_approval(keyless_approval(), "evidence/approvals/jane.json", trust=load_trust_policy(write_trust(tmp_path)))
    assert record["verified"], record["reason"]
    assert record["identity_source"] == "keyless" and record["signed_at_source"] == "transparency_log"
    assert record["signed_at"] == "2026-11-28T09:30:00Z"  # the log's time, not the signer's claim
    assert record["manifestation"] == "Dr. Jane Roe, approval as clinical-safety-officer, signed 2026-11-28T09:30:00Z"


def test_keyless_identity_revoked_before_log_time(tmp_path: Path) -> None:
    path = write_trust(tmp_path)
    text = path.read_text().replace(
        "subject: jane.roe@hospital.example}", "subject: jane.roe@hospital.example, revoked: {at: '2026-11-28T09:00:00Z', reason: keyCompromise}}")
    path.write_text(text)
    record = verify_approval(keyless_approval(signedAt="2026-11-01T00:00:00Z"), "a.json", trust=load_trust_policy(path))
    # Backdating the claimed signedAt does not help: the log time decides, and under a compromise
    # with no compromisedAt not even a log time before the revocation rescues it.
    assert not record["verified"] and "the trusted time 2026-11-28T09:30:00Z does not show the signature predates the compromise" in record["reason"]


def test_bad_trusted_root_is_named(tmp_path: Path) -> None:
    (tmp_path / "trusted_root.json").write_text('{"mediaType": "text/plain"}')
    (tmp_path / "trust.yaml").write_text(textwrap.dedent("""\
        apiVersion: mlgate.dev/v1
        kind: TrustPolicy
        sigstore: {trustedRoot: {path: trusted_root.json}}
        approvers: []
    """))
    with pytest.raises(InputError, match="trusted_root.json: not a Sigstore TrustedRoot"):
        load_trust_policy(tmp_path / "trust.yaml")
