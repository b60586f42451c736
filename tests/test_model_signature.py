from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlgate.signing import keys
from mlgate.signing.attestation import make_statement, sign_statement
from mlgate.evidence.model_digest import compute_model_digest
from mlgate.evidence.model_signature import verify_model_signature
from mlgate.signing.trust import TrustPolicy, parse_trust_policy

ASSETS = Path(__file__).parent / "assets" / "signing"
REAL = ASSETS / "model-signing-key-mode"
KEYS = ASSETS / "keys"
REAL_ROOT = "3736e691028c6e93fccf6329275dbca792306cca7ebaf5b993fbab9bcc8c60c2"
MODEL_SIGNING_CLI = Path(sys.executable).parent / "model_signing"


def trust_for(*pems: bytes, signer: str = "ml-platform-ci") -> TrustPolicy:
    entries = "".join("      - pem: |\n" + textwrap.indent(p.decode(), " " * 10) for p in pems)
    text = f"apiVersion: mlgate.dev/v1\nkind: TrustPolicy\napprovers: []\nmodelSigners:\n  - id: {signer}\n    name: CI\n    keys:\n{entries}"
    return parse_trust_policy(text.encode(), "trust.yaml", base_dir=ASSETS)


REAL_TRUST = trust_for((REAL / "signer.pub.pem").read_bytes())


def check(sig: bytes, model: Path, trust: TrustPolicy = REAL_TRUST, name: str = "model.sig") -> dict:
    return verify_model_signature(sig, name, model_path=model, digest=compute_model_digest(model), trust=trust)


@pytest.fixture
def real_copy(tmp_path: Path) -> Path:
    shutil.copytree(REAL / "model", tmp_path / "model")
    for p in (tmp_path / "model").iterdir():
        p.chmod(0o644)
    return tmp_path / "model"


def sign_with_cli(model: Path, key_pem: bytes, tmp: Path, *extra: str, sig: Path | None = None) -> bytes:
    (tmp / "cli.key").write_bytes(key_pem)
    sig = sig or tmp / "cli.sig"
    subprocess.run(
        [str(MODEL_SIGNING_CLI), "sign", "key", str(model), "--private_key", str(tmp / "cli.key"), "--signature", str(sig), *extra],
        check=True, capture_output=True, timeout=120,
    )
    return sig.read_bytes()


def test_real_signature_verifies() -> None:
    block = check((REAL / "model.sig").read_bytes(), REAL / "model")
    assert block == {
        "present": True, "valid": True, "authenticated": True, "errors": [],
        "path": "model.sig", "digest": block["digest"],
        "verified": True, "reason": None,
        "signer_id": "ml-platform-ci", "signer_name": "CI", "identity_source": "key",
        "identity": "e113fd6d5c7bc41ba3e711ff135b641d4b1c21abed43186a57e551b61da2576a",
        "key_id": "e113fd6d5c7bc41ba3e711ff135b641d4b1c21abed43186a57e551b61da2576a", "certificate": None,
        "key_status": "valid", "key_revoked_at": None, "key_revoked_at_ns": None, "key_revocation_reason": None,
        "signed_at": None, "signed_at_ns": None,
        "subject_digest": REAL_ROOT,
        "mismatches": {"missing": [], "extra": [], "changed": []},
    }
    assert len(block["digest"]) == 64


def test_fresh_cli_signature_verifies(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "w.bin").write_bytes(b"w" * 5000)
    (model / "config.json").write_text("{}")
    (model / "sub.txt").write_text("t")
    private_pem, public_pem = keys.generate_keypair("ecdsa-p256")
    sig = sign_with_cli(model, private_pem, tmp_path)
    block = check(sig, model, trust_for(public_pem))
    assert block["verified"] and block["reason"] is None
    assert block["subject_digest"] == compute_model_digest(model).root
    assert block["key_id"] == keys.key_id(keys.load_public_key_pem(public_pem, "p"))


def test_signature_inside_the_model_dir(tmp_path: Path) -> None:
    """model-signing records the signature file in ignore_paths; we honour it like its verifier."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    private_pem, public_pem = keys.generate_keypair("ecdsa-p256")
    sig = sign_with_cli(model, private_pem, tmp_path, sig=model / "model.sig")
    digest = compute_model_digest(model)
    block = verify_model_signature(sig, "model/model.sig", model_path=model, digest=digest, trust=trust_for(public_pem))
    assert block["verified"], block["reason"]
    # The signed subject excludes model.sig; the digest of the directory as it is includes it.
    assert block["subject_digest"] == compute_model_digest(model, ignore_paths=["model.sig"]).root != digest.root


def test_changed_file(real_copy: Path) -> None:
    (real_copy / "weights.bin").write_bytes(b"\x00" * 2000)
    block = check((REAL / "model.sig").read_bytes(), real_copy)
    assert block["authenticated"] and block["valid"] and not block["verified"]
    assert block["mismatches"] == {"missing": [], "extra": [], "changed": ["weights.bin"]}
    assert "1 changed (weights.bin)" in block["reason"] and block["reason"].startswith("model.sig: model ")


def test_added_and_removed_files(real_copy: Path) -> None:
    (real_copy / "config.json").unlink()
    (real_copy / "extra").mkdir()
    (real_copy / "extra" / "backdoor.py").write_text("import os")
    block = check((REAL / "model.sig").read_bytes(), real_copy)
    assert not block["verified"]
    assert block["mismatches"] == {"missing": ["config.json"], "extra": ["extra/backdoor.py"], "changed": []}
    assert "1 missing (config.json); 1 extra (extra/backdoor.py)" in block["reason"]


def test_model_signing_itself_agrees_on_the_mismatch(real_copy: Path) -> None:
    (real_copy / "weights.bin").write_bytes(b"\x01" * 2000)
    from model_signing import verifying

    with pytest.raises(ValueError, match=r"Hash mismatch for .*weights\.bin"):
        verifying.Config().use_elliptic_key_verifier(public_key=REAL / "signer.pub.pem").verify(real_copy, REAL / "model.sig")


def test_untrusted_key() -> None:
    block = check((REAL / "model.sig").read_bytes(), REAL / "model", trust_for((KEYS / "model-signer-ecdsa.pub.pem").read_bytes()))
    assert block["valid"] and not block["authenticated"] and not block["verified"]
    assert "unknown key hint e113fd" in block["reason"]
    assert block["signer_id"] is None and block["key_id"] is None and block["subject_digest"] is None


def test_no_model_signers_fails_closed() -> None:
    trust = parse_trust_policy(b"apiVersion: mlgate.dev/v1\nkind: TrustPolicy\napprovers: []\n", "t.yaml", base_dir=ASSETS)
    block = check((REAL / "model.sig").read_bytes(), REAL / "model", trust)
    assert not block["verified"] and "no trusted keys" in block["reason"]


def test_flipped_signature_byte() -> None:
    doc = json.loads((REAL / "model.sig").read_bytes())
    sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[len(sig) // 2] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    block = check(json.dumps(doc).encode(), REAL / "model")
    assert block["valid"] and not block["authenticated"] and not block["verified"]
    assert "signature does not verify with key e113fd" in block["reason"]


@pytest.mark.parametrize("index", range(0, 1567, 37))
def test_flipped_byte_anywhere(index: int) -> None:
    data = bytearray((REAL / "model.sig").read_bytes())
    data[index] ^= 0x04
    block = check(bytes(data), REAL / "model")
    assert not block["verified"] and block["reason"]


@pytest.mark.parametrize("data", [b"", b"{}", b"[1]", b"not json", b'{"mediaType": 1}'])
def test_garbage_is_not_valid(data: bytes) -> None:
    block = check(data, REAL / "model")
    assert block["present"] and not block["valid"] and not block["authenticated"] and not block["verified"]
    assert block["errors"] == [block["reason"]] and block["reason"].startswith("model.sig")


def _signed(predicate: dict, *, subject_digest: str | None = None, predicate_type: str = "https://model_signing/signature/v1.0") -> bytes:
    from mlgate.evidence.model_digest import root_digest

    root = subject_digest or root_digest(r["digest"] for r in predicate.get("resources", []))
    statement = make_statement([{"name": "model", "digest": {"sha256": root}}], predicate_type, predicate)
    return sign_statement(statement, keys.load_private_key(KEYS / "model-signer-ecdsa.key.pem"))


SIGNER_TRUST = trust_for((KEYS / "model-signer-ecdsa.pub.pem").read_bytes())
REAL_RESOURCES = [{"name": n, "digest": d, "algorithm": "sha256"} for n, d in compute_model_digest(REAL / "model").files]
FILES = {"method": "files", "hash_type": "sha256", "allow_symlinks": False}


def test_signed_by_mlgate_key_verifies() -> None:
    block = check(_signed({"serialization": FILES, "resources": REAL_RESOURCES}), REAL / "model", SIGNER_TRUST)
    assert block["verified"] and block["subject_digest"] == REAL_ROOT


@pytest.mark.parametrize(
    "predicate, kwargs, message",
    [
        ({"serialization": FILES, "resources": REAL_RESOURCES}, {"subject_digest": "ab" * 32}, "manifest is inconsistent"),
        ({"serialization": {**FILES, "method": "shards"}, "resources": REAL_RESOURCES}, {}, "serialization method 'shards'"),
        ({"serialization": FILES, "resources": [{**REAL_RESOURCES[0], "algorithm": "blake3"}]}, {}, "got algorithm 'blake3'"),
        ({"serialization": FILES, "resources": REAL_RESOURCES + REAL_RESOURCES[:1]}, {}, "listed twice"),
        ({"serialization": {**FILES, "ignore_paths": ["."]}, "resources": []}, {}, "must name something inside the model"),
        ({"serialization": {**FILES, "ignore_paths": ["../x"]}, "resources": []}, {}, "must name something inside the model"),
        ({"resources": REAL_RESOURCES}, {}, "missing serialization"),
        ({"serialization": FILES, "resources": REAL_RESOURCES}, {"predicate_type": "https://model_signing/Digests/v0.1"}, "model-signing 0.2"),
        ({"serialization": FILES, "resources": REAL_RESOURCES}, {"predicate_type": "https://example/other"}, "expected 'https://model_signing/signature/v1.0'"),
    ],
)
def test_invalid_signed_statements(predicate: dict, kwargs: dict, message: str) -> None:
    block = check(_signed(predicate, **kwargs), REAL / "model", SIGNER_TRUST)
    assert not block["valid"] and block["authenticated"] and not block["verified"]
    assert message in block["reason"] and block["errors"] == [block["reason"]]
