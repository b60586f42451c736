"""``https://HOST/PREFIX``: the same layout served by a static HTTPS or artifact server, found
through ``PREFIX/index.json`` (written by ``mlgate webhook index DIR``); releases are downloaded
into a bounded local cache keyed by digest and every byte is re-hashed."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.store.base import (
    _RELEASE, MANIFEST_NAME, FactsCache, IndexEntry, ModelRef, StoreError, StoreIndex, _check_matches, _short,
)
from mlgate.store.file import FileStore, _fingerprint

if TYPE_CHECKING:
    from mlgate.evidence import Facts
    from mlgate.manifest import Release


INDEX_NAME = "index.json"
INDEX_VERSION = "mlgate.dev/store-index/v1"
MAX_INDEX_BYTES = 16 * 1024 * 1024
_REL_PATH = re.compile(r"^[^/\x00-\x1f\x7f\\][^\x00-\x1f\x7f\\]{0,1023}$")


def _release_files(root: Path, errors: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "size"}}`` of every regular file under a release (the layout a
    store serves). Symbolic links are left out; a FIFO, a device or a socket is never opened, and
    is named in ``errors`` (one line each) when a list is given."""
    import hashlib
    import stat

    from mlgate.safeio import NotRegularFile, open_regular

    out: dict[str, dict[str, Any]] = {}
    for rel, _size, _mtime, _ctime, _ino, mode in _fingerprint(root):
        if stat.S_ISLNK(mode):
            continue
        path = root / rel
        digest, size = hashlib.sha256(), 0
        try:
            with open_regular(path, follow_symlinks=False) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
        except NotRegularFile as exc:
            if errors is not None:
                errors.append(f"{path}: {exc.strerror}; not published")
            continue
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
    releases, errors = [], list(index.errors)
    for entries in index.by_release.values():
        for entry in entries:
            releases.append({"release": entry.key, "path": entry.root.resolve().relative_to(base).as_posix(),
                             "model_digest": entry.model_digest, "storage_uri": entry.storage_uri,
                             "files": _release_files(entry.root, errors)})
    releases.sort(key=lambda r: (r["release"], r["path"]))
    return {"apiVersion": INDEX_VERSION, "releases": releases, "errors": errors}


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
        self.cache_problems: list[str] = []  # cached releases found changed on disk (and fetched again)
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
            problem = _verify_cached(root, entry)
            if problem is None:
                os.utime(root)  # most recently used
                return root
            # Changed on disk since it was downloaded and verified: never served; fetched again.
            self.cache_problems.append(f"{entry.key}: {problem}")
            shutil.rmtree(root, ignore_errors=True)
            if root.exists():
                raise StoreError(f"the local evidence cache of {entry.key} ({root}) no longer matches {self.url}'s index "
                                 f"({problem}) and cannot be removed; refusing")
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
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
            root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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


def _verify_cached(root: Path, entry: RemoteEntry) -> str | None:
    """None when the cached release holds exactly the index's files, each of its size and
    sha256; otherwise what differs (the first difference). Read only on a facts-cache miss,
    which reads the release anyway."""
    import hashlib
    import stat

    from mlgate.safeio import open_regular

    expected = {rel: (sha, size) for rel, sha, size in entry.files}
    try:
        present = {rel: mode for rel, _s, _m, _c, _i, mode in _fingerprint(root)}
    except StoreError as exc:
        return exc.message
    extra = sorted(set(present) - set(expected))
    if extra:
        return f"{extra[0]} is not in the index"
    for rel, (sha, size) in sorted(expected.items()):
        if rel not in present:
            return f"{rel} is missing"
        if not stat.S_ISREG(present[rel]):
            return f"{rel} is not a regular file"
        digest, got = hashlib.sha256(), 0
        try:
            with open_regular(root / rel, follow_symlinks=False) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
                    got += len(chunk)
                    if got > size:
                        break
        except OSError as exc:
            return f"{rel}: cannot read: {exc.strerror or exc}"
        if got != size or digest.hexdigest() != sha:
            return f"{rel} hashes to sha256:{digest.hexdigest()[:16]}... ({got} bytes), the index says sha256:{sha[:16]}... ({size} bytes)"
    return None


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="@+=,~-._")
