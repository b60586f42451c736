from __future__ import annotations

import base64
import hashlib
import datetime as dt
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgate.signing import keys
from mlgate.signing.attestation import make_statement, sign_statement
from mlgate.clock import epoch_ns
from mlgate.errors import InputError
from mlgate.evidence.approval import PREDICATE_TYPE, create_approval, verify_approval
from mlgate.signing.trust import TrustPolicy, parse_trust_policy

ASSETS = Path(__file__).parent / "assets" / "signing"
KEYS = ASSETS / "keys"
GOLDEN = ASSETS / "approval-golden.sigstore.json"
UTC = dt.timezone.utc
MODEL = "3736e691028c6e93fccf6329275dbca792306cca7ebaf5b993fbab9bcc8c60c2"


def pem(name: str, kind: str = "pub") -> bytes:
    return (KEYS / f"{name}.{kind}.pem").read_bytes()


def kid(name: str) -> str:
    return keys.key_id(keys.load_public_key_pem(pem(name), name))


def inline(name: str) -> str:
    return "      - pem: |\n" + textwrap.indent(pem(name).decode(), " " * 10)


TRUST_YAML = f"""\
apiVersion: mlgate.dev/v1
kind: TrustPolicy
approvers:
  - id: jane.roe@hospital.example
    name: Dr. Jane Roe
    roles: [clinical-safety-officer]
    meanings: [review, approval]
    environments: [staging, production]
    keys:
{inline("approver-ecdsa")}  - id: john.doe@hospital.example
    name: John Doe
    roles: [data-steward]
    meanings: [review]
    keys:
{inline("approver-ed25519")}modelSigners:
  - id: ml-platform-ci
    name: CI
    keys:
{inline("model-signer-ecdsa")}"""

TRUST: TrustPolicy = parse_trust_policy(TRUST_YAML.encode(), "trust.yaml", base_dir=ASSETS)

GOLDEN_ARGS: dict[str, Any] = dict(
    release_name="readmission-risk",
    model_digest=MODEL,
    printed_name="Dr. Jane Roe",
    signer_id="jane.roe@hospital.example",
    role="clinical-safety-officer",
    meaning="approval",
    environment="production",
    signed_at=dt.datetime(2026, 11, 28, 9, 30, 0, 250000, tzinfo=UTC),
    expires_at=dt.datetime(2027, 2, 28, 9, 30, tzinfo=UTC),
    evidence_digests={"evidence/model_card.md": "a" * 64, "evidence/bias_audit.json": "b" * 64},
    comment="Reviewed bias audit and model card; approved for production.",
)
JOHN_ARGS = {**GOLDEN_ARGS, "printed_name": "John Doe", "signer_id": "john.doe@hospital.example", "role": "data-steward", "meaning": "review", "expires_at": None, "comment": None}


def jane(**changes: Any) -> bytes:
    return create_approval(pem("approver-ecdsa", "key"), **{**GOLDEN_ARGS, **changes})


def john(**changes: Any) -> bytes:
    return create_approval(pem("approver-ed25519", "key"), **{**JOHN_ARGS, **changes})


def signed_predicate(predicate: dict, *, key: str = "approver-ecdsa", subject: list | None = None, predicate_type: str = PREDICATE_TYPE) -> bytes:
    subject = subject or [{"name": "readmission-risk", "digest": {"sha256": MODEL}}]
    return sign_statement(make_statement(subject, predicate_type, predicate), keys.load_private_key_pem(pem(key, "key"), key))


def predicate_of(data: bytes) -> dict:
    return json.loads(base64.b64decode(json.loads(data)["dsseEnvelope"]["payload"]))["predicate"]


# --------------------------------------------------------------------------- round trips
def test_round_trip_ecdsa_full_record() -> None:
    record = verify_approval(jane(), "evidence/approvals/jane.sigstore.json", trust=TRUST)
    assert record == {
        "path": "evidence/approvals/jane.sigstore.json", "digest": record["digest"],
        "verified": True, "reason": None,
        "signer_id": "jane.roe@hospital.example", "printed_name": "Dr. Jane Roe",
        "role": "clinical-safety-officer", "meaning": "approval",
        "manifestation": "Dr. Jane Roe, approval as clinical-safety-officer, signed 2026-11-28T09:30:00.250000Z",
        "role_authorised": True, "meaning_authorised": True, "environment_authorised": True,
        "identity_source": "key", "identity": kid("approver-ecdsa"), "key_id": kid("approver-ecdsa"), "certificate": None,
        "key_status": "valid", "key_revoked_at": None, "key_revoked_at_ns": None, "key_revocation_reason": None,
        "signed_at": "2026-11-28T09:30:00.250000Z", "signed_at_ns": 1795858200250000000, "signed_at_source": "signer",
        "time_authority": None, "claimed_signed_at": "2026-11-28T09:30:00.250000Z", "key_valid_until": None, "key_valid_until_ns": None,
        "expires_at": "2027-02-28T09:30:00Z", "expires_at_ns": epoch_ns(GOLDEN_ARGS["expires_at"]),
        "environment": "production", "subject_digest": MODEL,
        "statement_digest": hashlib.sha256(base64.b64decode(json.loads(jane())["dsseEnvelope"]["payload"])).hexdigest(),
        "evidence_digests": GOLDEN_ARGS["evidence_digests"], "authored": [],
        "comment": "Reviewed bias audit and model card; approved for production.",
        "release": None,  # made without a release binding: legacy (the gate judges it, see test_release_binding)
    }
    assert record["signed_at_ns"] == epoch_ns(GOLDEN_ARGS["signed_at"])


def test_round_trip_ed25519() -> None:
    record = verify_approval(john(), "john.json", trust=TRUST)
    assert record["verified"] and record["key_id"] == kid("approver-ed25519")
    assert record["expires_at"] is None and record["expires_at_ns"] is None and record["comment"] is None
    assert record["role_authorised"] and record["meaning_authorised"] and record["environment_authorised"]


def test_statement_shape() -> None:
    statement = json.loads(base64.b64decode(json.loads(jane())["dsseEnvelope"]["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://mlgate.dev/attestation/approval/v1"
    assert statement["subject"] == [{"name": "readmission-risk", "digest": {"sha256": MODEL}}]
    assert statement["predicate"]["signer"] == {"id": "jane.roe@hospital.example", "printedName": "Dr. Jane Roe"}


def test_evidence_digest_map_preserved() -> None:
    digests = {f"evidence/file-{i}.json": f"{i:064x}" for i in range(50)}
    digests["evidence/ünïcode name.md"] = "c" * 64
    record = verify_approval(jane(evidence_digests=digests), "a.json", trust=TRUST)
    assert record["verified"] and record["evidence_digests"] == digests


# --------------------------------------------------------------------------- determinism
def test_deterministic_for_fixed_key_and_time() -> None:
    assert jane() == jane()
    assert john() == john()
    assert jane(signed_at=GOLDEN_ARGS["signed_at"] + dt.timedelta(microseconds=1)) != jane()


def test_golden_bytes() -> None:
    """Changing the format is a decision: regenerate with MLGATE_UPDATE_GOLDENS=1."""
    if os.environ.get("MLGATE_UPDATE_GOLDENS"):
        GOLDEN.write_bytes(jane())
    assert GOLDEN.read_bytes() == jane()
    assert verify_approval(GOLDEN.read_bytes(), "golden", trust=TRUST)["verified"]


# --------------------------------------------------------------------------- who may sign what
def test_valid_signature_by_a_claiming_to_be_b_is_not_verified() -> None:
    forged = create_approval(pem("approver-ed25519", "key"), **GOLDEN_ARGS)  # John's key, Jane's name
    record = verify_approval(forged, "forged.json", trust=TRUST)
    assert not record["verified"]
    assert f"signed with key {kid('approver-ed25519')} of approver 'john.doe@hospital.example', but the approval claims signer 'jane.roe@hospital.example'" in record["reason"]
    assert record["reason"].startswith("forged.json: dsseEnvelope.payload.predicate.signer.id")
    assert not record["role_authorised"] and not record["meaning_authorised"] and not record["environment_authorised"]


def test_printed_name_must_match_trust_policy() -> None:
    record = verify_approval(jane(printed_name="Dr. J. Roe"), "a.json", trust=TRUST)
    assert not record["verified"] and "printed name 'Dr. J. Roe' differs from 'Dr. Jane Roe'" in record["reason"]


@pytest.mark.parametrize("key, reason", [
    ("other-ecdsa", "unknown key hint"),
    ("model-signer-ecdsa", "belongs to model signer 'ml-platform-ci', not to an approver"),
])
def test_untrusted_or_non_approver_key(key: str, reason: str) -> None:
    data = create_approval(pem(key, "key"), **GOLDEN_ARGS)
    record = verify_approval(data, "a.json", trust=TRUST)
    assert not record["verified"] and reason in record["reason"]
    assert record["key_id"] is None and record["signer_id"] is None


def test_role_meaning_environment_authorisation_are_facts() -> None:
    record = verify_approval(john(role="clinical-safety-officer", meaning="approval", environment="research"), "a.json", trust=TRUST)
    assert record["verified"]  # authentic: John signed it ...
    assert not record["role_authorised"] and not record["meaning_authorised"]  # ... but may not approve as CSO
    assert record["environment_authorised"]  # John has no environment restriction
    record = verify_approval(jane(environment="research"), "a.json", trust=TRUST)
    assert record["verified"] and record["role_authorised"] and not record["environment_authorised"]


def test_expired_approval_is_a_fact_for_the_policy() -> None:
    record = verify_approval(
        jane(signed_at=dt.datetime(2020, 1, 1, tzinfo=UTC), expires_at=dt.datetime(2020, 2, 1, tzinfo=UTC)), "a.json", trust=TRUST
    )
    assert record["verified"] and record["expires_at"] == "2020-02-01T00:00:00Z"
    assert record["expires_at_ns"] < epoch_ns(dt.datetime(2026, 11, 29, tzinfo=UTC))


def test_wrong_subject_is_reported_not_hidden() -> None:
    record = verify_approval(jane(model_digest="f" * 64), "a.json", trust=TRUST)
    assert record["verified"] and record["subject_digest"] == "f" * 64 != MODEL


def test_no_approvers_fails_closed() -> None:
    trust = parse_trust_policy(b"apiVersion: mlgate.dev/v1\nkind: TrustPolicy\napprovers: []\n", "t.yaml", base_dir=ASSETS)
    record = verify_approval(jane(), "a.json", trust=trust)
    assert not record["verified"] and "no trusted keys" in record["reason"]


# --------------------------------------------------------------------------- hostile content
GOOD_PREDICATE = predicate_of(jane())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"meaning": "authorised"}, r"predicate.meaning: got 'authorised', expected one of review"),
        ({"extra": 1}, r"predicate: unexpected field\(s\) 'extra'"),
        ({"signedAt": "2026-11-28 09:30:00"}, r"predicate.signedAt: .* does not match"),
        ({"signedAt": "2026-13-28T09:30:00Z"}, r"not a valid time"),
        ({"expiresAt": "2020-01-01T00:00:00Z"}, r"predicate.expiresAt: expiresAt 2020-01-01T00:00:00Z is not after signedAt"),
        ({"evidenceDigests": {"a": "XYZ"}}, r"predicate.evidenceDigests.a: 'XYZ' does not match"),
        ({"role": "cso\n"}, r"predicate.role"),
        ({"comment": 5}, r"predicate.comment"),
    ],
)
def test_invalid_predicate_not_verified(change: dict, message: str) -> None:
    record = verify_approval(signed_predicate({**GOOD_PREDICATE, **change}), "a.json", trust=TRUST)
    assert not record["verified"]
    assert record["reason"].startswith("a.json: dsseEnvelope.payload.predicate")
    import re

    assert re.search(message, record["reason"]), record["reason"]
    assert "\n" not in record["reason"]


def test_missing_predicate_field() -> None:
    predicate = dict(GOOD_PREDICATE)
    del predicate["signer"]
    record = verify_approval(signed_predicate(predicate), "a.json", trust=TRUST)
    assert not record["verified"] and "'signer' is required" in record["reason"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"predicate_type": "https://mlgate.dev/attestation/bias/v1"}, "expected 'https://mlgate.dev/attestation/approval/v1'"),
        ({"subject": [{"name": "a", "digest": {"sha256": MODEL}}, {"name": "b", "digest": {"sha256": MODEL}}]}, "exactly one subject"),
        ({"subject": [{"name": "a", "digest": {"sha256": MODEL, "sha512": "ab"}}]}, "exactly {sha256"),
        ({"subject": [{"name": "", "digest": {"sha256": MODEL}}]}, "non-empty name"),
    ],
)
def test_wrong_statement_not_verified(kwargs: dict, message: str) -> None:
    record = verify_approval(signed_predicate(GOOD_PREDICATE, **kwargs), "a.json", trust=TRUST)
    assert not record["verified"] and message in record["reason"]


@pytest.mark.parametrize("data", [b"", b"\x00\xff", b"{}", b"[]", b'{"mediaType": []}', b"x" * 1000])
def test_garbage_never_raises(data: bytes) -> None:
    record = verify_approval(data, "a.json", trust=TRUST)
    assert not record["verified"] and record["reason"].startswith("a.json")
    assert record["evidence_digests"] == {} and record["signed_at_ns"] is None


SIGNED_JANE = jane()
SIGNED_JOHN = john()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(["jane", "john"]), data=st.data())
def test_mutating_one_byte_anywhere_is_not_verified(which: str, data: st.DataObject) -> None:
    original = SIGNED_JANE if which == "jane" else SIGNED_JOHN
    index = data.draw(st.integers(0, len(original) - 1), label="index")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != original[index]), label="value")
    record = verify_approval(original[:index] + bytes([value]) + original[index + 1 :], "a.json", trust=TRUST)
    assert record["verified"] is False and record["reason"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert verify_approval(data, "a.json", trust=TRUST)["verified"] is False


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=20))
def test_arbitrary_signed_predicates_never_raise(predicate: Any) -> None:
    if not isinstance(predicate, dict):
        predicate = {"value": predicate}
    record = verify_approval(signed_predicate(predicate), "a.json", trust=TRUST)
    assert record["verified"] is False


# --------------------------------------------------------------------------- creating
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"meaning": "signing"}, "predicate.meaning: got 'signing'"),
        ({"model_digest": "ABC"}, "model digest must be 64 lowercase hex"),
        ({"release_name": ""}, "release name"),
        ({"expires_at": GOLDEN_ARGS["signed_at"]}, "is not after signed_at"),
        ({"signed_at": dt.datetime(2026, 1, 1)}, "timezone-aware"),
        ({"evidence_digests": {"x": "nothex"}}, "predicate.evidenceDigests.x"),
        ({"signer_id": "has space"}, "predicate.signer.id"),
    ],
)
def test_create_refuses_what_verify_would_refuse(changes: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        jane(**changes)


def test_create_with_bad_key() -> None:
    with pytest.raises(InputError, match="not a PEM private key"):
        create_approval(b"nope", **GOLDEN_ARGS)
    with pytest.raises(InputError, match="this is a private key|not a PEM private key"):
        create_approval(pem("approver-ecdsa"), **GOLDEN_ARGS)


def test_non_utc_times_are_normalised() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    record = verify_approval(jane(signed_at=dt.datetime(2026, 11, 28, 10, 30, 0, 250000, tzinfo=cet)), "a.json", trust=TRUST)
    assert record["signed_at"] == "2026-11-28T09:30:00.250000Z"
    assert jane(signed_at=dt.datetime(2026, 11, 28, 10, 30, 0, 250000, tzinfo=cet)) == jane()
