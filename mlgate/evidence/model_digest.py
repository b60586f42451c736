"""The model digest: the root digest OpenSSF model-signing puts in its in-toto subject.

model-signing 1.x (``model_signing.hashing.hash``, file serialization, SHA-256) builds a manifest of
(relative POSIX path, sha256 of the file) for every regular file under the model directory
(``glob('**/*')``, hidden files included), skipping the git paths ``.git``, ``.gitattributes``,
``.github`` and ``.gitignore`` at the top of the model, refusing symbolic links and special files
anywhere (ignored paths included). The root digest (``model_signing/_signing/signing.py``,
``Payload``) is SHA-256 over the concatenated raw per-file digests in manifest order, which is
``sorted`` by ``PurePosixPath`` (path components compared one by one, so ``sub/x`` sorts before
``sub.txt``). A single-file model has one entry named ``.``.

We walk and hash ourselves, with the same file list, names and ordering, because model-signing's
serializer is slower (one ``bytes`` allocation per 1 MiB read, default worker count above the core
count) and costs 0.3 s to import. Files are hashed in parallel threads (hashlib releases the GIL),
largest first, each read with ``readinto`` into one reused buffer. The tests check equality with
``model_signing.hashing.hash`` and with real ``model_signing sign key`` output.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from mlgate.progress import Progress
from mlgate.errors import InputError
from mlgate.safeio import NotRegularFile, display, open_regular

#: Paths model-signing ignores by default (``--ignore-git-paths``), relative to the model root.
GIT_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")
#: Read size per ``readinto``; 1-4 MiB all measure within noise, smaller costs syscalls.
READ_SIZE = 2 * 1024 * 1024


@dataclass(frozen=True)
class ModelDigest:
    root: str  # hex sha256: the model-signing in-toto subject digest
    files: tuple[tuple[str, str], ...]  # (relative POSIX name, sha256 hex), in manifest order
    file_count: int
    total_bytes: int

    def as_manifest(self) -> dict[str, str]:
        return dict(self.files)


def root_digest(file_digests: Iterable[str]) -> str:
    """SHA-256 over the concatenated raw digests, in the given (manifest) order."""
    hasher = hashlib.sha256()
    for hex_digest in file_digests:
        hasher.update(bytes.fromhex(hex_digest))
    return hasher.hexdigest()


def manifest_order(names: Iterable[str]) -> list[str]:
    """model-signing's manifest order: sorted by ``PurePosixPath`` (component-wise)."""
    return sorted(names, key=PurePosixPath)


def _refuse(path: Path, what: str) -> InputError:
    return InputError(what, file=display(path), field="spec.model.path")


def _check_entry(path: Path, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise _refuse(path, "symbolic links are not allowed in a model (model-signing refuses them without --allow_symlinks)")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _refuse(path, "not a regular file or directory (a device, socket or pipe cannot be part of a model)")


def _list_files(model: Path, ignore: tuple[PurePosixPath, ...]) -> list[tuple[str, Path, int]]:
    """(name, path, size) of every file model-signing would hash, in no particular order."""
    try:
        st = os.lstat(model)
    except FileNotFoundError:
        raise _refuse(model, "model path not found") from None
    except OSError as exc:
        raise _refuse(model, f"cannot read: {exc.strerror or exc}") from None
    _check_entry(model, st.st_mode)
    if stat.S_ISREG(st.st_mode):
        return [(".", model, st.st_size)]

    found: list[tuple[str, Path, int]] = []
    stack: list[tuple[Path, PurePosixPath]] = [(model, PurePosixPath())]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            raise _refuse(directory, f"cannot list directory: {exc.strerror or exc}") from None
        for entry in entries:
            path = Path(entry.path)
            rel = rel_dir / entry.name
            try:
                entry_stat = entry.stat(follow_symlinks=False)
            except OSError as exc:
                raise _refuse(path, f"cannot read: {exc.strerror or exc}") from None
            # model-signing checks every globbed path, ignored ones included, before ignoring.
            _check_entry(path, entry_stat.st_mode)
            if stat.S_ISDIR(entry_stat.st_mode):
                stack.append((path, rel))
            elif not any(rel.is_relative_to(p) for p in ignore):
                found.append((rel.as_posix(), path, entry_stat.st_size))
    return found


def _hash_file(path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    total = 0
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    try:
        # The walk refused what lstat said was special; the opened file is checked again, so a
        # file swapped for a FIFO or a device after the listing is refused, never waited on.
        with open_regular(path, follow_symlinks=False) as fh:
            while True:
                n = fh.readinto(buf)
                if not n:
                    break
                hasher.update(view[:n])
                total += n
    except NotRegularFile as exc:
        raise _refuse(path, exc.strerror) from None
    except OSError as exc:
        raise _refuse(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        view.release()
    return hasher.hexdigest(), total


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def compute_model_digest(
    path: Path, *, max_workers: int | None = None, ignore_paths: Iterable[str] = (), ignore_git_paths: bool = True
) -> ModelDigest:
    """Hash a model file or directory exactly as ``model_signing sign`` does (files, sha256).

    ``ignore_paths`` are extra paths relative to the model directory (model-signing's
    ``--ignore-paths``). Raises :class:`InputError` for a missing model, a symlink, a special
    file or an unreadable file.
    """
    model = Path(path)
    ignore = tuple(PurePosixPath(p) for p in ((*GIT_PATHS,) if ignore_git_paths else ()) + tuple(ignore_paths))
    listed = _list_files(model, ignore)
    # Largest first over as many threads as cores: the best makespan for CPU-bound hashing.
    listed.sort(key=lambda item: item[2], reverse=True)
    workers = max_workers or _default_workers()
    progress = Progress(f"hashing the model {model.name or model}", sum(size for _, _, size in listed))
    if workers == 1 or len(listed) <= 1:
        results = []
        for _, p, _ in listed:
            results.append(_hash_file(p))
            progress.advance(results[-1][1])
    else:
        from concurrent.futures import ThreadPoolExecutor  # ~10 ms to import: only when hashing

        with ThreadPoolExecutor(max_workers=min(workers, len(listed)), thread_name_prefix="mlgate-hash") as pool:
            results = []
            for result in pool.map(_hash_file, [p for _, p, _ in listed]):
                results.append(result)
                progress.advance(result[1])
    digests = {name: digest for (name, _, _), (digest, _) in zip(listed, results)}
    ordered = manifest_order(digests)
    files = tuple((name, digests[name]) for name in ordered)
    return ModelDigest(
        root=root_digest(d for _, d in files),
        files=files,
        file_count=len(files),
        total_bytes=sum(n for _, n in results),
    )
