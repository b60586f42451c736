"""What every evidence store shares: model references, the index of what a store holds, the
bounded facts cache, and the check that what was loaded is still what the reference named."""

from __future__ import annotations

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


def _check_matches(ref: ModelRef, release: Release, facts: Facts) -> None:
    """The release loaded now must still be the one the reference names (files may change after indexing)."""
    if ref.kind == "release" and f"{release.name}@{release.version}" != ref.value:
        raise StoreError(f"{ref.source} names {ref.value!r} but the store now holds {release.name}@{release.version} there; refusing")
    if ref.kind == "digest" and facts.model["digest"] != ref.value.split(":", 1)[-1]:
        raise StoreError(f"{ref.source} names model digest {ref.value} but the release's model now hashes to sha256:{facts.model['digest']}; refusing")
    if ref.kind == "storage_uri" and normalise_uri(release.storage_uri or "") != normalise_uri(ref.value):
        raise StoreError(f"{ref.source} names storageUri {ref.value!r} but the release now declares {release.storage_uri!r}; refusing")
