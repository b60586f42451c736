"""Evidence stores: resolve a model reference to a release of the same shape as a release directory.

A reference names a release (``NAME@VERSION``), a model digest (``sha256:HEX``) or the storage
URI a serving runtime loads the model from (KServe ``storageUri``, Seldon ``modelUri``). The
store indexes every ``mlgate.yaml`` it holds by all three, and hands back the release with its
verified, parsed evidence (:class:`~mlgate.evidence.Facts`).

Facts are cached (bounded, TTL) under a fingerprint of the release's files (path, size, mtime,
inode of every file under the release root) and the trust policy: a changed file is a new
key, so evidence is read, verified and parsed again. Decisions are never cached: the policy
judges the cached facts afresh each time (approvals expire, the clock moves).

Fail closed: a reference that resolves to nothing, to two releases, or to a release whose
model digest or storage URI no longer matches the reference is a :class:`StoreError`, which
the gate turns into an error decision (a deny).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError

if TYPE_CHECKING:  # pragma: no cover
    from mlgate.evidence import Facts
    from mlgate.manifest import Release

MANIFEST_NAME = "mlgate.yaml"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_RELEASE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_./]{0,252}@[A-Za-z0-9][-A-Za-z0-9_.+]{0,127}$")
#: Directories a scan never enters (VCS metadata, caches, virtual environments).
_SKIP_DIRS = frozenset({".git", "__pycache__", ".venv", "node_modules", ".mlgate"})
MAX_SCAN_DEPTH = 8


class StoreError(MlgateError):
    """The evidence store cannot resolve a reference, or is unavailable: always a deny."""


@dataclass(frozen=True)
class ModelRef:
    kind: str  # release | digest | storage_uri
    value: str
    source: str  # where in the admitted object it was found

    def describe(self) -> str:
        return f"{self.value} ({self.source})"

    @staticmethod
    def parse_release(value: str, source: str) -> ModelRef:
        if not isinstance(value, str) or not _RELEASE.match(value.strip()):
            raise StoreError(f"expected NAME@VERSION, got {_short(value)!r}", field=source)
        return ModelRef("release", value.strip(), source)

    @staticmethod
    def parse_digest(value: str, source: str) -> ModelRef:
        text = value.strip().lower() if isinstance(value, str) else ""
        if not _DIGEST.match(text):
            raise StoreError(f"expected sha256:<64 hex digits>, got {_short(value)!r}", field=source)
        return ModelRef("digest", text, source)


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalise_uri(uri: str) -> str:
    """Storage URIs compare without a trailing slash (``s3://b/m/1.0/`` == ``s3://b/m/1.0``)."""
    return uri.strip().rstrip("/")


@dataclass(frozen=True)
class IndexEntry:
    key: str  # name@version
    root: Path
    model_digest: str
    storage_uri: str | None


@dataclass
class StoreIndex:
    by_release: dict[str, list[IndexEntry]] = field(default_factory=dict)
    by_digest: dict[str, list[IndexEntry]] = field(default_factory=dict)
    by_uri: dict[str, list[IndexEntry]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # manifests that could not be indexed, one line each

    def add(self, entry: IndexEntry) -> None:
        self.by_release.setdefault(entry.key, []).append(entry)
        self.by_digest.setdefault(entry.model_digest, []).append(entry)
        if entry.storage_uri:
            self.by_uri.setdefault(normalise_uri(entry.storage_uri), []).append(entry)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_release.values())


class FactsCache:
    """Bounded LRU with a TTL, of (release, facts) by content fingerprint. Thread-safe."""

    def __init__(self, *, max_entries: int = 256, ttl_s: float = 300.0, monotonic: Callable[[], float] = time.monotonic,
                 on_result: Callable[[str], None] | None = None):
        self.max_entries, self.ttl_s, self._now = max_entries, ttl_s, monotonic
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.on_result = on_result
        self.hits = self.misses = 0

    def get(self, key: Any) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None and self._now() - item[0] <= self.ttl_s:
                self._items.move_to_end(key)
                self.hits += 1
                value = item[1]
            else:
                if item is not None:
                    del self._items[key]
                self.misses += 1
                value = None
        if self.on_result is not None:
            self.on_result("hit" if value is not None else "miss")
        return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = (self._now(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


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
    def load(self, ref: ModelRef, trust: Any, *, trust_key: str = "") -> tuple[Release, Facts]:
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


def _check_matches(ref: ModelRef, release: Release, facts: Facts) -> None:
    """The release loaded now must still be the one the reference names (files may change after indexing)."""
    if ref.kind == "release" and f"{release.name}@{release.version}" != ref.value:
        raise StoreError(f"{ref.source} names {ref.value!r} but the store now holds {release.name}@{release.version} there; refusing")
    if ref.kind == "digest" and facts.model["digest"] != ref.value.split(":", 1)[-1]:
        raise StoreError(f"{ref.source} names model digest {ref.value} but the release's model now hashes to sha256:{facts.model['digest']}; refusing")
    if ref.kind == "storage_uri" and normalise_uri(release.storage_uri or "") != normalise_uri(ref.value):
        raise StoreError(f"{ref.source} names storageUri {ref.value!r} but the release now declares {release.storage_uri!r}; refusing")


def open_store(url: str, *, cache: FactsCache | None = None) -> FileStore:
    """``file:///abs/dir``, ``file://relative/dir`` or a bare path."""
    if url.startswith("file://"):
        path = url[len("file://"):]
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise StoreError(f"unsupported evidence store scheme {scheme!r} (available: file://)", file=url)
    else:
        path = url
    if not path:
        raise StoreError("empty evidence store path", file=url)
    return FileStore(Path(path), cache=cache)
