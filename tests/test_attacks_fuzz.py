"""Mutate bytes of valid bundles (key, certificate, keyless approvals; model-signing key, certificate
and keyless signatures): no mutation that changes the document verifies, none raises. And every
malformed signature file gives a one-line reason naming the file, and a deny."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgate.signing.attestation import make_statement
from mlgate.canonical import canonical_json
from mlgate.evidence.approval import PREDICATE_TYPE, create_approval, verify_approval
from mlgate.evidence.model_digest import compute_model_digest
from mlgate.evidence.model_signature import verify_model_signature
from mlgate.signing.trust import parse_trust_policy

from cli_helpers import run
from conftest import ASSETS, EXAMPLES
from pki_helpers import make_pki
from sigstore_local import LocalSigstore, model_signing_payload

UTC = dt.timezone.utc
KEYS = ASSETS / "signing" / "keys"
REAL = ASSETS / "signing" / "model-signing-key-mode"
MODEL_DIGEST = "3736e691028c6e93fccf6329275dbca792306cca7ebaf5b993fbab9bcc8c60c2"
ISSUER = "https://login.hospital.example"
PKI = make_pki()
SIGSTORE = LocalSigstore.create()


def _indent(data: bytes, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in data.decode().splitlines())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "trusted_root.json").write_bytes(SIGSTORE.trusted_root_json())
    trust_text = f"""\
apiVersion: mlgate.dev/v1
kind: TrustPolicy
sigstore: {{trustedRoot: {{path: trusted_root.json}}}}
certificateAuthorities:
  - id: staff
    roots:
      - pem: |
{_indent(PKI.root.pem, 10)}approvers:
  - id: jane.roe@hospital.example
    name: Dr. Jane Roe
    roles: [clinical-safety-officer]
    meanings: [approval]
    keys:
      - pem: |
{_indent((KEYS / 'approver-ecdsa.pub.pem').read_bytes(), 10)}    certificates: [{{ca: staff}}]
    keyless: [{{issuer: "{ISSUER}", subject: jane.roe@hospital.example}}]
modelSigners:
  - id: ci
    name: CI
    keys:
      - pem: |
{_indent((REAL / 'signer.pub.pem').read_bytes(), 10)}    certificates: [{{ca: staff, email: ci@hospital.example}}]
    keyless: [{{issuer: "{ISSUER}", subject: ci@hospital.example}}]
"""
    (tmp / "trust.yaml").write_text(trust_text)
    trust = parse_trust_policy(trust_text.encode(), "trust.yaml", base_dir=tmp)
    args = dict(release_name="r", model_digest=MODEL_DIGEST, printed_name="Dr. Jane Roe", signer_id="jane.roe@hospital.example",
                role="clinical-safety-officer", meaning="approval", environment="production",
                signed_at=dt.datetime(2026, 11, 28, 9, 30, tzinfo=UTC), expires_at=None, evidence_digests={"e.json": "a" * 64}, comment=None)
    jane_leaf = PKI.leaf("jane.roe@hospital.example")
    keyless_statement = make_statement([{"name": "r", "digest": {"sha256": MODEL_DIGEST}}], PREDICATE_TYPE, {
        "signer": {"id": "jane.roe@hospital.example", "printedName": "Dr. Jane Roe"}, "role": "clinical-safety-officer",
        "meaning": "approval", "environment": "production", "signedAt": "2026-11-28T09:30:00Z", "expiresAt": None,
        "evidenceDigests": {"e.json": "a" * 64}, "comment": None})
    approvals = {
        "key": create_approval((KEYS / "approver-ecdsa.key.pem").read_bytes(), **args),
        "certificate": create_approval(jane_leaf.key_pem, certificate_chain_pem=PKI.chain_pem(jane_leaf), **args),
        "keyless": SIGSTORE.sign_dsse(canonical_json(keyless_statement), subject="jane.roe@hospital.example", issuer=ISSUER,
                                      at=dt.datetime(2026, 11, 28, 9, 30, tzinfo=UTC)),
    }
    model = tmp / "model"
    shutil.copytree(REAL / "model", model)
    ci_leaf = PKI.leaf("ci@hospital.example", ekus=[ExtendedKeyUsageOID.CODE_SIGNING])
    (tmp / "ci.key").write_bytes(ci_leaf.key_pem)
    (tmp / "ci.pem").write_bytes(ci_leaf.pem)
    (tmp / "chain.pem").write_bytes(PKI.intermediate.pem)
    subprocess.run([str(Path(sys.executable).parent / "model_signing"), "sign", "certificate", str(model), "--private_key", str(tmp / "ci.key"),
                    "--signing_certificate", str(tmp / "ci.pem"), "--certificate_chain", str(tmp / "chain.pem"),
                    "--signature", str(tmp / "cert.sig")], check=True, capture_output=True, timeout=120)
    signatures = {
        "key": (REAL / "model.sig").read_bytes(),
        "certificate": (tmp / "cert.sig").read_bytes(),
        "keyless": SIGSTORE.sign_dsse(model_signing_payload(model), subject="ci@hospital.example", issuer=ISSUER,
                                      at=dt.datetime(2026, 11, 28, 9, 30, tzinfo=UTC)),
    }
    digest = compute_model_digest(model)
    for mode, data in approvals.items():
        assert verify_approval(data, "a.json", trust=trust)["verified"], mode
    for mode, data in signatures.items():
        assert verify_model_signature(data, "model.sig", model_path=model, digest=digest, trust=trust)["verified"], mode
    return {"trust": trust, "approvals": approvals, "signatures": signatures, "model": model, "digest": digest}


def _same_document(a: bytes, b: bytes) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def _mutate(original: bytes, data: st.DataObject) -> bytes:
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        index = data.draw(st.integers(0, len(mutated) - 1), label="index")
        mutated[index] = data.draw(st.integers(0, 255).filter(lambda b, i=index: b != mutated[i]), label="value")
    return bytes(mutated)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(["key", "certificate", "keyless"]), data=st.data())
def test_no_mutated_approval_verifies(world: dict[str, Any], mode: str, data: st.DataObject) -> None:
    original = world["approvals"][mode]
    mutated = _mutate(original, data)
    if _same_document(original, mutated):  # e.g. a space turned into a tab: not a change
        return
    record = verify_approval(mutated, "a.json", trust=world["trust"])
    assert not record["verified"]
    assert record["reason"] and "\n" not in record["reason"] and record["reason"].startswith("a.json")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(["key", "certificate", "keyless"]), data=st.data())
def test_no_mutated_model_signature_verifies(world: dict[str, Any], mode: str, data: st.DataObject) -> None:
    original = world["signatures"][mode]
    mutated = _mutate(original, data)
    if _same_document(original, mutated):
        return
    block = verify_model_signature(mutated, "model.sig", model_path=world["model"], digest=world["digest"], trust=world["trust"])
    assert not block["verified"]
    assert block["reason"] and "\n" not in block["reason"] and block["reason"].startswith("model.sig")


# --------------------------------------------------------------------------- bad input
BAD_FILES = {
    "empty": b"",
    "binary": b"\x00\x01\xff\xfe",
    "not-json": b"not a bundle",
    "json-array": b"[]",
    "json-null": b"null",
    "truncated": b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {',
    "deep-nesting": b"[" * 100000,
    "wrong-shape": b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": 5, "dsseEnvelope": []}',
    "nan": b'{"a": NaN}',
    "bad-utf8": b'{"a": "\xff"}',
    "huge-number": b'{"a": ' + b"9" * 5000 + b"}",
    "cert-garbage": json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                                "verificationMaterial": {"x509CertificateChain": {"certificates": [{"rawBytes": "AAAA"}]}, "tlogEntries": []},
                                "dsseEnvelope": {"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AAAA"}]}}).encode(),
    "keyless-garbage": json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                                   "verificationMaterial": {"certificate": {"rawBytes": "AAAA"}, "tlogEntries": [{"x": 1}]},
                                   "dsseEnvelope": {"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AAAA"}]}}).encode(),
}


@pytest.fixture
def release(tmp_path: Path) -> Path:
    dst = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", dst)
    return dst


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_malformed_approval_file_one_line_reason_and_deny(release: Path, tmp_path: Path, name: str) -> None:
    target = release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.production.sigstore.json"
    target.write_bytes(BAD_FILES[name])
    rel = "evidence/approvals/jane.roe_hospital.example.approval.production.sigstore.json"
    code, out, err = run(["check", release, "--env", "production", "-o", "json", "--audit-log", tmp_path / "audit.jsonl"])
    assert code == 1, (out, err)
    decision = json.loads(out)
    assert not decision["allowed"]
    reasons = [v["message"] for v in decision["violations"] if v["id"] == "MLG-APPR-003"]
    assert reasons and rel in reasons[0] and "\n" not in reasons[0]
    assert "Traceback" not in err
    code, out, err = run(["verify", release])
    assert code == 1 and "Traceback" not in out + err
    line = next(line for line in out.splitlines() if line.startswith(rel))
    assert "failed" in line and f"{rel}:" in line


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_malformed_model_signature_one_line_reason_and_deny(release: Path, tmp_path: Path, name: str) -> None:
    (release / "model.sig").write_bytes(BAD_FILES[name])
    code, out, err = run(["check", release, "--env", "production", "-o", "json", "--audit-log", tmp_path / "audit.jsonl"])
    assert code == 1, (out, err)
    decision = json.loads(out)
    messages = [v["message"] for v in decision["violations"] if v["id"].startswith("MLG-SIG-")]
    assert messages and all("model.sig" in m and "\n" not in m for m in messages)
    code, out, err = run(["verify", release, "-o", "json"])
    assert code == 1
    row = next(r for r in json.loads(out)["signatures"] if r["kind"] == "model-signature")
    assert row["status"] == "failed" and row["reason"].startswith("model.sig") and "\n" not in row["reason"]
