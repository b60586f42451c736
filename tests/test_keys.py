from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlgate.signing import keys
from mlgate.errors import InputError

ASSETS = Path(__file__).parent / "assets" / "signing"
REAL = ASSETS / "model-signing-key-mode"
REAL_HINT = "e113fd6d5c7bc41ba3e711ff135b641d4b1c21abed43186a57e551b61da2576a"


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_generate_load_sign_verify_round_trip(tmp_path: Path, kind: str) -> None:
    private_pem, public_pem = keys.generate_keypair(kind)
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    (tmp_path / "k.pem").write_bytes(private_pem)
    (tmp_path / "k.pub").write_bytes(public_pem)
    private = keys.load_private_key(tmp_path / "k.pem")
    public = keys.load_public_key(tmp_path / "k.pub")
    assert keys.key_kind(private) == kind == keys.key_kind(public)
    assert keys.key_id(private.public_key()) == keys.key_id(public)
    sig = keys.sign(private, b"message")
    assert keys.verify(public, sig, b"message")
    assert not keys.verify(public, sig, b"messagE")
    assert not keys.verify(public, b"\x00" * len(sig), b"message")
    assert not keys.verify(public, b"", b"message")


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_signing_is_deterministic(kind: str) -> None:
    private = keys.load_private_key_pem(keys.generate_keypair(kind)[0], "k")
    assert keys.sign(private, b"same") == keys.sign(private, b"same")
    assert keys.sign(private, b"same") != keys.sign(private, b"other")


def test_fresh_keypairs_differ() -> None:
    assert keys.generate_keypair("ed25519") != keys.generate_keypair("ed25519")


def test_unknown_kind_refused() -> None:
    with pytest.raises(ValueError, match="rsa"):
        keys.generate_keypair("rsa")  # type: ignore[arg-type]


def test_key_id_is_model_signing_hint() -> None:
    """model-signing writes sha256 of the PEM SubjectPublicKeyInfo, not of the DER bytes."""
    public = keys.load_public_key(REAL / "signer.pub.pem")
    assert keys.key_id(public) == REAL_HINT
    from cryptography.hazmat.primitives import serialization

    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert hashlib.sha256(der).hexdigest() != REAL_HINT


def test_key_id_matches_model_signing_signer_code(tmp_path: Path) -> None:
    """The same id model-signing's own ec_key.Signer computes for a fresh key."""
    from model_signing._signing import sign_ec_key

    private_pem, public_pem = keys.generate_keypair("ecdsa-p256")
    (tmp_path / "k.pem").write_bytes(private_pem)
    material = sign_ec_key.Signer(tmp_path / "k.pem")._get_verification_material()
    assert material.public_key.hint == keys.key_id(keys.load_public_key_pem(public_pem, "k.pub"))


def test_garbage_private_key_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a key at all")
    with pytest.raises(InputError, match=r"bad\.pem.*not a PEM private key"):
        keys.load_private_key(bad)
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InputError, match=r"bad\.pem.*not a valid PEM private key"):
        keys.load_private_key(bad)


def test_missing_private_key_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.pem.*file not found"):
        keys.load_private_key(tmp_path / "nope.pem")


def test_encrypted_private_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    private = keys.load_private_key_pem(keys.generate_keypair("ecdsa-p256")[0], "k")
    encrypted = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"secret")
    )
    path = tmp_path / "enc.pem"
    path.write_bytes(encrypted)
    with pytest.raises(InputError, match=r"enc\.pem.*encrypted and no password"):
        keys.load_private_key(path)
    with pytest.raises(InputError, match=r"enc\.pem.*wrong password"):
        keys.load_private_key(path, password=b"guess")
    assert keys.key_id(keys.load_private_key(path, password=b"secret").public_key()) == keys.key_id(private.public_key())


def test_unsupported_key_types(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(InputError, match=r"rsa\.pem.*unsupported key type"):
        keys.load_private_key(path)
    pub = tmp_path / "rsa.pub"
    pub.write_bytes(rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(InputError, match=r"rsa\.pub.*unsupported key type"):
        keys.load_public_key(pub)
    k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(InputError, match="unsupported elliptic curve secp256k1"):
        keys.load_public_key_pem(keys.public_key_pem(k1.public_key()), "k1.pub")


def test_public_loader_refuses_private_key_and_garbage() -> None:
    private_pem, _ = keys.generate_keypair("ed25519")
    with pytest.raises(InputError, match="x.pem: this is a private key"):
        keys.load_public_key_pem(private_pem, "x.pem")
    with pytest.raises(InputError, match="x.pem: not a PEM public key"):
        keys.load_public_key_pem(b"hello", "x.pem")
    with pytest.raises(InputError, match="not a valid PEM public key"):
        keys.load_public_key_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "x.pem")


def test_p384_verifies_with_sha384() -> None:
    """Like model-signing, the ECDSA hash follows the curve size."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP384R1())
    sig = private.sign(b"m", ec.ECDSA(hashes.SHA384()))
    assert keys.verify(private.public_key(), sig, b"m")
    assert keys.verify(private.public_key(), keys.sign(private, b"m"), b"m")
