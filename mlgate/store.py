"""Evidence stores: resolve a model reference to a release of the same shape as a release directory.

A reference names a release (``NAME@VERSION``), a model digest (``sha256:HEX``) or the storage
URI a serving runtime loads the model from (KServe ``storageUri``, Seldon ``modelUri``). The
store indexes every ``mlgate.yaml`` it holds by all three, and hands back the release with its
verified, parsed evidence (:class:`~mlgate.evidence.Facts`).

Facts are cached (bounded, TTL) under a fingerprint of the release's files (path, size, mtime,
inode of every file under the release root) and the trust policy: a changed file is a new
key, so evidence is read, verified and parsed again. Decisions are never cached: the policy
judges the cached facts afresh each time (approvals expire, the clock moves).

Two backends share that contract: :class:`FileStore` (``file://DIR``, a mounted volume) and
:class:`HttpsStore` (``https://HOST/PREFIX``, the same layout served by a static HTTPS or
artifact server, found through ``PREFIX/index.json`` written by ``mlgate webhook index DIR``;
releases are downloaded into a bounded local cache keyed by digest and every byte is re-hashed).

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


def _check_matches(ref: ModelRef, release: Release, facts: Facts) -> None:
    """The release loaded now must still be the one the reference names (files may change after indexing)."""
    if ref.kind == "release" and f"{release.name}@{release.version}" != ref.value:
        raise StoreError(f"{ref.source} names {ref.value!r} but the store now holds {release.name}@{release.version} there; refusing")
    if ref.kind == "digest" and facts.model["digest"] != ref.value.split(":", 1)[-1]:
        raise StoreError(f"{ref.source} names model digest {ref.value} but the release's model now hashes to sha256:{facts.model['digest']}; refusing")
    if ref.kind == "storage_uri" and normalise_uri(release.storage_uri or "") != normalise_uri(ref.value):
        raise StoreError(f"{ref.source} names storageUri {ref.value!r} but the release now declares {release.storage_uri!r}; refusing")


def open_store(url: str, *, cache: FactsCache | None = None, ca_file: str | Path | None = None,
               cache_dir: str | Path | None = None, **options: Any) -> FileStore | HttpsStore:
    """``file:///abs/dir``, ``file://relative/dir``, a bare path, or ``https://HOST/PREFIX`` (``index.json`` at PREFIX)."""
    if url.startswith("https://"):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if not parts.hostname or parts.query or parts.fragment or parts.username or parts.password:
            raise StoreError("expected https://HOST[:PORT]/PREFIX (no credentials, query or fragment)", file=url)
        return HttpsStore(url, cache=cache, ca_file=ca_file, cache_dir=cache_dir, **options)
    if url.startswith("file://"):
        path = url[len("file://"):]
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise StoreError(f"unsupported evidence store scheme {scheme!r} (available: file://, https://)", file=url)
    else:
        path = url
    if not path:
        raise StoreError("empty evidence store path", file=url)
    return FileStore(Path(path), cache=cache)


# ---------------------------------------------------------------------------- https://
INDEX_NAME = "index.json"
INDEX_VERSION = "mlgate.dev/store-index/v1"
MAX_INDEX_BYTES = 16 * 1024 * 1024
_REL_PATH = re.compile(r"^[^/\x00-\x1f\x7f\\][^\x00-\x1f\x7f\\]{0,1023}$")


def _release_files(root: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "size"}}`` of every file under a release (the layout a store serves)."""
    import hashlib

    out: dict[str, dict[str, Any]] = {}
    for rel, _size, _mtime, _ino in _fingerprint(root):
        path = root / rel
        if path.is_symlink() or not path.is_file():
            continue
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
        out[rel] = {"sha256": digest.hexdigest(), "size": size}
    return out


def build_index(root: Path | str) -> dict[str, Any]:
    """The ``index.json`` an ``https://`` store serves at its root (``mlgate webhook index DIR``).

    One entry per release under ``root``: its key, its directory relative to ``root``, its model
    digest and storage URI (for lookup only: the webhook re-hashes everything it downloads), and
    every file with its sha256 and size. Manifests that cannot be indexed are listed in ``errors``."""
    store = FileStore(root)
    index = store.scan()
    base = store.root.resolve()
    releases = []
    for entries in index.by_release.values():
        for entry in entries:
            releases.append({"release": entry.key, "path": entry.root.resolve().relative_to(base).as_posix(),
                             "model_digest": entry.model_digest, "storage_uri": entry.storage_uri,
                             "files": _release_files(entry.root)})
    releases.sort(key=lambda r: (r["release"], r["path"]))
    return {"apiVersion": INDEX_VERSION, "releases": releases, "errors": list(index.errors)}


@dataclass(frozen=True)
class RemoteEntry:
    """One release of a remote index: where it lies on the server and what its files must hash to."""

    key: str
    path: str
    model_digest: str
    storage_uri: str | None
    files: tuple[tuple[str, str, int], ...]  # (relative path, sha256, size), sorted

    @property
    def digest(self) -> str:
        """Content address of the release: sha256 over its file list (paths and digests)."""
        import hashlib

        return hashlib.sha256("\n".join(f"{p}\0{d}\0{s}" for p, d, s in self.files).encode()).hexdigest()


def _safe_rel(value: Any, where: str, url: str) -> str:
    if not isinstance(value, str) or not _REL_PATH.match(value) or any(part in ("", ".", "..") for part in value.split("/")):
        raise StoreError(f"{where}: unsafe or invalid relative path {_short(value)!r} in the store index", file=url)
    return value


def parse_index(doc: Any, url: str) -> tuple[StoreIndex, list[RemoteEntry]]:
    """Validate a remote ``index.json`` (fail closed: one malformed entry rejects the index)."""
    if not isinstance(doc, dict) or doc.get("apiVersion") != INDEX_VERSION or not isinstance(doc.get("releases"), list):
        raise StoreError(f"not a store index: expected apiVersion {INDEX_VERSION} and a releases list", file=url)
    index, entries = StoreIndex(), []
    for i, item in enumerate(doc["releases"]):
        where = f"releases[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("files"), dict) or not item["files"]:
            raise StoreError(f"{where}: expected release, path, model_digest and a non-empty files mapping", file=url)
        key = item.get("release")
        if not isinstance(key, str) or not _RELEASE.match(key):
            raise StoreError(f"{where}.release: expected NAME@VERSION, got {_short(key)!r}", file=url)
        path = item.get("path")
        path = "" if path in ("", ".") else _safe_rel(path, f"{where}.path", url)
        digest = item.get("model_digest")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise StoreError(f"{where}.model_digest: expected 64 hex digits", file=url)
        uri = item.get("storage_uri")
        if uri is not None and not isinstance(uri, str):
            raise StoreError(f"{where}.storage_uri: expected a string or null", file=url)
        files = []
        for rel, meta in item["files"].items():
            _safe_rel(rel, f"{where}.files", url)
            if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]) \
                    or not isinstance(meta.get("size"), int) or isinstance(meta.get("size"), bool) or meta["size"] < 0:
                raise StoreError(f"{where}.files[{rel!r}]: expected sha256 (64 hex digits) and size", file=url)
            files.append((rel, meta["sha256"], meta["size"]))
        if MANIFEST_NAME not in {f[0] for f in files}:
            raise StoreError(f"{where}: the release has no {MANIFEST_NAME}", file=url)
        remote = RemoteEntry(key, path, digest, uri, tuple(sorted(files)))
        entries.append(remote)
        index.add(IndexEntry(key, Path(path or "."), digest, uri))
    return index, entries


class HttpsStore:
    """``https://HOST/PREFIX``: the file:// layout served by a static HTTP(S) or artifact server.

    The server publishes ``PREFIX/index.json`` (``mlgate webhook index DIR``). A release is
    downloaded file by file into a bounded local cache directory keyed by the digest of its file
    list; every file is re-hashed against the index while it streams (a mismatch, a short or long
    body, an unsafe path: refused), and the release is then loaded and verified like a local
    one, so the model digest the policy sees is computed here, never taken from the server.

    Every request carries the admission request's deadline (and at most ``timeout_s``); TLS is
    verified against the system trust store or ``ca_file``. A store that is down, slow or
    serving bad bytes is a :class:`StoreError` naming the store: a deny. The index is fetched
    again when it is older than ``index_ttl_s`` (on the request path, within its deadline), so
    a store that goes down is noticed within that time even when every release is cached.
    """

    remote = True

    def __init__(self, url: str, *, cache: FactsCache | None = None, ca_file: str | Path | None = None,
                 cache_dir: str | Path | None = None, cache_max_bytes: int = 2 * 1024**3, max_file_bytes: int = 1024**3,
                 timeout_s: float = 5.0, index_ttl_s: float = 30.0, monotonic: Callable[[], float] = time.monotonic):
        import tempfile

        self.url = url.rstrip("/")
        self.cache = cache if cache is not None else FactsCache()
        self.ca_file = str(ca_file) if ca_file else None
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "mlgate-store-cache"
        self.cache_max_bytes, self.max_file_bytes = cache_max_bytes, max_file_bytes
        self.timeout_s, self.index_ttl_s = timeout_s, index_ttl_s
        self._now = monotonic
        self._index: StoreIndex | None = None
        self._entries: dict[str, RemoteEntry] = {}
        self._fetched_at = float("-inf")
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._client: Any = None

    # ------------------------------------------------------------------ http
    def _http(self):
        with self._lock:
            if self._client is not None:
                return self._client
            import ssl

            import httpx

            try:
                ctx = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise StoreError(f"cannot load the evidence store's CA bundle: {exc}", file=self.ca_file or "") from None
            self._client = httpx.Client(verify=ctx, follow_redirects=False, trust_env=False,
                                        headers={"User-Agent": "mlgate-webhook", "Accept-Encoding": "identity"})
            return self._client

    def _budget(self, deadline: float | None, what: str) -> float:
        left = self.timeout_s if deadline is None else min(self.timeout_s, deadline - self._now())
        if left <= 0:
            raise StoreError(f"evidence store {self.url} did not answer within the request's deadline ({what}); refusing")
        return left

    def _get(self, rel: str, sink: Callable[[bytes], None], limit: int, deadline: float | None) -> None:
        """Stream ``PREFIX/rel`` into ``sink``; at most ``limit`` bytes, within the deadline."""
        import httpx

        target = f"{self.url}/{rel}"
        budget = self._budget(deadline, rel)
        stop = self._now() + budget
        try:
            with self._http().stream("GET", target, timeout=httpx.Timeout(budget)) as resp:
                if resp.status_code != 200:
                    raise StoreError(f"evidence store {self.url} answered HTTP {resp.status_code} for {rel}; refusing")
                size = 0
                for chunk in resp.iter_raw(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise StoreError(f"evidence store {self.url}: {rel} is larger than expected ({limit} bytes); refusing")
                    if self._now() > stop:
                        raise StoreError(f"evidence store {self.url} did not answer within the request's deadline ({rel}); refusing")
                    sink(chunk)
        except httpx.TimeoutException:
            raise StoreError(f"evidence store {self.url} did not answer within the request's deadline ({rel}); refusing") from None
        except httpx.HTTPError as exc:
            raise StoreError(f"evidence store {self.url} is unreachable ({type(exc).__name__}: {_short(exc, 160)}); refusing") from None

    # ------------------------------------------------------------------ index
    def scan(self, deadline: float | None = None) -> StoreIndex:
        import json

        chunks: list[bytes] = []
        try:
            self._get(INDEX_NAME, chunks.append, MAX_INDEX_BYTES, deadline)
            try:
                doc = json.loads(b"".join(chunks).decode("utf-8"))
            except (ValueError, RecursionError):
                raise StoreError(f"evidence store {self.url}: {INDEX_NAME} is not JSON; refusing") from None
            index, entries = parse_index(doc, f"{self.url}/{INDEX_NAME}")
        except StoreError as exc:
            with self._lock:
                self.last_error = exc.diagnostics()
            raise
        with self._lock:
            self._index, self._fetched_at, self.last_error = index, self._now(), None
            self._entries = {e.path or ".": e for e in entries}
        return index

    @property
    def index(self) -> StoreIndex:
        if self._index is None:
            return self.scan()
        return self._index

    def ready(self) -> str | None:
        if self.last_error:
            return self.last_error
        if self._index is None:
            return f"{self.url}: not indexed yet"
        if not len(self._index):
            return f"{self.url}: no release in {INDEX_NAME}"
        return None

    def lookup(self, ref: ModelRef, deadline: float | None = None) -> RemoteEntry:
        if self._index is None or self._now() - self._fetched_at >= self.index_ttl_s:
            self.scan(deadline)
        entries = FileStore._find(self._index, ref)
        if not entries:
            what = {"release": "no release", "digest": "no release with model digest", "storage_uri": "no release with storageUri"}[ref.kind]
            raise StoreError(f"{what} {ref.value!r} in the evidence store {self.url} (referenced by {ref.source})")
        if len(entries) > 1:
            roots = ", ".join(sorted(str(e.root) for e in entries))
            raise StoreError(f"{ref.value!r} ({ref.source}) is ambiguous in the evidence store: {len(entries)} releases match ({roots})")
        return self._entries[entries[0].root.as_posix()]

    # ------------------------------------------------------------------ download
    def _materialise(self, entry: RemoteEntry, deadline: float | None) -> Path:
        """The release's files in the local cache, each verified against the index's sha256 and size."""
        import hashlib
        import shutil

        root = self.cache_dir / "releases" / entry.digest
        if root.is_dir():  # complete: a release directory appears only by an atomic rename
            os.utime(root)  # most recently used
            return root
        total = sum(size for _, _, size in entry.files)
        if total > self.cache_max_bytes:
            raise StoreError(f"release {entry.key} in {self.url} is {total} bytes, over the local cache's {self.cache_max_bytes}; refusing")
        work = self.cache_dir / "partial" / f"{entry.digest}.{os.getpid()}.{threading.get_ident()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            for rel, sha, size in entry.files:
                if size > self.max_file_bytes:
                    raise StoreError(f"{entry.key}: {rel} is {size} bytes, over the {self.max_file_bytes}-byte limit; refusing")
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                digest, got = hashlib.sha256(), [0]
                with open(target, "xb") as fh:
                    def sink(chunk: bytes, fh=fh, digest=digest, got=got) -> None:
                        digest.update(chunk)
                        got[0] += len(chunk)
                        fh.write(chunk)

                    remote = f"{entry.path}/{rel}" if entry.path else rel
                    self._get("/".join(_quote(p) for p in remote.split("/")), sink, size, deadline)
                if got[0] != size or digest.hexdigest() != sha:
                    raise StoreError(f"evidence store {self.url} served {remote} with sha256:{digest.hexdigest()[:16]}... ({got[0]} bytes), "
                                     f"expected sha256:{sha[:16]}... ({size} bytes) from its index; refusing")
            root.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(work, root)
            except OSError:  # another thread finished it first
                shutil.rmtree(work, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise StoreError(f"cannot write the local evidence cache {self.cache_dir}: {exc.strerror or exc}") from None
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        self._evict(keep=root)
        return root

    def _evict(self, keep: Path) -> None:
        """Drop the least recently used releases until the cache is within ``cache_max_bytes``."""
        import shutil

        base = self.cache_dir / "releases"
        found = []
        for child in base.iterdir():
            try:
                used = child.stat().st_mtime
            except OSError:
                continue
            try:
                size = sum(p.stat().st_size for p in child.rglob("*") if p.is_file())
            except OSError:  # being evicted by another thread
                continue
            found.append((used, size, child))
        total = sum(size for _, size, _ in found)
        for _used, size, child in sorted(found, key=lambda t: t[0]):
            if total <= self.cache_max_bytes:
                break
            if child != keep:
                shutil.rmtree(child, ignore_errors=True)
                total -= size

    def load(self, ref: ModelRef, trust: Any, *, trust_key: str = "", deadline: float | None = None) -> tuple[Release, Facts]:
        from mlgate import evidence
        from mlgate.manifest import load_release

        entry = self.lookup(ref, deadline)
        key = ("https", self.url, entry.digest, trust_key)
        cached = self.cache.get(key)
        if cached is None:
            root = self._materialise(entry, deadline)
            release = load_release(root)
            cached = (release, evidence.collect(release, trust))
            self.cache.put(key, cached)
        release, facts = cached
        _check_matches(ref, release, facts)
        return release, facts

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="@+=,~-._")
