"""``file://DIR``: releases in a directory tree (a mounted volume), indexed by walking it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError
from mlgate.store.base import (
    _SKIP_DIRS, MANIFEST_NAME, MAX_SCAN_DEPTH, FactsCache, IndexEntry, ModelRef, StoreError, StoreIndex,
    _check_matches, normalise_uri,
)

if TYPE_CHECKING:
    from mlgate.evidence import Facts
    from mlgate.manifest import Release


def _fingerprint(root: Path) -> tuple:
    """(relative path, size, mtime_ns, inode) of every file under ``root``, sorted."""
    out: list[tuple[str, int, int, int]] = []
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise StoreError(f"cannot list the release: {exc.strerror or exc}", file=str(directory)) from None
        for entry in entries:
            rel = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in _SKIP_DIRS:
                        stack.append((Path(entry.path), rel + "/"))
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            out.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(out))


class FileStore:
    """``file://DIR``: a mounted directory of releases (any depth below DIR)."""

    def __init__(self, root: Path | str, *, cache: FactsCache | None = None, rescan_after_s: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.root = Path(root)
        self.url = "file://" + str(self.root.resolve())
        self.cache = cache if cache is not None else FactsCache()
        self.rescan_after_s = rescan_after_s
        self._now = monotonic
        self._index: StoreIndex | None = None
        self._scanned_at = float("-inf")
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ index
    def scan(self) -> StoreIndex:
        """Index every release under the root. A manifest that cannot be loaded is left out and named in ``errors``."""
        from mlgate.evidence.model_digest import compute_model_digest
        from mlgate.manifest import load_release

        if not self.root.is_dir():
            raise StoreError("evidence store directory not found", file=self.url)
        index = StoreIndex()
        for manifest in self._manifests():
            try:
                release = load_release(manifest.parent)
                digest = compute_model_digest(release.model_path).root
            except MlgateError as exc:
                index.errors.append(exc.diagnostics())
                continue
            index.add(IndexEntry(f"{release.name}@{release.version}", manifest.parent, digest, release.storage_uri))
        with self._lock:
            self._index, self._scanned_at = index, self._now()
        return index

    def _manifests(self) -> list[Path]:
        found: list[Path] = []
        stack = [(self.root, 0)]
        while stack:
            directory, depth = stack.pop()
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name == MANIFEST_NAME and entry.is_file():
                    found.append(Path(entry.path))
                elif entry.is_dir(follow_symlinks=False) and depth < MAX_SCAN_DEPTH and entry.name not in _SKIP_DIRS \
                        and not entry.name.startswith("."):
                    stack.append((Path(entry.path), depth + 1))
        return sorted(found)

    @property
    def index(self) -> StoreIndex:
        if self._index is None:
            return self.scan()
        return self._index

    def ready(self) -> str | None:
        """None when the store can serve; otherwise one line saying why not."""
        if not os.access(self.root, os.R_OK | os.X_OK):
            return f"{self.url}: evidence store not readable"
        if self._index is None:
            return f"{self.url}: not indexed yet"
        if not len(self._index):
            return f"{self.url}: no release found (no {MANIFEST_NAME} under it)"
        return None

    def lookup(self, ref: ModelRef) -> IndexEntry:
        entries = self._find(self.index, ref)
        if not entries and self._now() - self._scanned_at >= self.rescan_after_s:
            entries = self._find(self.scan(), ref)  # a release published since the last scan
        if not entries:
            what = {"release": "no release", "digest": "no release with model digest", "storage_uri": "no release with storageUri"}[ref.kind]
            raise StoreError(f"{what} {ref.value!r} in the evidence store {self.url} (referenced by {ref.source})")
        if len(entries) > 1:
            roots = ", ".join(sorted(str(e.root) for e in entries))
            raise StoreError(f"{ref.value!r} ({ref.source}) is ambiguous in the evidence store: {len(entries)} releases match ({roots})")
        return entries[0]

    @staticmethod
    def _find(index: StoreIndex, ref: ModelRef) -> list[IndexEntry]:
        if ref.kind == "release":
            return index.by_release.get(ref.value, [])
        if ref.kind == "digest":
            return index.by_digest.get(ref.value.split(":", 1)[-1], [])
        return index.by_uri.get(normalise_uri(ref.value), [])

    # ------------------------------------------------------------------ load
    def load(self, ref: ModelRef, trust: Any, *, trust_key: str = "", deadline: float | None = None) -> tuple[Release, Facts]:
        """The release ``ref`` names and its verified facts (cached by content fingerprint)."""
        from mlgate import evidence
        from mlgate.manifest import load_release

        entry = self.lookup(ref)
        key = (str(entry.root), trust_key, _fingerprint(entry.root))
        cached = self.cache.get(key)
        if cached is None:
            release = load_release(entry.root)
            cached = (release, evidence.collect(release, trust))
            self.cache.put(key, cached)
        release, facts = cached
        _check_matches(ref, release, facts)
        return release, facts
