"""Signing keys: generate, load, identify, sign, verify (``cryptography`` only, nothing hand-rolled).

Supported key types: ECDSA over P-256 (SHA-256; P-384/SHA-384 and P-521/SHA-512 are accepted for
verification, as model-signing does) and Ed25519. ECDSA signatures are deterministic (RFC 6979)
so that signing the same statement with the same key at the same time gives the same bytes.

The key id is the one model-signing writes into ``verificationMaterial.publicKey.hint`` in key
mode: the lowercase hex SHA-256 of the key's **PEM** SubjectPublicKeyInfo encoding (as
``cryptography`` serialises it, trailing newline included), not of the DER bytes. Matching it
lets one trust policy name the same key for model-signing signatures and mlgate approvals.

``cryptography`` is imported inside the functions: the CLI must start fast.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlgate.errors import InputError
from mlgate.safeio import display, read_bytes

if TYPE_CHECKING:  # pragma: no cover
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    PrivateKey = EllipticCurvePrivateKey | Ed25519PrivateKey
    PublicKey = EllipticCurvePublicKey | Ed25519PublicKey
else:
    PrivateKey = Any
    PublicKey = Any

KeyKind = Literal["ecdsa-p256", "ed25519"]
KEY_KINDS: tuple[str, ...] = ("ecdsa-p256", "ed25519")

#: PEM key files are tiny; a larger file is not a key.
MAX_KEY_FILE_BYTES = 64 * 1024

_EC_CURVES = {"secp256r1": "SHA256", "secp384r1": "SHA384", "secp521r1": "SHA512"}


# --------------------------------------------------------------------------- generate
def generate_keypair(kind: KeyKind) -> tuple[bytes, bytes]:
    """A fresh key pair as (unencrypted PKCS#8 private PEM, SubjectPublicKeyInfo public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if kind == "ecdsa-p256":
        private: Any = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported key kind {kind!r}; expected one of {', '.join(KEY_KINDS)}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_pem, public_key_pem(private.public_key())


# --------------------------------------------------------------------------- identify
def public_key_pem(public_key: PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key: PublicKey) -> str:
    """Hex SHA-256 of the PEM SubjectPublicKeyInfo: model-signing's key-mode ``hint``."""
    return hashlib.sha256(public_key_pem(public_key)).hexdigest()


def key_kind(key: PrivateKey | PublicKey) -> str:
    """``ecdsa-p256`` / ``ecdsa-p384`` / ``ecdsa-p521`` / ``ed25519``."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}[key.curve.name]
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    raise TypeError(f"unsupported key object {type(key).__name__}")


def _check_supported(key: Any, name: str, field: str | None) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if key.curve.name not in _EC_CURVES:
            raise InputError(
                f"unsupported elliptic curve {key.curve.name}; expected P-256 (or P-384/P-521) or an Ed25519 key",
                file=name, field=field,
            )
        return
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return
    kind = type(key).__name__.replace("_", "").replace("PrivateKey", "").replace("PublicKey", "") or "unknown"
    raise InputError(f"unsupported key type {kind}; expected an ECDSA P-256 or Ed25519 key", file=name, field=field)


# --------------------------------------------------------------------------- load
def load_private_key_pem(data: bytes, name: str, *, password: bytes | None = None, field: str | None = None) -> PrivateKey:
    """Parse a PEM private key; every failure is an :class:`InputError` naming ``name``."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise InputError("not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' block)", file=name, field=field)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:
        text = str(exc).lower()
        if "not encrypted" in text:
            raise InputError("a password was given but the private key is not encrypted", file=name, field=field) from None
        raise InputError("the private key is encrypted and no password was given", file=name, field=field) from None
    except UnsupportedAlgorithm as exc:
        raise InputError(f"unsupported private key algorithm: {exc}", file=name, field=field) from None
    except ValueError:
        if password is not None:
            # A wrong password usually fails the padding check ("Bad decrypt"), but about one
            # time in 256 the garbage passes it and fails later as undecodable key data.
            raise InputError("cannot decrypt the private key: wrong password, or corrupt key data", file=name, field=field) from None
        raise InputError("not a valid PEM private key (cannot decode the key data)", file=name, field=field) from None
    _check_supported(key, name, field)
    return key


def load_private_key(path: Path, *, password: bytes | None = None) -> PrivateKey:
    return load_private_key_pem(read_bytes(path, limit=MAX_KEY_FILE_BYTES), display(path), password=password)


def load_public_key_pem(data: bytes, name: str, *, field: str | None = None) -> PublicKey:
    """Parse a PEM SubjectPublicKeyInfo public key; failures are :class:`InputError`."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if b"PRIVATE KEY-----" in data:
        raise InputError("this is a private key; a trust file must only hold public keys", file=name, field=field)
    if b"-----BEGIN PUBLIC KEY-----" not in data:
        raise InputError("not a PEM public key (no '-----BEGIN PUBLIC KEY-----' block)", file=name, field=field)
    try:
        key = serialization.load_pem_public_key(data)
    except UnsupportedAlgorithm as exc:
        raise InputError(f"unsupported public key algorithm: {exc}", file=name, field=field) from None
    except ValueError:
        raise InputError("not a valid PEM public key (cannot decode the key data)", file=name, field=field) from None
    _check_supported(key, name, field)
    return key


def load_public_key(path: Path) -> PublicKey:
    return load_public_key_pem(read_bytes(path, limit=MAX_KEY_FILE_BYTES), display(path))


# --------------------------------------------------------------------------- sign / verify
def sign(private_key: PrivateKey, message: bytes) -> bytes:
    """Sign ``message``: deterministic ECDSA (DER signature) with the curve's hash, or Ed25519."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        algorithm = getattr(hashes, _EC_CURVES[private_key.curve.name])()
        return private_key.sign(message, ec.ECDSA(algorithm, deterministic_signing=True))
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(message)
    raise TypeError(f"unsupported private key object {type(private_key).__name__}")


def verify(public_key: PublicKey, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` over ``message`` verifies with ``public_key``; never raises on bad input."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            curve_hash = _EC_CURVES.get(public_key.curve.name)
            if curve_hash is None:
                return False
            public_key.verify(signature, message, ec.ECDSA(getattr(hashes, curve_hash)()))
            return True
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, message)
            return True
    except (InvalidSignature, ValueError):
        return False
    return False
