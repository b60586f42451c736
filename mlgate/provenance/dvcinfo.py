"""DVC facts for the provenance block: ``dvc.lock`` and ``*.dvc`` files, read as YAML (DVC itself
is not needed to read them).

DVC's md5 is a content address for its cache, not a security digest: md5 collisions are cheap
to make. mlgate records it, says so, and computes the sha256 of every tracked file that is
present locally; only the sha256 is ever compared with a manifest or validation digest.

A file that cannot be parsed or does not have DVC's shape is recorded in ``errors`` (one line
naming the file and field) and the block is then not valid, so the policy denies; it never
raises. Paths in a ``.dvc`` file are relative to that file's directory, paths in ``dvc.lock``
to the lock file's directory (a stage ``wdir`` other than ``.`` is not followed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

from mlgate.errors import InputError
from mlgate.safeio import NotRegularFile, decode_text, open_regular, parse_yaml, read_bytes

MD5_WARNING = (
    "DVC md5 is a content address for DVC's cache, not a security digest (md5 collisions are "
    "practical); mlgate compares only the sha256 it computes from the local files"
)
#: How many .dvc files a walk reads at most, and which directories it never enters.
MAX_DVC_FILES = 1000
SKIP_DIRS = {".git", ".dvc", "node_modules", ".venv", "venv", "__pycache__", ".mlgate"}


def _hash_local(path: Path) -> tuple[str | None, str | None]:
    """(md5, sha256) of a local regular file; (None, None) when it is absent or not a file."""
    if not path.is_file():
        return None, None
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    try:
        fh = open_regular(path)  # never waits on a FIFO swapped in after the is_file() check
    except NotRegularFile:
        return None, None
    with fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def find_dvc_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".dvc") and name != ".dvc":
                found.append(Path(dirpath) / name)
                if len(found) >= MAX_DVC_FILES:
                    return found
    return found


def _load(path: Path, name: str, errors: list[str]) -> Any:
    try:
        return parse_yaml(decode_text(read_bytes(path), name), name)
    except InputError as exc:
        errors.append(exc.diagnostics())
        return None


def _out_entry(raw: Any, base: PurePosixPath, root: Path, name: str, where: str, errors: list[str]) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"]:
        errors.append(f"{name}: {where}: expected an object with a path, got {type(raw).__name__}")
        return None
    rel = (base / raw["path"]).as_posix()
    if PurePosixPath(raw["path"]).is_absolute() or ".." in PurePosixPath(rel).parts:
        errors.append(f"{name}: {where}.path: {raw['path']!r} leaves the DVC project")
        return None
    md5 = raw.get("md5")
    if md5 is not None and not (isinstance(md5, str) and len(md5.removesuffix(".dir")) == 32):
        errors.append(f"{name}: {where}.md5: expected 32 hex characters (optionally .dir), got {str(md5)[:40]!r}")
        md5 = None
    size = raw.get("size") if isinstance(raw.get("size"), int) and not isinstance(raw.get("size"), bool) else None
    hash_name = raw.get("hash") if isinstance(raw.get("hash"), str) else None
    is_dir = isinstance(md5, str) and md5.endswith(".dir")
    local_md5, sha256 = (None, None) if is_dir else _hash_local(root / rel)
    if md5 is None or local_md5 is None:
        matches = None
    elif hash_name == "md5":
        matches = local_md5 == md5
    else:
        # DVC 2 (no `hash: md5`) normalised line endings of text files before hashing; a plain md5
        # that agrees still proves the content, one that disagrees proves nothing.
        matches = True if local_md5 == md5 else None
    return {
        "path": rel, "md5": md5, "hash": hash_name or "md5-dvc2", "size": size, "is_dir": is_dir,
        "nfiles": raw.get("nfiles") if isinstance(raw.get("nfiles"), int) else None,
        "sha256": sha256, "md5_matches": matches, "source": name,
    }


def dvc_facts(root: Path, *, display_root: Path | None = None) -> dict[str, Any]:
    """Read ``root/dvc.lock`` and every ``*.dvc`` file under ``root``."""
    root = Path(root)
    if not root.is_dir():
        return {"present": False, "reason": f"{root}: no such directory"}
    shown = display_root or root
    errors: list[str] = []
    files: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []

    lock = root / "dvc.lock"
    lock_name = None
    if lock.is_file():
        lock_name = "dvc.lock"
        doc = _load(lock, (shown / "dvc.lock").as_posix(), errors)
        if doc is not None:
            stages, lock_files = _read_lock(doc, root, "dvc.lock", errors)
            files.extend(lock_files)

    dvc_files = find_dvc_files(root)
    for path in dvc_files:
        rel = path.relative_to(root).as_posix()
        doc = _load(path, rel, errors)
        if doc is None:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("outs"), list) or not doc["outs"]:
            errors.append(f"{rel}: outs: expected a non-empty list of outputs (a .dvc file written by `dvc add`)")
            continue
        base = PurePosixPath(rel).parent
        for i, raw in enumerate(doc["outs"]):
            entry = _out_entry(raw, base, root, rel, f"outs[{i}]", errors)
            if entry is not None:
                files.append(entry)

    if lock_name is None and not dvc_files:
        return {"present": False, "reason": f"{shown}: no dvc.lock and no .dvc files"}
    # One entry per path: a .dvc file and a lock stage may both name a file; the first wins,
    # and a disagreement between them is an error.
    unique: dict[str, dict[str, Any]] = {}
    for entry in files:
        seen = unique.get(entry["path"])
        if seen is None:
            unique[entry["path"]] = entry
        elif seen["md5"] != entry["md5"] and seen["md5"] and entry["md5"]:
            errors.append(f"{entry['source']}: {entry['path']}: md5 {entry['md5']} disagrees with {seen['md5']} in {seen['source']}")
    return {
        "present": True,
        "lock_file": lock_name,
        "stages": stages,
        "files": [unique[k] for k in sorted(unique)],
        "errors": errors,
        "warning": MD5_WARNING,
    }


def _read_lock(doc: Any, root: Path, name: str, errors: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("stages"), dict):
        errors.append(f"{name}: stages: expected a mapping of stage names (dvc.lock schema 2.0)")
        return [], []
    if str(doc.get("schema", "")) != "2.0":
        errors.append(f"{name}: schema: got {doc.get('schema')!r}, expected '2.0'")
    stages, files = [], []
    for stage_name, stage in sorted(doc["stages"].items(), key=lambda kv: str(kv[0])):
        where = f"stages.{stage_name}"
        if not isinstance(stage, dict):
            errors.append(f"{name}: {where}: expected a mapping, got {type(stage).__name__}")
            continue
        cmd = stage.get("cmd")
        if isinstance(cmd, list):
            cmd = " && ".join(str(c) for c in cmd)
        entry = {"name": str(stage_name), "cmd": cmd if isinstance(cmd, str) else None, "deps": [], "outs": []}
        for kind in ("deps", "outs"):
            raw_list = stage.get(kind, [])
            if not isinstance(raw_list, list):
                errors.append(f"{name}: {where}.{kind}: expected a list, got {type(raw_list).__name__}")
                continue
            for i, raw in enumerate(raw_list):
                out = _out_entry(raw, PurePosixPath("."), root, name, f"{where}.{kind}[{i}]", errors)
                if out is not None:
                    entry[kind].append(out["path"])
                    files.append(out)
        stages.append(entry)
    return stages, files
