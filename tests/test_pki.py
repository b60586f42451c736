"""Organisation PKI: approvals and model signatures with staff certificates from a real CA chain."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from mlgate.clock import rfc3339
from mlgate.errors import InputError
from mlgate.evidence.approval import create_approval, verify_approval
from mlgate.evidence.model_digest import compute_model_digest
from mlgate.evidence.model_signature import verify_model_signature
from mlgate.signing.trust import parse_trust_policy
from pki_helpers import T0, UTC, make_ca, make_leaf, make_pki

MODEL = "3736e691028c6e93fccf6329275dbca792306cca7ebaf5b993fbab9bcc8c60c2"
SIGNED_AT = dt.datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
PKI = make_pki()
OTHER_PKI = make_pki("Other Org")
JANE = PKI.leaf("jane.roe@hospital.example", cn="Dr. Jane Roe")
MODEL_SIGNING_CLI = Path(sys.executable).parent / "model_signing"


def _pem_block(data: bytes, indent: int) -> str:
    return textwrap.indent(data.decode(), " " * indent)


def trust(*, identity: str = "", signer_identity: str = "", intermediates: bool = True, extra: str = "") -> Any:
    inter = f"    intermediates:\n      - pem: |\n{_pem_block(PKI.intermediate.pem, 10)}" if intermediates else ""
    text = f"""\
apiVersion: mlgate.dev/v1
kind: TrustPolicy
certificateAuthorities:
  - id: hospital-staff-ca
    name: Hospital Staff CA
    roots:
      - pem: |
{_pem_block(PKI.root.pem, 10)}{inter}approvers:
  - id: jane.roe@hospital.example
    name: Dr. Jane Roe
    roles: [clinical-safety-officer]
    meanings: [approval]
    certificates:
      - ca: hospital-staff-ca
{identity}  - id: sam.patel@hospital.example
    name: Sam Patel
    roles: [quality-assurance]
    meanings: [review]
    certificates: [{{ca: hospital-staff-ca}}]
modelSigners:
  - id: ml-platform-ci@hospital.example
    name: ML platform CI
    certificates:
      - ca: hospital-staff-ca
{signer_identity}{extra}"""
    return parse_trust_policy(text.encode(), "trust.yaml", base_dir=Path("."))


ARGS: dict[str, Any] = dict(
    release_name="readmission-risk", model_digest=MODEL, printed_name="Dr. Jane Roe", signer_id="jane.roe@hospital.example",
    role="clinical-safety-officer", meaning="approval", environment="production", signed_at=SIGNED_AT,
    expires_at=None, evidence_digests={"evidence/bias_audit.json": "b" * 64}, comment=None,
)


def approval(leaf=JANE, chain: bytes | None = None, **changes: Any) -> bytes:
    return create_approval(leaf.key_pem, certificate_chain_pem=chain if chain is not None else PKI.chain_pem(leaf), **{**ARGS, **changes})


def verify(data: bytes, policy: Any = None) -> dict:
    return verify_approval(data, "evidence/approvals/jane.sigstore.json", trust=policy or trust())


def test_certificate_approval_verifies_with_pinned_identity() -> None:
    record = verify(approval())
    assert record["verified"], record["reason"]
    assert record["identity_source"] == "certificate" and record["identity"] == "jane.roe@hospital.example"
    assert record["key_id"] is None and record["key_status"] == "valid"
    cert = record["certificate"]
    assert cert["ca"] == "hospital-staff-ca" and cert["emails"] == ["jane.roe@hospital.example"]
    assert cert["subject"] == "CN=Dr. Jane Roe,O=Hospital Example" and cert["issuer"] == "CN=Hospital Staff Issuing CA 1,O=Hospital Example"
    assert len(cert["fingerprint_sha256"]) == 64
    assert record["manifestation"] == "Dr. Jane Roe, approval as clinical-safety-officer, signed 2026-11-28T09:30:00Z"


def test_intermediate_from_the_trust_policy_only() -> None:
    """The bundle carries only the leaf; the trust policy supplies the intermediate."""
    assert verify(approval(chain=JANE.pem))["verified"]
    # Neither the bundle nor the trust policy has the intermediate: no path to the root.
    record = verify(approval(chain=JANE.pem), trust(intermediates=False))
    assert not record["verified"] and "does not chain to a CA the trust policy lists" in record["reason"]


def test_subject_pin() -> None:
    ok = trust(identity="        subject: CN=Dr. Jane Roe,O=Hospital Example\n")
    assert verify(approval(), ok)["verified"]
    wrong = trust(identity="        subject: CN=Somebody Else,O=Hospital Example\n")
    record = verify(approval(), wrong)
    assert not record["verified"] and "no approver in the trust policy is listed with that CA for jane.roe@hospital.example and subject CN=Dr. Jane Roe" in record["reason"]


def test_certificate_from_unlisted_ca() -> None:
    leaf = OTHER_PKI.leaf("jane.roe@hospital.example", cn="Dr. Jane Roe")
    record = verify(approval(leaf, OTHER_PKI.chain_pem(leaf)))
    assert not record["verified"]
    assert "issued by CN=Other Org Issuing CA 1,O=Hospital Example does not chain to a CA the trust policy lists" in record["reason"]


def test_right_ca_other_email() -> None:
    mallory = PKI.leaf("mallory@hospital.example")
    record = verify(approval(mallory, printed_name="Dr. Jane Roe"))
    assert not record["verified"]
    assert "chains to CA hospital-staff-ca, but no approver in the trust policy is listed with that CA for mallory@hospital.example" in record["reason"]


def test_right_ca_other_approver_claiming_to_be_jane() -> None:
    sam = PKI.leaf("sam.patel@hospital.example")
    record = verify(approval(sam))
    assert not record["verified"] and "signed with certificate sam.patel@hospital.example of approver 'sam.patel@hospital.example', but the approval claims signer 'jane.roe@hospital.example'" in record["reason"]


def test_self_signed_certificate_with_the_approvers_email() -> None:
    fake = make_leaf(None, "jane.roe@hospital.example", cn="Dr. Jane Roe")
    record = verify(approval(fake, fake.pem))
    assert not record["verified"] and "a self-signed certificate CN=Dr. Jane Roe" in record["reason"] and "does not chain" in record["reason"]


def test_rogue_ca_with_the_same_name() -> None:
    """A CA that copies the trusted CA's name (not its key) does not pass."""
    rogue_root = make_ca("Hospital Staff Root CA")
    rogue_int = make_ca("Hospital Staff Issuing CA 1", rogue_root, path_length=0)
    leaf = make_leaf(rogue_int, "jane.roe@hospital.example", cn="Dr. Jane Roe")
    record = verify(approval(leaf, leaf.pem + rogue_int.pem))
    assert not record["verified"] and "does not chain" in record["reason"]


@pytest.mark.parametrize("signed_at, message", [
    (T0 - dt.timedelta(days=1), "does not chain"),          # before the leaf (and CA) validity
    (T0 + dt.timedelta(days=800), "does not chain"),        # after the leaf expired
])
def test_certificate_validity_at_signing_time(signed_at: dt.datetime, message: str) -> None:
    record = verify(approval(signed_at=signed_at))
    assert not record["verified"] and message in record["reason"]


def test_expired_certificate_still_verifies_a_signature_made_while_valid() -> None:
    short = PKI.leaf("jane.roe@hospital.example", cn="Dr. Jane Roe", days=30, not_before=SIGNED_AT - dt.timedelta(days=1))
    record = verify(approval(short))
    assert record["verified"]  # the chain is checked at the signing time, not now ...
    # ... but that time is only claimed: the signature counts until the certificate expires
    # (the policy compares key_valid_until with the evaluation time; tests/test_timestamps.py).
    assert record["key_valid_until"] == rfc3339(short.cert.not_valid_after_utc)


def test_key_usage_must_allow_signing() -> None:
    leaf = PKI.leaf("jane.roe@hospital.example", digital_signature=False)
    record = verify(approval(leaf))
    assert not record["verified"] and "does not allow digitalSignature" in record["reason"]


def test_extended_key_usage_must_allow_signing() -> None:
    leaf = PKI.leaf("jane.roe@hospital.example", ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
    record = verify(approval(leaf))
    assert not record["verified"] and "has extendedKeyUsage 1.3.6.1.5.5.7.3.1; expected one of codeSigning" in record["reason"]


def test_leaf_key_must_match_private_key() -> None:
    with pytest.raises(InputError, match="does not hold the public key"):
        create_approval(PKI.leaf("jane.roe@hospital.example").key_pem, certificate_chain_pem=PKI.chain_pem(JANE), **ARGS)


def test_identity_revoked_after_signing_counts_only_until_the_revocation() -> None:
    # No trusted time: a signature claimed before a revocation that is not for a compromise
    # counts until the revocation (tests/test_timestamps.py: with a TSA time, after it too).
    revoked = trust(identity="        revoked: {at: '2026-12-01T00:00:00Z', reason: affiliationChanged}\n")
    record = verify(approval(), revoked)
    assert record["verified"] and record["key_status"] == "valid" and record["key_valid_until"] == "2026-12-01T00:00:00Z"
    assert record["key_revoked_at"] == "2026-12-01T00:00:00Z" and record["key_revocation_reason"] == "affiliationChanged"
    before = trust(identity="        revoked: {at: '2026-11-01T00:00:00Z', reason: affiliationChanged}\n")
    record = verify(approval(), before)
    assert not record["verified"] and "revoked at 2026-11-01T00:00:00Z (affiliationChanged)" in record["reason"]


def test_trust_policy_certificate_errors(tmp_path: Path) -> None:
    leaf_as_root = f"apiVersion: mlgate.dev/v1\nkind: TrustPolicy\ncertificateAuthorities:\n  - id: x\n    roots:\n      - pem: |\n{_pem_block(JANE.pem, 10)}approvers: []\n"
    with pytest.raises(InputError, match=r"certificateAuthorities\[0\].roots\[0\].pem: certificate CN=Dr. Jane Roe,O=Hospital Example is not a CA certificate"):
        parse_trust_policy(leaf_as_root.encode(), "trust.yaml", base_dir=tmp_path)
    unknown_ca = "apiVersion: mlgate.dev/v1\nkind: TrustPolicy\napprovers:\n  - {id: a@x.example, name: A, roles: [r], meanings: [review], certificates: [{ca: nope}]}\n"
    with pytest.raises(InputError, match=r"approvers\[0\].certificates\[0\].ca: names CA 'nope', which is not in certificateAuthorities"):
        parse_trust_policy(unknown_ca.encode(), "trust.yaml", base_dir=tmp_path)
    garbage = "apiVersion: mlgate.dev/v1\nkind: TrustPolicy\ncertificateAuthorities:\n  - {id: x, roots: [{pem: '-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n'}]}\napprovers: []\n"
    with pytest.raises(InputError, match="not a valid PEM certificate"):
        parse_trust_policy(garbage.encode(), "trust.yaml", base_dir=tmp_path)


def test_same_certificate_identity_twice_refused(tmp_path: Path) -> None:
    doc = f"""\
apiVersion: mlgate.dev/v1
kind: TrustPolicy
certificateAuthorities:
  - id: ca
    roots:
      - pem: |
{_pem_block(PKI.root.pem, 10)}approvers:
  - {{id: a@x.example, name: A, roles: [r], meanings: [review], certificates: [{{ca: ca, email: j@x.example}}]}}
  - {{id: b@x.example, name: B, roles: [r], meanings: [review], certificates: [{{ca: ca, email: J@x.example}}]}}
"""
    with pytest.raises(InputError, match=r"approvers\[1\].certificates\[0\]: certificate identity J@x.example \(CA ca\) is already listed for approver 'a@x.example'"):
        parse_trust_policy(doc.encode(), "trust.yaml", base_dir=tmp_path)


# --------------------------------------------------------------------------- model-signing certificate mode
def _sign_model_with_certificate(model: Path, leaf, tmp: Path) -> bytes:
    (tmp / "leaf.key").write_bytes(leaf.key_pem)
    (tmp / "leaf.pem").write_bytes(leaf.pem)
    (tmp / "chain.pem").write_bytes(PKI.intermediate.pem)
    sig = tmp / "model.sig"
    subprocess.run(
        [str(MODEL_SIGNING_CLI), "sign", "certificate", str(model), "--private_key", str(tmp / "leaf.key"),
         "--signing_certificate", str(tmp / "leaf.pem"), "--certificate_chain", str(tmp / "chain.pem"), "--signature", str(sig)],
        check=True, capture_output=True, timeout=120,
    )
    return sig.read_bytes()


@pytest.fixture(scope="module")
def cert_signed_model(tmp_path_factory) -> tuple[Path, bytes]:
    tmp = tmp_path_factory.mktemp("certmodel")
    model = tmp / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 4096)
    (model / "config.json").write_text("{}")
    ci = PKI.leaf("ml-platform-ci@hospital.example", cn="ML platform CI", ekus=[ExtendedKeyUsageOID.CODE_SIGNING])
    return model, _sign_model_with_certificate(model, ci, tmp)


def test_model_signing_certificate_mode_verifies(cert_signed_model) -> None:
    model, sig = cert_signed_model
    block = verify_model_signature(sig, "model.sig", model_path=model, digest=compute_model_digest(model), trust=trust())
    assert block["verified"], block["reason"]
    assert block["identity_source"] == "certificate" and block["signer_id"] == "ml-platform-ci@hospital.example"
    assert block["certificate"]["ca"] == "hospital-staff-ca"


def test_model_signing_itself_accepts_the_chain(cert_signed_model, tmp_path: Path) -> None:
    """model-signing's certificate verifier agrees on the chain (it checks no identity)."""
    model, sig = cert_signed_model
    (tmp_path / "model.sig").write_bytes(sig)
    (tmp_path / "root.pem").write_bytes(PKI.root.pem + PKI.intermediate.pem)
    done = subprocess.run(
        [str(MODEL_SIGNING_CLI), "verify", "certificate", str(model), "--signature", str(tmp_path / "model.sig"),
         "--certificate_chain", str(tmp_path / "root.pem")],
        capture_output=True, timeout=120, text=True,
    )
    assert done.returncode == 0, done.stderr


def test_model_certificate_of_another_person_not_a_model_signer(cert_signed_model, tmp_path: Path) -> None:
    model = cert_signed_model[0]
    sig = _sign_model_with_certificate(model, PKI.leaf("intern@hospital.example", ekus=[ExtendedKeyUsageOID.CODE_SIGNING]), tmp_path)
    block = verify_model_signature(sig, "model.sig", model_path=model, digest=compute_model_digest(model), trust=trust())
    assert block["valid"] and not block["authenticated"] and not block["verified"]
    assert "no model signer in the trust policy is listed with that CA for intern@hospital.example" in block["reason"]


def test_model_file_changed_after_certificate_signing(cert_signed_model, tmp_path: Path) -> None:
    import shutil

    model, sig = cert_signed_model
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    (copy / "weights.bin").write_bytes(b"x" * 4096)
    block = verify_model_signature(sig, "model.sig", model_path=copy, digest=compute_model_digest(copy), trust=trust())
    assert block["authenticated"] and not block["verified"] and block["mismatches"]["changed"] == ["weights.bin"]
