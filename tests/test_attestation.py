from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgate.signing import attestation, keys
from mlgate.signing.attestation import (
    BundleFormatError,
    SignatureMismatch,
    StatementError,
    make_statement,
    pae,
    parse_bundle,
    sign_statement,
    verify_bundle,
)

ASSETS = Path(__file__).parent / "assets" / "signing"
REAL = ASSETS / "model-signing-key-mode"
KEYS = ASSETS / "keys"
REAL_ROOT = "3736e691028c6e93fccf6329275dbca792306cca7ebaf5b993fbab9bcc8c60c2"


def private(name: str) -> Any:
    return keys.load_private_key(KEYS / f"{name}.key.pem")


def public(name: str) -> Any:
    return keys.load_public_key(KEYS / f"{name}.pub.pem")


STATEMENT = make_statement(
    [{"name": "release", "digest": {"sha256": "ab" * 32}}], "https://mlgate.dev/attestation/test/v1", {"x": 1, "y": ["z"]}
)


def raw_bundle(payload: bytes, key: Any, *, payload_type: str = attestation.IN_TOTO_PAYLOAD_TYPE, hint: str | None = None, sign_type: str | None = None) -> bytes:
    """A bundle built by hand (to sign things sign_statement refuses to)."""
    sig = keys.sign(key, pae(sign_type or payload_type, payload))
    doc = {
        "mediaType": attestation.BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": hint if hint is not None else keys.key_id(key.public_key())}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": payload_type,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
        },
    }
    return json.dumps(doc).encode()


def edit(data: bytes, fn) -> bytes:
    doc = json.loads(data)
    fn(doc)
    return json.dumps(doc).encode()


# --------------------------------------------------------------------------- real model-signing output
def test_verifies_real_model_signing_bundle() -> None:
    verified = verify_bundle((REAL / "model.sig").read_bytes(), "model.sig", [keys.load_public_key(REAL / "signer.pub.pem")])
    assert verified.key_id == "e113fd6d5c7bc41ba3e711ff135b641d4b1c21abed43186a57e551b61da2576a"
    assert verified.statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert verified.statement["subject"][0]["digest"]["sha256"] == REAL_ROOT


def test_real_bundle_refused_with_other_key() -> None:
    with pytest.raises(SignatureMismatch, match="unknown key hint e113fd"):
        verify_bundle((REAL / "model.sig").read_bytes(), "model.sig", [public("other-ecdsa")])
    # Without the hint, every candidate is tried and none verifies.
    no_hint = edit((REAL / "model.sig").read_bytes(), lambda d: d["verificationMaterial"]["publicKey"].pop("hint"))
    with pytest.raises(SignatureMismatch, match="does not verify with any of the 2 trusted keys"):
        verify_bundle(no_hint, "model.sig", [public("other-ecdsa"), public("approver-ecdsa")])
    assert verify_bundle(no_hint, "model.sig", [public("other-ecdsa"), keys.load_public_key(REAL / "signer.pub.pem")]).statement


def test_pae_matches_model_signing_and_sigstore() -> None:
    from model_signing._signing import sign_sigstore_pb
    from sigstore import dsse

    payload = b'{"a": "\xc3\xa9"}'
    assert pae(attestation.IN_TOTO_PAYLOAD_TYPE, payload) == sign_sigstore_pb.pae(payload)
    assert pae(attestation.IN_TOTO_PAYLOAD_TYPE, payload) == dsse._pae(attestation.IN_TOTO_PAYLOAD_TYPE, payload)
    assert attestation.pae_legacy(payload) == sign_sigstore_pb.pae_compat(payload)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["approver-ecdsa", "approver-ed25519"])
def test_sign_verify_round_trip(name: str) -> None:
    data = sign_statement(STATEMENT, private(name))
    verified = verify_bundle(data, "b.json", [public(name), public("other-ecdsa")])
    assert verified.statement == STATEMENT
    assert verified.key_id == keys.key_id(public(name))
    doc = json.loads(data)
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert doc["verificationMaterial"] == {"publicKey": {"hint": verified.key_id}, "tlogEntries": []}
    assert doc["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"


@pytest.mark.parametrize("name", ["approver-ecdsa", "approver-ed25519"])
def test_signing_is_deterministic(name: str) -> None:
    assert sign_statement(STATEMENT, private(name)) == sign_statement(STATEMENT, private(name))


@pytest.mark.parametrize("name", ["approver-ecdsa", "approver-ed25519"])
def test_bundle_is_read_by_sigstore_models(name: str) -> None:
    from sigstore_models.bundle.v1 import Bundle

    bundle = Bundle.from_json(sign_statement(STATEMENT, private(name)).decode())
    assert bundle.verification_material.public_key.hint == keys.key_id(public(name))
    assert bundle.dsse_envelope.payload_type == "application/vnd.in-toto+json"


def test_model_signing_verifies_our_ecdsa_bundle(tmp_path: Path) -> None:
    """model-signing's own key verifier accepts what we write (same container, same PAE)."""
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    path = tmp_path / "b.sig"
    path.write_bytes(sign_statement(STATEMENT, private("approver-ecdsa")))
    signature = sign_sigstore_pb.Signature.read(path)
    verifier = sign_ec_key.Verifier(KEYS / "approver-ecdsa.pub.pem")
    payload_type, payload = verifier._verify_signed_content(signature)
    assert payload_type == attestation.IN_TOTO_PAYLOAD_TYPE
    assert json.loads(payload) == STATEMENT


def test_signing_refuses_a_non_statement() -> None:
    with pytest.raises(StatementError, match="_type"):
        sign_statement({**STATEMENT, "_type": "https://in-toto.io/Statement/v0.1"}, private("approver-ecdsa"))


# --------------------------------------------------------------------------- precise failures
def test_bad_base64() -> None:
    data = edit(sign_statement(STATEMENT, private("approver-ecdsa")), lambda d: d["dsseEnvelope"].update(payload="@@@"))
    with pytest.raises(BundleFormatError, match=r"b.json: dsseEnvelope.payload: bad base64"):
        verify_bundle(data, "b.json", [public("approver-ecdsa")])
    data = edit(sign_statement(STATEMENT, private("approver-ecdsa")), lambda d: d["dsseEnvelope"]["signatures"][0].update(sig="YQ"))
    with pytest.raises(BundleFormatError, match=r"signatures\[0\].sig: bad base64"):
        verify_bundle(data, "b.json", [public("approver-ecdsa")])


def test_non_canonical_base64() -> None:
    # "YR==" decodes to b"a" like "YQ==" but is not its encoding.
    data = edit(sign_statement(STATEMENT, private("approver-ecdsa")), lambda d: d["dsseEnvelope"]["signatures"][0].update(sig="YR=="))
    with pytest.raises(BundleFormatError, match="non-canonical base64"):
        parse_bundle(data, "b.json")


def test_wrong_payload_type_signed_and_unsigned() -> None:
    key = private("approver-ecdsa")
    payload = json.dumps(STATEMENT).encode()
    signed_other = raw_bundle(payload, key, payload_type="application/json")
    with pytest.raises(StatementError, match="payloadType: got payloadType 'application/json'"):
        verify_bundle(signed_other, "b.json", [public("approver-ecdsa")])
    # Changing the payload type without re-signing breaks the PAE signature first.
    tampered = edit(sign_statement(STATEMENT, key), lambda d: d["dsseEnvelope"].update(payloadType="application/json"))
    with pytest.raises(SignatureMismatch, match="does not verify with key"):
        verify_bundle(tampered, "b.json", [public("approver-ecdsa")])


def test_signature_does_not_verify_names_key() -> None:
    key = private("approver-ecdsa")
    kid = keys.key_id(key.public_key())
    wrong = raw_bundle(json.dumps(STATEMENT).encode(), private("other-ecdsa"), hint=kid)
    with pytest.raises(SignatureMismatch, match=f"signature does not verify with key {kid}"):
        verify_bundle(wrong, "b.json", [public("approver-ecdsa"), public("other-ecdsa")])


def test_unknown_key_hint_and_no_keys() -> None:
    data = sign_statement(STATEMENT, private("approver-ecdsa"))
    with pytest.raises(SignatureMismatch, match="unknown key hint"):
        verify_bundle(data, "b.json", [public("other-ecdsa")])
    with pytest.raises(SignatureMismatch, match="no trusted keys"):
        verify_bundle(data, "b.json", [])


@pytest.mark.parametrize(
    "statement, message",
    [
        ({**STATEMENT, "_type": "https://in-toto.io/Statement/v0.1"}, r"_type: got 'https://in-toto.io/Statement/v0.1'"),
        ({**STATEMENT, "subject": []}, r"subject: expected a non-empty list"),
        ({**STATEMENT, "subject": [{"name": "x", "digest": {"sha256": "AB"}}]}, r"digest.sha256: sha256 digest must be 64"),
        ({**STATEMENT, "predicateType": ""}, r"predicateType"),
        ({**STATEMENT, "predicate": []}, r"predicate must be an object"),
        ({**STATEMENT, "extra": 1}, r"unexpected statement field 'extra'"),
        ([1, 2], r"statement must be a JSON object"),
    ],
)
def test_statement_errors(statement: Any, message: str) -> None:
    data = raw_bundle(json.dumps(statement).encode(), private("approver-ed25519"))
    with pytest.raises(StatementError, match=message):
        verify_bundle(data, "b.json", [public("approver-ed25519")])


def test_statement_duplicate_keys_and_bad_json() -> None:
    dup = b'{"_type": "https://in-toto.io/Statement/v1", "_type": "x"}'
    with pytest.raises(StatementError, match="duplicate key '_type'"):
        verify_bundle(raw_bundle(dup, private("approver-ecdsa")), "b.json", [public("approver-ecdsa")])
    with pytest.raises(StatementError, match="not JSON"):
        verify_bundle(raw_bundle(b"{not json", private("approver-ecdsa")), "b.json", [public("approver-ecdsa")])
    with pytest.raises(StatementError, match="not UTF-8"):
        verify_bundle(raw_bundle(b"\xff\xfe", private("approver-ecdsa")), "b.json", [public("approver-ecdsa")])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle.v0.2+json"), "mediaType: got"),
        (lambda d: d.pop("dsseEnvelope"), "missing required field 'dsseEnvelope'"),
        (lambda d: d.update(extra=1), "unexpected field 'extra'"),
        (lambda d: d.update(messageSignature={}), "messageSignature bundle"),
        (lambda d: d["verificationMaterial"].update(certificate={"rawBytes": "AA=="}), "expected exactly one of publicKey, certificate, x509CertificateChain, got publicKey, certificate"),
        (lambda d: d["verificationMaterial"].pop("publicKey"), "expected exactly one of publicKey, certificate, x509CertificateChain, got none"),
        (lambda d: d["verificationMaterial"].update(publicKey=None, x509CertificateChain={"certificates": []}) or d["verificationMaterial"].pop("publicKey"), "expected 1 to 10 certificates, got 0"),
        (lambda d: d["verificationMaterial"].update(tlogEntries=[{}]), "tlogEntries: transparency-log"),
        (lambda d: d["verificationMaterial"]["publicKey"].update(hint=5), "hint: expected a string"),
        (lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0]), "expected exactly one signature, got 2"),
        (lambda d: d["dsseEnvelope"].update(signatures=[]), "expected exactly one signature, got 0"),
        (lambda d: d["dsseEnvelope"]["signatures"][0].update(sig=""), "empty signature"),
        (lambda d: d["dsseEnvelope"]["signatures"][0].update(keyid=None), "keyid: expected a string"),
    ],
)
def test_container_errors(mutate, message: str) -> None:
    data = edit(sign_statement(STATEMENT, private("approver-ecdsa")), mutate)
    with pytest.raises(BundleFormatError, match=message):
        parse_bundle(data, "b.json")


@pytest.mark.parametrize("data", [b"", b"[]", b"null", b"{", b"\x00\x01", "{\"a\":\"\udcff\"}".encode("utf-8", "surrogatepass"), b"NaN"])
def test_garbage_is_a_format_error(data: bytes) -> None:
    with pytest.raises(BundleFormatError, match="^b.json"):
        verify_bundle(data, "b.json", [public("approver-ecdsa")])


def test_keyid_must_name_the_hinted_key() -> None:
    data = edit(sign_statement(STATEMENT, private("approver-ecdsa")), lambda d: d["dsseEnvelope"]["signatures"][0].update(keyid="abc"))
    with pytest.raises(SignatureMismatch, match="keyid abc"):
        verify_bundle(data, "b.json", [public("approver-ecdsa")])


def test_errors_are_one_line() -> None:
    data = raw_bundle(json.dumps({**STATEMENT, "_type": "a\nb"}).encode(), private("approver-ecdsa"))
    with pytest.raises(StatementError) as info:
        verify_bundle(data, "b.json", [public("approver-ecdsa")])
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- sign, mutate one byte, fail
SIGNED = {name: sign_statement(STATEMENT, private(name)) for name in ("approver-ecdsa", "approver-ed25519")}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SIGNED)), data=st.data())
def test_any_single_byte_change_fails(name: str, data: st.DataObject) -> None:
    original = SIGNED[name]
    index = data.draw(st.integers(0, len(original) - 1), label="index")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != original[index]), label="value")
    mutated = original[:index] + bytes([value]) + original[index + 1 :]
    with pytest.raises(attestation.AttestationError):
        verify_bundle(mutated, "b.json", [public(name)])


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_every_position_flipped_fails(name: str) -> None:
    """Exhaustive over positions (one bit flip each), complementing the random values above."""
    original = SIGNED[name]
    key = [public(name)]
    for index in range(len(original)):
        mutated = original[:index] + bytes([original[index] ^ 0x01]) + original[index + 1 :]
        with pytest.raises(attestation.AttestationError):
            verify_bundle(mutated, "b.json", key)
