from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgate.signing import keys
from mlgate.errors import InputError
from mlgate.evidence import model_digest
from mlgate.evidence.model_digest import compute_model_digest, manifest_order, root_digest

ASSETS = Path(__file__).parent / "assets" / "signing"
REAL = ASSETS / "model-signing-key-mode"
REAL_ROOT = "3736e691028c6e93fccf6329275dbca792306cca7ebaf5b993fbab9bcc8c60c2"
MODEL_SIGNING_CLI = Path(sys.executable).parent / "model_signing"


def model_signing_manifest(path: Path) -> list[tuple[str, str]]:
    from model_signing import hashing

    return [(r.identifier, r.digest.digest_hex) for r in hashing.hash(path).resource_descriptors()]


def make_model(root: Path) -> Path:
    """Names chosen so that string order and model-signing's path order differ."""
    files = {
        "weights.bin": os.urandom(3 * 1024 * 1024 + 17),  # more than one read
        "config.json": b'{"layers": 2}',
        "sub/x.bin": b"x" * 1000,
        "sub.txt": b"next to sub/",
        "sub/deeper/y": b"",
        "a-b": b"dash",
        ".hidden/z": b"hidden files count",
        ".gitignore": b"ignored by model-signing",
        ".git/HEAD": b"ignored too",
        "nested/.git/kept": b"only top-level git paths are ignored",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_real_model_signing_root() -> None:
    digest = compute_model_digest(REAL / "model")
    assert digest.root == REAL_ROOT
    assert [n for n, _ in digest.files] == ["config.json", "weights.bin"]
    assert digest.file_count == 2 and digest.total_bytes == 2008
    # and the per-file digests are the ones signed in the predicate
    payload = json.loads(base64.b64decode(json.loads((REAL / "model.sig").read_bytes())["dsseEnvelope"]["payload"]))
    assert [(r["name"], r["digest"]) for r in payload["predicate"]["resources"]] == list(digest.files)


def test_equals_model_signing_hashing_api(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    digest = compute_model_digest(model)
    assert list(digest.files) == model_signing_manifest(model)
    names = [n for n, _ in digest.files]
    assert names.index("sub/x.bin") < names.index("sub.txt")  # path order, not string order
    assert ".gitignore" not in names and not any(n.startswith(".git/") for n in names)
    assert "nested/.git/kept" in names and ".hidden/z" in names
    assert digest.root == root_digest(d for _, d in digest.files)
    assert digest.file_count == len(names) == 8
    assert digest.total_bytes == sum((model / n).stat().st_size for n in names)


def test_equals_fresh_model_signing_cli_output(tmp_path: Path) -> None:
    """A real `model_signing sign key` run over a model with a subdirectory."""
    model = make_model(tmp_path / "model")
    private_pem, _ = keys.generate_keypair("ecdsa-p256")
    (tmp_path / "signer.key").write_bytes(private_pem)
    sig = tmp_path / "model.sig"
    subprocess.run(
        [str(MODEL_SIGNING_CLI), "sign", "key", str(model), "--private_key", str(tmp_path / "signer.key"), "--signature", str(sig)],
        check=True, capture_output=True, timeout=120,
    )
    payload = json.loads(base64.b64decode(json.loads(sig.read_bytes())["dsseEnvelope"]["payload"]))
    digest = compute_model_digest(model)
    assert payload["subject"][0]["digest"]["sha256"] == digest.root
    assert [(r["name"], r["digest"]) for r in payload["predicate"]["resources"]] == list(digest.files)


def test_single_file_model(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx bytes")
    digest = compute_model_digest(path)
    assert digest.files[0][0] == "."
    assert list(digest.files) == model_signing_manifest(path)
    assert digest.file_count == 1 and digest.total_bytes == 10


def test_worker_counts_agree(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    assert compute_model_digest(model, max_workers=1) == compute_model_digest(model, max_workers=8) == compute_model_digest(model)


def test_read_size_does_not_matter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(tmp_path / "model")
    expected = compute_model_digest(model)
    monkeypatch.setattr(model_digest, "READ_SIZE", 4096 + 3)
    assert compute_model_digest(model) == expected


def test_extra_ignore_paths(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    digest = compute_model_digest(model, ignore_paths=["sub"])
    assert not any(n.startswith("sub/") for n, _ in digest.files) and ("sub.txt", digest.as_manifest()["sub.txt"]) in digest.files
    every = compute_model_digest(model, ignore_git_paths=False)
    assert ".gitignore" in every.as_manifest() and ".git/HEAD" in every.as_manifest()


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    digest = compute_model_digest(tmp_path / "m")
    assert digest.files == () and digest.root == root_digest([]) and list(digest.files) == model_signing_manifest(tmp_path / "m")


def test_frozen(tmp_path: Path) -> None:
    digest = compute_model_digest(REAL / "model")
    with pytest.raises(dataclasses.FrozenInstanceError):
        digest.root = "0"  # type: ignore[misc]


@pytest.mark.parametrize("where", ["file", "dir", "root", "in-git"])
def test_symlinks_refused_like_model_signing(tmp_path: Path, where: str) -> None:
    model = make_model(tmp_path / "model")
    (tmp_path / "outside").write_bytes(b"o")
    if where == "file":
        link = model / "sub" / "link.bin"
        link.symlink_to(tmp_path / "outside")
    elif where == "dir":
        link = model / "linked"
        link.symlink_to(model / "sub", target_is_directory=True)
    elif where == "root":
        link = tmp_path / "root-link"
        link.symlink_to(model, target_is_directory=True)
        model = link
    else:
        link = model / ".git" / "link"
        link.symlink_to(tmp_path / "outside")
    with pytest.raises(ValueError, match="symlink"):
        model_signing_manifest(model)
    with pytest.raises(InputError, match=rf"{link.name}: spec.model.path: symbolic links are not allowed"):
        compute_model_digest(model)


def test_special_file_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    os.mkfifo(model / "pipe")
    with pytest.raises(InputError, match="pipe: spec.model.path: not a regular file or directory"):
        compute_model_digest(model)


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothere: spec.model.path: model path not found"):
        compute_model_digest(tmp_path / "nothere")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file(tmp_path: Path) -> None:  # pragma: no cover - CI runs as a user
    model = make_model(tmp_path / "model")
    (model / "config.json").chmod(0)
    with pytest.raises(InputError, match="config.json: spec.model.path: cannot read"):
        compute_model_digest(model)


NAME = st.text(alphabet="ab-._/Z0", min_size=1, max_size=8).filter(
    lambda s: all(p not in ("", ".", "..") for p in s.split("/")) and not s.startswith(".git")
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAME, min_size=1, max_size=8, unique=True))
def test_manifest_order_matches_model_signing(tmp_path_factory: pytest.TempPathFactory, names: list[str]) -> None:
    root = tmp_path_factory.mktemp("m")
    written = []
    for name in names:
        path = root / name
        if any(p == path or p in path.parents or path in p.parents for p in written):
            continue  # a name cannot be both a file and a directory
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        written.append(path)
    digest = compute_model_digest(root)
    assert list(digest.files) == model_signing_manifest(root)
    assert [n for n, _ in digest.files] == manifest_order(n for n, _ in digest.files)
