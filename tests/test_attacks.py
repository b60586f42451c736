"""The attack catalogue (issue 6): each attack on a real release is rejected with a specific
reason, never crashes, never allows. The release is a copy of examples/readmission-risk, which
is allowed in production before each attack; the attack then re-signs or edits files with the
examples' keys (and a real organisation PKI for the certificate attacks)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

from mlgate.signing import keys as _keys
from mlgate.signing.attestation import IN_TOTO_PAYLOAD_TYPE, pae
from mlgate.audit import open_sink
from mlgate.canonical import canonical_json, sha256_hex
from mlgate.clock import FixedClock
from mlgate.evidence.approval import create_approval
from mlgate.evidence.model_digest import compute_model_digest
from mlgate.gate import GateOptions, check
from mlgate.manifest import load_release
from mlgate.signing.verify import verify_release
from mlgate.signing.trust import load_trust_policy

from conftest import EXAMPLES, EXAMPLES_NOW, REPO
from pki_helpers import make_leaf, make_pki

UTC = dt.timezone.utc
KEYS = EXAMPLES / "keys"
PEOPLE = {
    "jane": ("jane.roe", "jane.roe@hospital.example", "Dr. Jane Roe", "clinical-safety-officer", "approval"),
    "sam": ("sam.patel", "sam.patel@hospital.example", "Sam Patel", "quality-assurance", "review"),
    "ana": ("ana.lima", "ana.lima@hospital.example", "Dr. Ana Lima", "clinical-safety-officer", "approval"),
}
PKI = make_pki()


@pytest.fixture
def release(tmp_path: Path) -> Path:
    dst = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", dst)
    shutil.copy(REPO / "examples" / "trust.yaml", tmp_path / "trust.yaml")
    return dst


def trust_file(release: Path) -> Path:
    return release.parent / "trust.yaml"


def gate(release: Path, env: str = "production") -> Any:
    options = GateOptions(environment=env, trust_policy=trust_file(release), clock=FixedClock(EXAMPLES_NOW))
    with open_sink(f"file:{release.parent / 'audit.jsonl'}") as sink:
        return check(release, options, sink)


def approvals_dir(release: Path) -> Path:
    return release / "evidence" / "approvals"


def evidence_digests(release: Path) -> dict[str, str]:
    return {rel: sha256_hex(path.read_bytes()) for path, rel in load_release(release).evaluated_evidence()}


def sign(release: Path, who: str, *, key: bytes | None = None, name: str | None = None, **changes: Any) -> bytes:
    keyfile, signer_id, printed, role, meaning = PEOPLE[who]
    args: dict[str, Any] = dict(
        release_name="readmission-risk", model_digest=compute_model_digest(release / "model").root,
        printed_name=printed, signer_id=signer_id, role=role, meaning=meaning, environment="production",
        signed_at=EXAMPLES_NOW - dt.timedelta(days=2), expires_at=EXAMPLES_NOW + dt.timedelta(days=300),
        evidence_digests=evidence_digests(release), comment=None, release=load_release(release).binding,
    )
    args.update(changes)
    data = create_approval(key or (KEYS / f"{keyfile}.key").read_bytes(), **args)
    if name:
        (approvals_dir(release) / name).write_bytes(data)
    return data


def replace(release: Path, who: str, data: bytes) -> Path:
    """Put ``data`` where ``who``'s production approval is."""
    keyfile = PEOPLE[who][0]
    path = approvals_dir(release) / f"{keyfile}_hospital.example.{PEOPLE[who][4]}.production.sigstore.json"
    assert path.exists()
    path.write_bytes(data)
    return path


def raw_bundle(payload: bytes, who: str, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> bytes:
    """A key-mode bundle signed by ``who`` over arbitrary payload bytes (no checks on the payload)."""
    key = _keys.load_private_key((KEYS / f"{PEOPLE[who][0]}.key"))
    sig = _keys.sign(key, pae(payload_type, payload))
    return json.dumps({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": _keys.key_id(key.public_key())}, "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode(), "payloadType": payload_type,
                         "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]},
    }).encode()


def statement_for(release: Path, who: str, **changes: Any) -> dict[str, Any]:
    return json.loads(base64.b64decode(json.loads(sign(release, who, **changes))["dsseEnvelope"]["payload"]))


def denied(decision: Any, rule: str, *fragments: str) -> None:
    assert decision.result in ("deny", "error"), decision.result
    assert not decision.allowed
    if rule == "error":
        assert decision.result == "error" and all(f in decision.error for f in fragments), decision.error
        return
    messages = [v.message for v in decision.violations if v.id == rule]
    assert messages, f"{rule} not among {[(v.id, v.message) for v in decision.violations]}"
    assert any(all(f in m for f in fragments) for m in messages), messages
    for v in decision.violations:
        assert "\n" not in v.message


def test_the_unattacked_release_is_allowed(release: Path) -> None:
    assert gate(release).allowed


# --------------------------------------------------------------------------- bound to the model and the evidence (11.70)
def test_approval_for_another_model_digest(release: Path) -> None:
    replace(release, "jane", sign(release, "jane", model_digest="0" * 64))
    denied(gate(release), "MLG-APPR-010", "was signed for a different model digest 000000000000")


def test_approval_for_other_evidence_bias_audit_regenerated(release: Path) -> None:
    bias = release / "evidence" / "bias_audit.json"
    bias.write_bytes(bias.read_bytes() + b"\n")  # regenerated after signing: same meaning, other bytes
    denied(gate(release), "MLG-APPR-012", "changed since approval: evidence/bias_audit.json")


# --------------------------------------------------------------------------- who may sign
def test_signature_by_an_unlisted_key(release: Path) -> None:
    private, _ = _keys.generate_keypair("ecdsa-p256")
    replace(release, "jane", sign(release, "jane", key=private))
    denied(gate(release), "MLG-APPR-003", "unknown key hint", "no trusted key has this id")


def test_listed_key_with_the_wrong_role(release: Path) -> None:
    # Sam (quality-assurance, review) signs as the clinical safety officer
    replace(release, "jane", sign(release, "sam", role="clinical-safety-officer", meaning="approval"))
    denied(gate(release), "MLG-APPR-005", "sam.patel@hospital.example signs approval by clinical-safety-officer", "the role: false")


def _revoke(release: Path, who: str, at: str, reason: str = "keyCompromise") -> None:
    text = trust_file(release).read_text()
    key_line = f"  - id: {PEOPLE[who][1]}"
    head, tail = text.split(key_line, 1)
    tail = tail.replace("      - pem: |", f"      - revoked: {{at: '{at}', reason: {reason}}}\n        pem: |", 1)
    trust_file(release).write_text(head + key_line + tail)


def test_signature_by_a_revoked_key(release: Path) -> None:
    _revoke(release, "jane", "2026-11-01T00:00:00Z")  # before the production approval (2026-11-16)
    denied(gate(release), "MLG-APPR-003", "revoked at 2026-11-01T00:00:00Z (keyCompromise)")


def test_revoked_after_a_claimed_signing_time_no_longer_counts(release: Path) -> None:
    # signedAt 2026-11-16 is Jane's claim: without a trusted timestamp nothing shows the approval
    # predates the revocation (issue 14.4; with a TSA timestamp it counts: tests/test_timestamps.py).
    _revoke(release, "jane", "2026-11-20T00:00:00Z", "superseded")
    denied(gate(release), "MLG-APPR-022", "valid only until 2026-11-20T00:00:00Z (revoked, superseded)")


def test_rotation_voids_untimestamped_approvals_of_the_old_key(release: Path) -> None:
    """Jane's old key is valid until 2026-11-20, a new key after. An approval made with the old
    key carries only a claimed time, so it stops counting when the old key expires (a TSA
    timestamp keeps it: tests/test_timestamps.py); one with the new key counts."""
    new_private, new_public = _keys.generate_keypair("ed25519")
    text = trust_file(release).read_text()
    head, tail = text.split("  - id: jane.roe@hospital.example", 1)
    tail = tail.replace("      - pem: |", "      - notAfter: '2026-11-20T00:00:00Z'\n        pem: |", 1)
    block = "      - notBefore: '2026-11-20T00:00:00Z'\n        pem: |\n" + textwrap.indent(new_public.decode(), " " * 10)
    tail = tail.replace("  - id: sam.patel", block + "  - id: sam.patel", 1)
    trust_file(release).write_text(head + "  - id: jane.roe@hospital.example" + tail)
    denied(gate(release), "MLG-APPR-022", "valid only until 2026-11-20T00:00:00Z (end of its validity period)")  # signed (claimed) 2026-11-16
    # A new approval with the old key after the rotation does not count ...
    replace(release, "jane", sign(release, "jane", signed_at=dt.datetime(2026, 11, 25, tzinfo=UTC)))
    denied(gate(release), "MLG-APPR-003", "after the credential's validity ended at 2026-11-20T00:00:00Z")
    # ... one with the new key does.
    replace(release, "jane", sign(release, "jane", key=new_private, signed_at=dt.datetime(2026, 11, 25, tzinfo=UTC)))
    assert gate(release).allowed


def test_expired_approval(release: Path) -> None:
    replace(release, "jane", sign(release, "jane", expires_at=EXAMPLES_NOW - dt.timedelta(hours=1)))
    denied(gate(release), "MLG-APPR-008", "expired at 2026-11-29T11:00:00Z")


def test_approval_dated_in_the_future(release: Path) -> None:
    replace(release, "jane", sign(release, "jane", signed_at=EXAMPLES_NOW + dt.timedelta(days=1)))
    denied(gate(release), "MLG-APPR-009", "has signing time 2026-11-30T12:00:00Z, which is after the evaluation time")


def test_duplicated_approval_counted_twice(release: Path) -> None:
    original = approvals_dir(release) / "jane.roe_hospital.example.approval.production.sigstore.json"
    # Re-serialised (other bytes, same signed statement) so a byte comparison would not catch it.
    doc = json.loads(original.read_bytes())
    (approvals_dir(release) / "zz-copy.sigstore.json").write_text(json.dumps(doc, indent=2))
    denied(gate(release), "MLG-APPR-017", "duplicates", "the same signed statement")


def test_one_person_with_two_keys_fills_two_roles(release: Path) -> None:
    second_private, second_public = _keys.generate_keypair("ecdsa-p256")
    text = trust_file(release).read_text()
    head, tail = text.split("  - id: ana.lima@hospital.example", 1)
    tail = tail.replace("modelSigners:", "      - pem: |\n" + textwrap.indent(second_public.decode(), " " * 10) + "modelSigners:", 1)
    trust_file(release).write_text(head + "  - id: ana.lima@hospital.example" + tail)
    for f in approvals_dir(release).glob("*production*"):
        f.unlink()
    sign(release, "ana", role="quality-assurance", meaning="review", name="ana.review.json")
    sign(release, "ana", key=second_private, name="ana.approval.json")
    denied(gate(release), "MLG-APPR-006", "are both given only by ana.lima@hospital.example")


def test_bias_audit_author_approves(release: Path) -> None:
    for f in approvals_dir(release).glob("jane*production*"):
        f.unlink()
    sign(release, "ana", name="ana.approval.json", authored=["evidence/bias_audit.json"])
    denied(gate(release), "MLG-APPR-016", "an author of the bias audit evidence/bias_audit.json")


# --------------------------------------------------------------------------- the envelope and the statement
def test_dsse_payload_type_changed(release: Path) -> None:
    path = approvals_dir(release) / "jane.roe_hospital.example.approval.production.sigstore.json"
    doc = json.loads(path.read_bytes())
    doc["dsseEnvelope"]["payloadType"] = "application/json"
    path.write_text(json.dumps(doc))
    denied(gate(release), "MLG-APPR-003", "signature does not verify with key")


def test_payload_type_signed_but_wrong(release: Path) -> None:
    statement = statement_for(release, "jane")
    replace(release, "jane", raw_bundle(canonical_json(statement), "jane", payload_type="application/json"))
    denied(gate(release), "MLG-APPR-003", "got payloadType 'application/json', expected 'application/vnd.in-toto+json'")


def test_in_toto_statement_type_changed(release: Path) -> None:
    statement = {**statement_for(release, "jane"), "_type": "https://in-toto.io/Statement/v0.1"}
    replace(release, "jane", raw_bundle(canonical_json(statement), "jane"))
    denied(gate(release), "MLG-APPR-003", "got 'https://in-toto.io/Statement/v0.1', expected 'https://in-toto.io/Statement/v1'")


def test_subject_list_with_two_digests(release: Path) -> None:
    statement = statement_for(release, "jane")
    statement["subject"].append({"name": "other-model", "digest": {"sha256": "1" * 64}})
    replace(release, "jane", raw_bundle(canonical_json(statement), "jane"))
    denied(gate(release), "MLG-APPR-003", "expected exactly one subject (the model), got 2")


def test_signature_over_a_different_payload(release: Path) -> None:
    path = approvals_dir(release) / "jane.roe_hospital.example.approval.production.sigstore.json"
    doc = json.loads(path.read_bytes())
    other = json.loads((approvals_dir(release) / "jane.roe_hospital.example.approval.staging.sigstore.json").read_bytes())
    doc["dsseEnvelope"]["signatures"] = other["dsseEnvelope"]["signatures"]  # a valid signature, over another PAE
    path.write_text(json.dumps(doc))
    denied(gate(release), "MLG-APPR-003", "signature does not verify with key")


@pytest.mark.parametrize("mangle, reason", [
    (lambda s: s[: len(s) // 2 - 1], "bad base64"),      # truncated mid-quantum
    (lambda s: s[:8], "does not verify"),                # truncated to valid base64 of a short signature
    (lambda s: "!!" + s[2:], "bad base64"),              # garbage
    (lambda s: s.rstrip("=") if s.endswith("=") else s + "=", "base64"),  # padding broken
])
def test_truncated_or_garbage_base64(release: Path, mangle: Callable[[str], str], reason: str) -> None:
    path = approvals_dir(release) / "jane.roe_hospital.example.approval.production.sigstore.json"
    doc = json.loads(path.read_bytes())
    doc["dsseEnvelope"]["signatures"][0]["sig"] = mangle(doc["dsseEnvelope"]["signatures"][0]["sig"])
    path.write_text(json.dumps(doc))
    denied(gate(release), "MLG-APPR-003", "dsseEnvelope.signatures[0].sig", reason)


# --------------------------------------------------------------------------- certificates
def _with_jane_certificate(release: Path) -> None:
    ca = "certificateAuthorities:\n  - id: hospital-staff-ca\n    roots:\n      - pem: |\n" + textwrap.indent(PKI.root.pem.decode(), " " * 10)
    text = trust_file(release).read_text().replace("approvers:\n", ca + "approvers:\n", 1)
    text = text.replace("    meanings: [approval, responsibility]\n", "    meanings: [approval, responsibility]\n    certificates: [{ca: hospital-staff-ca}]\n", 1)
    trust_file(release).write_text(text)


def _cert_sign(release: Path, leaf, chain: bytes) -> None:
    replace(release, "jane", sign(release, "jane", key=leaf.key_pem, certificate_chain_pem=chain))


def test_certificate_approval_is_allowed(release: Path) -> None:
    _with_jane_certificate(release)
    leaf = PKI.leaf("jane.roe@hospital.example", cn="Dr. Jane Roe")
    _cert_sign(release, leaf, PKI.chain_pem(leaf))
    assert gate(release).allowed


def test_certificate_from_an_unlisted_ca(release: Path) -> None:
    _with_jane_certificate(release)
    other = make_pki("Other Org")
    leaf = other.leaf("jane.roe@hospital.example", cn="Dr. Jane Roe")
    _cert_sign(release, leaf, other.chain_pem(leaf))
    denied(gate(release), "MLG-APPR-003", "does not chain to a CA the trust policy lists")


def test_certificate_with_the_right_ca_but_another_email(release: Path) -> None:
    _with_jane_certificate(release)
    leaf = PKI.leaf("j.roe@hospital.example", cn="Dr. Jane Roe")
    _cert_sign(release, leaf, PKI.chain_pem(leaf))
    denied(gate(release), "MLG-APPR-003", "no approver in the trust policy is listed with that CA for j.roe@hospital.example")


def test_self_signed_certificate_with_the_approvers_email(release: Path) -> None:
    _with_jane_certificate(release)
    leaf = make_leaf(None, "jane.roe@hospital.example", cn="Dr. Jane Roe")
    _cert_sign(release, leaf, leaf.pem)
    denied(gate(release), "MLG-APPR-003", "a self-signed certificate CN=Dr. Jane Roe", "does not chain")


# --------------------------------------------------------------------------- the model files
def test_model_file_changed_after_signing(release: Path) -> None:
    weights = next(p for p in (release / "model").iterdir() if p.is_file())
    weights.write_bytes(weights.read_bytes() + b"\x00")
    decision = gate(release)
    denied(decision, "MLG-SIG-003", f"1 changed ({weights.name})")
    denied(decision, "MLG-APPR-010")  # and the approvals name the old model digest


def test_file_added_to_the_model(release: Path) -> None:
    (release / "model" / "backdoor.py").write_text("import os\n")
    denied(gate(release), "MLG-SIG-003", "1 extra (backdoor.py)")


def test_file_removed_from_the_model(release: Path) -> None:
    victim = sorted(p for p in (release / "model").iterdir() if p.is_file())[0]
    victim.unlink()
    denied(gate(release), "MLG-SIG-003", f"1 missing ({victim.name})")


def test_symlink_in_the_model_pointing_outside(release: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.bin").write_bytes(b"secret")
    os.symlink(tmp_path / "outside.bin", release / "model" / "extra.bin")
    denied(gate(release), "error", "symbolic links are not allowed in a model")
    report = verify_release(release, load_trust_policy(trust_file(release)), EXAMPLES_NOW)
    sig = next(r for r in report.rows if r.kind == "model-signature")
    assert sig.status == "failed" and "symbolic links are not allowed" in sig.reason and not report.ok


def test_every_attack_is_also_visible_in_mlgate_verify(release: Path) -> None:
    replace(release, "jane", sign(release, "jane", model_digest="0" * 64))
    report = verify_release(release, load_trust_policy(trust_file(release)), EXAMPLES_NOW)
    row = next(r for r in report.rows if "jane" in r.artifact and "production" in r.artifact)
    assert row.status == "failed" and "signed for model digest 000000000000" in row.reason and not report.ok

