"""in-toto Statement v1 in a DSSE envelope in a Sigstore bundle v0.3, signed and verified.

Three verification materials are parsed: ``publicKey`` (key mode, below), ``x509CertificateChain``
or ``certificate`` without transparency-log entries (certificate mode: organisation PKI, as
model-signing's ``sign certificate`` writes it) and a ``certificate`` with ``tlogEntries``
(Sigstore keyless). This module verifies key mode; :mod:`mlgate.signing.signers` dispatches the other two
to :mod:`mlgate.signing.pki`.

The container is byte-compatible with what OpenSSF model-signing writes in key mode::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": "<key id>"}, "tlogEntries": []},
     "dsseEnvelope": {"payload": "<base64 statement JSON>",
                      "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": "<base64>", "keyid": ""}]}}

and the signature is over the DSSE v1 pre-authentication encoding (PAE) of the payload, exactly as
model-signing's ``sign_sigstore_pb.pae`` builds it, so the same code verifies ``model_signing
sign key`` output and mlgate approvals. (sigstore-python's ``sigstore.dsse`` and ``sigstore_models``
describe the same container; the tests check that both read what this module writes. They are not
used here because importing them costs ~0.1-0.3 s and their errors are not one-line diagnostics.)

Parsing is strict, so that changing any single byte of a bundle makes verification fail: unknown
fields are refused, base64 must be canonical, exactly one signature, and the statement payload
must be JSON without duplicate keys.

Three failure types, all :class:`~mlgate.errors.SignatureError` with a one-line message:
:class:`BundleFormatError` (the container is not a key-mode bundle), :class:`SignatureMismatch`
(no trusted key verifies the signature) and :class:`StatementError` (the signed payload is not an
in-toto Statement v1).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlgate.signing import keys as _keys
from mlgate.errors import InputError, SignatureError
from mlgate.safeio import parse_json

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

#: Hostile bundles are refused before any work when larger than this.
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
#: Certificates in one bundle, and the size of one (DER).
MAX_CHAIN = 10
MAX_CERT_BYTES = 64 * 1024
#: RFC 3161 timestamps in one bundle (sigstore-python accepts 32; one per authority is the norm).
MAX_TIMESTAMPS = 8


class AttestationError(SignatureError):
    """Base of the three ways a signed statement can fail."""


class BundleFormatError(AttestationError):
    """The bytes are not a Sigstore bundle v0.3 with a DSSE envelope and a public-key hint."""


class SignatureMismatch(AttestationError):
    """The envelope is well formed but no acceptable key verifies its signature."""


class StatementError(AttestationError):
    """The (signed) payload is not an in-toto Statement v1 as expected."""


@dataclass(frozen=True)
class Bundle:
    """A parsed, not yet verified key-mode bundle."""

    name: str
    hint: str | None  # verificationMaterial.publicKey.hint; None when absent or empty
    payload_type: str
    payload: bytes
    signature: bytes
    keyid: str  # the DSSE signature's keyid (model-signing writes "")
    mode: str = "key"  # key | certificate (organisation PKI) | keyless (Sigstore, with tlog entries)
    certificates: tuple[bytes, ...] = ()  # DER, leaf first (certificate and keyless modes)
    raw: bytes = field(default=b"", repr=False, compare=False)  # the bundle bytes (sigstore re-parses keyless ones)
    timestamps: tuple[bytes, ...] = ()  # RFC 3161 TimeStampResp DER over the signature (key and certificate modes)


@dataclass(frozen=True)
class VerifiedStatement:
    statement: dict[str, Any]
    payload: bytes
    key_id: str
    public_key: Any


# --------------------------------------------------------------------------- DSSE
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (secure-systems-lab/dsse protocol.md)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def pae_legacy(payload: bytes) -> bytes:
    """The pre-1.0 model-signing encoding (a bug they still accept): 'DSSEV1 ... b'<payload>''."""
    t = IN_TOTO_PAYLOAD_TYPE
    return f"DSSEV1 {len(t)} {t} {len(payload)} {payload!r}".encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, name: str, field: str) -> bytes:
    if not isinstance(value, str):
        raise BundleFormatError(f"expected a base64 string, got {_type_name(value)}", file=name, field=field)
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BundleFormatError("bad base64", file=name, field=field) from None
    if _b64(raw) != value:
        raise BundleFormatError("non-canonical base64 (padding or trailing bits differ from the encoding of its bytes)", file=name, field=field)
    return raw


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), type(value).__name__)


def _object(value: Any, name: str, field: str, *, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleFormatError(f"expected an object, got {_type_name(value)}", file=name, field=field)
    required = tuple(required)
    allowed = set(required) | set(optional)
    for key in value:
        if key not in allowed:
            raise BundleFormatError(f"unexpected field {key!r} (expected {', '.join(sorted(allowed))})", file=name, field=field)
    for key in required:
        if key not in value:
            raise BundleFormatError(f"missing required field {key!r}", file=name, field=field)
    return value


# --------------------------------------------------------------------------- parse
def parse_bundle(data: bytes, name: str) -> Bundle:
    """Parse the container (no signature check). Raises :class:`BundleFormatError` only."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"bundle is larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MiB", file=name)
    try:
        doc = parse_json(data, name)
    except InputError as exc:
        raise BundleFormatError(exc.message, file=name) from None
    if isinstance(doc, dict) and "messageSignature" in doc:
        raise BundleFormatError("a messageSignature bundle; expected a DSSE envelope (dsseEnvelope)", file=name, field="messageSignature")
    doc = _object(doc, name, "$", required=("mediaType", "verificationMaterial", "dsseEnvelope"))
    if doc["mediaType"] != BUNDLE_MEDIA_TYPE:
        raise BundleFormatError(f"got {doc['mediaType']!r}, expected {BUNDLE_MEDIA_TYPE!r}", file=name, field="mediaType")

    material = _object(
        doc["verificationMaterial"], name, "verificationMaterial", required=(),
        optional=("publicKey", "certificate", "x509CertificateChain", "tlogEntries", "timestampVerificationData"),
    )
    kinds = [k for k in ("publicKey", "certificate", "x509CertificateChain") if k in material]
    if len(kinds) != 1:
        raise BundleFormatError(
            f"expected exactly one of publicKey, certificate, x509CertificateChain, got {', '.join(kinds) or 'none'}",
            file=name, field="verificationMaterial",
        )
    tlog = material.get("tlogEntries", [])
    if not isinstance(tlog, list):
        raise BundleFormatError(f"expected a list, got {_type_name(tlog)}", file=name, field="verificationMaterial.tlogEntries")
    hint: Any = None
    certificates: tuple[bytes, ...] = ()
    if kinds[0] == "publicKey":
        mode = "key"
        public = _object(material["publicKey"], name, "verificationMaterial.publicKey", required=(), optional=("hint",))
        hint = public.get("hint")
        if hint is not None and not isinstance(hint, str):
            raise BundleFormatError(f"expected a string, got {_type_name(hint)}", file=name, field="verificationMaterial.publicKey.hint")
        if tlog != []:
            raise BundleFormatError(
                "transparency-log entries are not supported in key mode (expected an empty list)",
                file=name, field="verificationMaterial.tlogEntries",
            )
    else:
        if kinds[0] == "certificate":
            entries = [material["certificate"]]
            where = "verificationMaterial.certificate"
        else:
            chain = _object(material["x509CertificateChain"], name, "verificationMaterial.x509CertificateChain", required=("certificates",))
            entries = chain["certificates"]
            where = "verificationMaterial.x509CertificateChain.certificates"
            if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_CHAIN:
                count = len(entries) if isinstance(entries, list) else _type_name(entries)
                raise BundleFormatError(f"expected 1 to {MAX_CHAIN} certificates, got {count}", file=name, field=where)
        certs = []
        for i, entry in enumerate(entries):
            field = where if kinds[0] == "certificate" else f"{where}[{i}]"
            entry = _object(entry, name, field, required=("rawBytes",))
            der = _unb64(entry["rawBytes"], name, f"{field}.rawBytes")
            if not der or len(der) > MAX_CERT_BYTES:
                raise BundleFormatError(f"a certificate must be 1 to {MAX_CERT_BYTES} bytes of DER, got {len(der)}", file=name, field=f"{field}.rawBytes")
            certs.append(der)
        certificates = tuple(certs)
        # With transparency-log entries it is a Sigstore (keyless) bundle, verified by sigstore
        # against a trusted root; without, a certificate (organisation PKI) bundle.
        mode = "keyless" if tlog else "certificate"

    # RFC 3161 timestamps over the signature (mlgate.signing.timestamp verifies them). A keyless
    # bundle's are sigstore's to verify against its trusted root, so they are not read here.
    timestamps = _timestamps(material.get("timestampVerificationData"), name) if mode != "keyless" else ()

    envelope = _object(doc["dsseEnvelope"], name, "dsseEnvelope", required=("payload", "payloadType", "signatures"))
    payload = _unb64(envelope["payload"], name, "dsseEnvelope.payload")
    payload_type = envelope["payloadType"]
    if not isinstance(payload_type, str):
        raise BundleFormatError(f"expected a string, got {_type_name(payload_type)}", file=name, field="dsseEnvelope.payloadType")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1:
        count = len(signatures) if isinstance(signatures, list) else _type_name(signatures)
        raise BundleFormatError(f"expected exactly one signature, got {count}", file=name, field="dsseEnvelope.signatures")
    sig_entry = _object(signatures[0], name, "dsseEnvelope.signatures[0]", required=("sig",), optional=("keyid",))
    signature = _unb64(sig_entry["sig"], name, "dsseEnvelope.signatures[0].sig")
    if not signature:
        raise BundleFormatError("empty signature", file=name, field="dsseEnvelope.signatures[0].sig")
    keyid = sig_entry.get("keyid", "")
    if not isinstance(keyid, str):
        raise BundleFormatError(f"expected a string, got {_type_name(keyid)}", file=name, field="dsseEnvelope.signatures[0].keyid")
    return Bundle(
        name=name, hint=hint or None, payload_type=payload_type, payload=payload, signature=signature, keyid=keyid,
        mode=mode, certificates=certificates, raw=data, timestamps=timestamps,
    )


def _timestamps(block: Any, name: str) -> tuple[bytes, ...]:
    """``timestampVerificationData.rfc3161Timestamps[].signedTimestamp`` as DER (absent: none)."""
    if block is None:
        return ()
    where = "verificationMaterial.timestampVerificationData"
    block = _object(block, name, where, required=("rfc3161Timestamps",))
    entries = block["rfc3161Timestamps"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_TIMESTAMPS:
        count = len(entries) if isinstance(entries, list) else _type_name(entries)
        raise BundleFormatError(f"expected 1 to {MAX_TIMESTAMPS} timestamps, got {count}", file=name, field=f"{where}.rfc3161Timestamps")
    out = []
    for i, entry in enumerate(entries):
        field = f"{where}.rfc3161Timestamps[{i}]"
        entry = _object(entry, name, field, required=("signedTimestamp",))
        der = _unb64(entry["signedTimestamp"], name, f"{field}.signedTimestamp")
        if not der or len(der) > MAX_CERT_BYTES:
            raise BundleFormatError(f"a timestamp must be 1 to {MAX_CERT_BYTES} bytes of DER, got {len(der)}", file=name, field=f"{field}.signedTimestamp")
        if der in out:
            raise BundleFormatError("the same timestamp twice", file=name, field=f"{field}.signedTimestamp")
        out.append(der)
    return tuple(out)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(value: str) -> Any:
    raise ValueError(f"non-standard JSON constant {value}")


def parse_statement(payload: bytes, name: str, *, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> dict[str, Any]:
    """Parse and check an in-toto Statement v1 payload. Raises :class:`StatementError`."""
    field = "dsseEnvelope.payload"
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise StatementError(f"got payloadType {payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}", file=name, field="dsseEnvelope.payloadType")
    try:
        statement = json.loads(payload.decode("utf-8"), object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise StatementError(f"statement is not UTF-8 (invalid byte at offset {exc.start})", file=name, field=field) from None
    except json.JSONDecodeError as exc:
        raise StatementError(f"statement is not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})", file=name, field=field) from None
    except ValueError as exc:
        raise StatementError(f"statement is not strict JSON: {exc}", file=name, field=field) from None
    except RecursionError:
        raise StatementError("statement JSON is nested too deeply", file=name, field=field) from None
    if not isinstance(statement, dict):
        raise StatementError(f"statement must be a JSON object, got {_type_name(statement)}", file=name, field=field)
    allowed = {"_type", "subject", "predicateType", "predicate"}
    for key in statement:
        if key not in allowed:
            raise StatementError(f"unexpected statement field {key!r}", file=name, field=f"{field}.{key}")
    if statement.get("_type") != STATEMENT_TYPE:
        raise StatementError(f"got {statement.get('_type')!r}, expected {STATEMENT_TYPE!r}", file=name, field=f"{field}._type")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise StatementError("expected a non-empty list of subjects", file=name, field=f"{field}.subject")
    for i, subject in enumerate(subjects):
        where = f"{field}.subject[{i}]"
        if not isinstance(subject, dict):
            raise StatementError(f"expected an object, got {_type_name(subject)}", file=name, field=where)
        if not isinstance(subject.get("name", ""), str):
            raise StatementError("subject name must be a string", file=name, field=f"{where}.name")
        digest = subject.get("digest")
        if not isinstance(digest, dict) or not digest:
            raise StatementError("expected a non-empty digest object", file=name, field=f"{where}.digest")
        for alg, value in digest.items():
            if not isinstance(value, str) or not value:
                raise StatementError("digest values must be non-empty strings", file=name, field=f"{where}.digest.{alg}")
        sha = digest.get("sha256")
        if sha is not None and not _is_hex(sha, 64):
            raise StatementError("sha256 digest must be 64 lowercase hex digits", file=name, field=f"{where}.digest.sha256")
    ptype = statement.get("predicateType")
    if not isinstance(ptype, str) or not ptype:
        raise StatementError("expected a non-empty predicateType string", file=name, field=f"{field}.predicateType")
    if "predicate" in statement and not isinstance(statement["predicate"], dict):
        raise StatementError(f"predicate must be an object, got {_type_name(statement['predicate'])}", file=name, field=f"{field}.predicate")
    return statement


def _is_hex(value: Any, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


# --------------------------------------------------------------------------- verify
def _candidates(keys: Mapping[str, Any] | Iterable[Any]) -> dict[str, Any]:
    if isinstance(keys, Mapping):
        return dict(keys)
    return {_keys.key_id(k): k for k in keys}


def verify_signature(bundle: Bundle, keys: Mapping[str, Any] | Iterable[Any], *, legacy_pae: bool = False) -> tuple[str, Any]:
    """Find the key that verifies ``bundle``; return (key id, public key) or raise :class:`SignatureMismatch`.

    ``keys`` maps key id -> public key (or is an iterable of public keys). With a hint, only the
    key with that id is tried (model-signing refuses a hint that names another key); without one
    (older model-signing output), every candidate is tried.
    """
    candidates = _candidates(keys)
    name = bundle.name
    if bundle.mode != "key":
        raise SignatureMismatch(f"a {bundle.mode} bundle; only key-mode bundles verify against keys", file=name, field="verificationMaterial")
    if not candidates:
        raise SignatureMismatch("no trusted keys to verify with (fail closed)", file=name)
    if bundle.hint is not None:
        if bundle.hint not in candidates:
            raise SignatureMismatch(f"unknown key hint {_short(bundle.hint)}: no trusted key has this id", file=name, field="verificationMaterial.publicKey.hint")
        tried = {bundle.hint: candidates[bundle.hint]}
    else:
        tried = candidates
    if bundle.keyid:
        if bundle.keyid not in tried:
            raise SignatureMismatch(f"signature keyid {_short(bundle.keyid)} does not name the key {_short(bundle.hint or '?')}", file=name, field="dsseEnvelope.signatures[0].keyid")
        tried = {bundle.keyid: tried[bundle.keyid]}
    message = pae(bundle.payload_type, bundle.payload)
    for kid, key in tried.items():
        if _keys.verify(key, bundle.signature, message):
            return kid, key
        if legacy_pae and _keys.verify(key, bundle.signature, pae_legacy(bundle.payload)):
            return kid, key
    if len(tried) == 1:
        (kid,) = tried
        raise SignatureMismatch(f"signature does not verify with key {kid}", file=name, field="dsseEnvelope.signatures[0].sig")
    raise SignatureMismatch(f"signature does not verify with any of the {len(tried)} trusted keys (the bundle names no key)", file=name, field="dsseEnvelope.signatures[0].sig")


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def verify_bundle(data: bytes, name: str, keys: Mapping[str, Any] | Iterable[Any], *, legacy_pae: bool = False) -> VerifiedStatement:
    """Parse, verify the DSSE signature against the candidate keys, then parse the statement."""
    bundle = parse_bundle(data, name)
    kid, key = verify_signature(bundle, keys, legacy_pae=legacy_pae)
    statement = parse_statement(bundle.payload, name, payload_type=bundle.payload_type)
    return VerifiedStatement(statement=statement, payload=bundle.payload, key_id=kid, public_key=key)


# --------------------------------------------------------------------------- sign
def make_statement(subjects: list[dict[str, Any]], predicate_type: str, predicate: Mapping[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": predicate_type, "predicate": dict(predicate)}


def sign_statement(statement: Mapping[str, Any], private_key: Any, *, certificates: Iterable[bytes] | None = None,
                   timestamper: Callable[[bytes], bytes] | None = None) -> bytes:
    """Sign a statement (canonical JSON payload) and return the bundle JSON bytes.

    Deterministic: the same statement and key give the same bytes (RFC 6979 ECDSA, Ed25519).
    With ``certificates`` (DER, the leaf for ``private_key`` first, then intermediates) the bundle
    carries an ``x509CertificateChain`` as model-signing's certificate mode writes it, instead
    of a key-id hint. ``timestamper`` (signature bytes -> DER TimeStampResp, e.g.
    :func:`mlgate.signing.timestamp.request_timestamp`) adds an RFC 3161 timestamp over the
    signature in ``verificationMaterial.timestampVerificationData``, as sigstore-python stores it.
    """
    from mlgate.canonical import canonical_json

    payload = canonical_json(dict(statement))
    parse_statement(payload, "<statement to sign>")  # refuse to sign something we would not verify
    signature = _keys.sign(private_key, pae(IN_TOTO_PAYLOAD_TYPE, payload))
    if certificates is None:
        material: dict[str, Any] = {"publicKey": {"hint": _keys.key_id(private_key.public_key())}, "tlogEntries": []}
    else:
        chain = list(certificates)
        if not chain:
            raise InputError("a certificate chain needs at least the signing certificate")
        from cryptography import x509

        leaf_key = _keys.public_key_pem(x509.load_der_x509_certificate(chain[0]).public_key())
        if leaf_key != _keys.public_key_pem(private_key.public_key()):
            raise InputError("the signing certificate does not hold the public key of the private key")
        material = {"x509CertificateChain": {"certificates": [{"rawBytes": _b64(der)} for der in chain]}, "tlogEntries": []}
    if timestamper is not None:
        material["timestampVerificationData"] = {"rfc3161Timestamps": [{"signedTimestamp": _b64(timestamper(signature))}]}
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": _b64(payload),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": _b64(signature), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":"), ensure_ascii=True).encode("ascii")
