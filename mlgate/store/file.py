"""``file://DIR``: releases in a directory tree (a mounted volume), indexed by walking it."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import MlgateError
from mlgate.safeio import file_kind
from mlgate.store.base import (
    _SKIP_DIRS, MANIFEST_NAME, MAX_SCAN_DEPTH, FactsCache, IndexEntry, ModelRef, StoreError, StoreIndex,
    _check_matches, normalise_uri,
)

if TYPE_CHECKING:
    from mlgate.evidence import Facts
    from mlgate.manifest import Release


#: A file changed this recently (by its ctime) may change again within the same filesystem
#: timestamp tick without its stat changing: facts read from it are not cached (git's "racy
#: clean" problem). Two seconds covers coarse timestamps and NFS attribute caching.
RACY_S = 2.0


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What says a file changed: size, mtime, ctime (set by the kernel on every write, chmod or
    utime, and not settable from user space, so restoring the mtime with ``os.utime`` does not
    hide a same-size rewrite), inode and type."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode


def _fingerprint(root: Path) -> tuple:
    """``(relative path, *stat key)`` of every entry under ``root``, sorted, without following
    symbolic links. Nothing is skipped: a model directory's ``__pycache__`` or ``node_modules``
    are part of its digest, so a change there must be a new key too."""
    out: list[tuple] = []
    append = out.append
    is_dir = stat.S_ISDIR
    stack = [(os.fspath(root), "")]  # plain strings: this runs on every admission, for every file of the release
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            raise StoreError(f"cannot list the release: {exc.strerror or exc}", file=str(directory)) from None
        for entry in entries:
            rel = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if is_dir(st.st_mode):
                stack.append((entry.path, rel + "/"))
                continue
            append((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode))  # _stat_key, inline
    out.sort()
    return tuple(out)


def _path_fingerprint(path: Path) -> tuple:
    """:func:`_fingerprint` of a directory, or the stat key of a single file (a one-file model)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return ()
    return _fingerprint(path) if stat.S_ISDIR(st.st_mode) else ((".", *_stat_key(st)),)


def _newest_ctime_ns(fingerprint: tuple) -> int:
    return max((item[3] for item in fingerprint), default=0)


class FileStore:
    """``file://DIR``: a mounted directory of releases (any depth below DIR).

    The index (every release by name@version, model digest and storage URI) is built once by
    :meth:`scan` (at start-up) and refreshed **off the request path**: a reference the index
    does not know is answered "not found" at once (a deny in enforce mode) and schedules one
    background rescan, at most one every ``rescan_after_s`` seconds, so a stream of requests for
    unknown models cannot make other admissions wait on directory walks and model hashing. A
    rescan re-hashes only the releases whose manifest or model files changed (by stat key)."""

    def __init__(self, root: Path | str, *, cache: FactsCache | None = None, rescan_after_s: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic, wall_ns: Callable[[], int] = time.time_ns):
        self.root = Path(root)
        self.url = "file://" + str(self.root.resolve())
        self.cache = cache if cache is not None else FactsCache()
        self.rescan_after_s = rescan_after_s
        self._now = monotonic
        self._wall_ns = wall_ns  # compared with file ctimes only (racy-clean check), never with a decision
        self._index: StoreIndex | None = None
        self._index_started = float("-inf")  # when the scan that built the current index began
        self._scan_started = float("-inf")  # when the latest scan (foreground or background) began
        self._rescanning: threading.Thread | None = None
        self._known: dict[Path, tuple] = {}  # manifest -> (manifest stat key, model path, model fingerprint, entry)
        self._lock = threading.Lock()
        self.scans = 0  # completed scans (for tests and metrics)
        self.last_error: str | None = None

    # ------------------------------------------------------------------ index
    def scan(self) -> StoreIndex:
        """Index every release under the root, now, on this thread. A manifest that cannot be
        loaded (or is not a regular file) is left out and named in ``errors``."""
        with self._lock:
            started = self._scan_started = self._now()
        try:
            index, known = self._build_index()
        except StoreError as exc:
            with self._lock:
                self.last_error = exc.diagnostics()
            raise
        with self._lock:
            # A slower scan that began earlier never replaces the result of a later one.
            if started >= self._index_started:
                self._index, self._index_started, self._known, self.last_error = index, started, known, None
            self.scans += 1
            return self._index if self._index is not None else index

    def _build_index(self) -> tuple[StoreIndex, dict[Path, tuple]]:
        from mlgate.evidence.model_digest import compute_model_digest
        from mlgate.manifest import load_release

        if not self.root.is_dir():
            raise StoreError("evidence store directory not found", file=self.url)
        with self._lock:
            previous = dict(self._known)
        index, known = StoreIndex(), {}
        manifests, index.errors = self._manifests()
        for manifest in manifests:
            try:
                manifest_key = _stat_key(os.stat(manifest, follow_symlinks=False))
                seen = previous.get(manifest)
                if seen is not None and seen[0] == manifest_key and _path_fingerprint(seen[1]) == seen[2]:
                    entry = seen[3]  # neither the manifest nor the model changed: no need to hash it again
                    known[manifest] = seen
                else:
                    release = load_release(manifest.parent)
                    model_fp = _path_fingerprint(release.model_path)
                    digest = compute_model_digest(release.model_path).root
                    entry = IndexEntry(f"{release.name}@{release.version}", manifest.parent, digest, release.storage_uri)
                    if model_fp == _path_fingerprint(release.model_path):  # unchanged while it was hashed
                        known[manifest] = (manifest_key, release.model_path, model_fp, entry)
            except OSError as exc:
                index.errors.append(f"{manifest}: cannot read: {exc.strerror or exc}")
                continue
            except MlgateError as exc:
                index.errors.append(exc.diagnostics())
                continue
            index.add(entry)
        return index, known

    def _manifests(self) -> tuple[list[Path], list[str]]:
        """Every regular-file manifest under the root, and one line for each manifest name that
        is not a regular file (a FIFO, a device, a socket: never opened, named instead)."""
        found: list[Path] = []
        errors: list[str] = []
        stack = [(self.root, 0)]
        while stack:
            directory, depth = stack.pop()
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name == MANIFEST_NAME and not entry.is_dir():
                    try:
                        mode = entry.stat().st_mode  # follows a symlink, as reading it would
                    except OSError as exc:
                        errors.append(f"{entry.path}: cannot read: {exc.strerror or exc}")
                        continue
                    if stat.S_ISREG(mode):
                        found.append(Path(entry.path))
                    else:
                        errors.append(f"{entry.path}: expected a regular file, found {file_kind(mode)}; not indexed")
                elif entry.is_dir(follow_symlinks=False) and depth < MAX_SCAN_DEPTH and entry.name not in _SKIP_DIRS \
                        and not entry.name.startswith("."):
                    stack.append((Path(entry.path), depth + 1))
        return sorted(found), sorted(errors)

    def schedule_rescan(self) -> bool:
        """Start a background rescan unless one is running or one began less than
        ``rescan_after_s`` ago. True when one was started."""
        with self._lock:
            running = self._rescanning is not None and self._rescanning.is_alive()
            if running or self._now() - self._scan_started < self.rescan_after_s:
                return False
            self._scan_started = self._now()  # rate limit from now, even before the thread runs
            thread = threading.Thread(target=self._rescan, name="mlgate-store-rescan", daemon=True)
            self._rescanning = thread
        thread.start()
        return True

    def _rescan(self) -> None:
        try:
            self.scan()
        except MlgateError:
            pass  # last_error says why; the previous index keeps serving
        except Exception as exc:  # noqa: BLE001 - a background thread must not die silently
            with self._lock:
                self.last_error = f"{self.url}: rescan failed: {type(exc).__name__}: {exc}"

    def wait_for_rescan(self, timeout: float | None = None) -> None:
        """Wait for a background rescan in progress (tests, shutdown)."""
        thread = self._rescanning
        if thread is not None:
            thread.join(timeout)

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
        if not entries:
            # Answered from the index as it is: a release published since the last scan is found
            # by the background rescan this schedules (at most one per rescan_after_s).
            self.schedule_rescan()
            what = {"release": "no release", "digest": "no release with model digest", "storage_uri": "no release with storageUri"}[ref.kind]
            raise StoreError(f"{what} {ref.value!r} in the evidence store {self.url} (referenced by {ref.source}); "
                             f"a release published since is found after the next background rescan (at most every {self.rescan_after_s:g} s)")
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
        before = _fingerprint(entry.root)
        key = (str(entry.root), trust_key, before)
        cached = self.cache.get(key)
        if cached is None:
            release = load_release(entry.root)
            cached = (release, evidence.collect(release, trust))
            # Cached only when no file changed while it was read, and none changed so recently
            # that a rewrite within the same timestamp tick could leave its stat key as it is.
            racy = self._wall_ns() - _newest_ctime_ns(before) < RACY_S * 1e9
            if not racy and _fingerprint(entry.root) == before:
                self.cache.put(key, cached)
        release, facts = cached
        _check_matches(ref, release, facts)
        return release, facts
