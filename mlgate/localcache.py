"""A per-user, content-addressed cache of results that are slow to derive and cheap to key.

Entries live in ``$MLGATE_CACHE_DIR`` (``off`` or an empty value turns the cache off), else
``$XDG_CACHE_HOME/mlgate``, else ``~/.cache/mlgate``: one file per entry, named by the sha256 of
its key, under a namespace directory. Every key is a digest of *all* the content the result was
derived from (the bytes of the record or policy, the code and the library versions that derived
it), so an entry can never be served for other content: a changed input is a different key.

Who can write an entry, and why that is acceptable:

- only a process running as this user. The directory and every entry must be owned by the
  current user and not writable by group or others; anything else is ignored (not read, not
  written), as ssh treats ``~/.ssh``. Entries are written to a temporary file and renamed into
  place, so a reader sees a whole entry or none; a file that does not parse is a miss.
- whoever runs as this user can already change what mlgate does (its installed code, its
  policy files, ``PYTHONPATH``); a cache entry gives them nothing more. A shared directory
  (``/tmp``) is never the default for this reason.
- each caller says what a forged entry could do, and uses the cache only where that is
  acceptable (see :func:`mlgate.evidence.bias.read_bias_audit` and
  :func:`mlgate.policy.rego_ast.checked_builtins`). A CI job that restores a cache from
  another, less trusted job (``actions/cache`` keyed by branch) should not restore this
  directory, or should set ``MLGATE_CACHE_DIR=off``.

Failures never change a result: an unreadable or unwritable cache is a miss, silently.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
from pathlib import Path

ENV = "MLGATE_CACHE_DIR"
#: An entry larger than this is not read (entries are small JSON documents).
MAX_ENTRY_BYTES = 4 * 1024 * 1024


def cache_dir() -> Path | None:
    """The cache root, or None when the cache is off or this platform cannot check ownership."""
    if not hasattr(os, "getuid"):
        return None
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip() in ("", "off", "0", "false", "no") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlgate"


def key_digest(*parts: str | bytes) -> str:
    """sha256 of the parts, each length-prefixed (no two part lists share a digest)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def _private(st: os.stat_result, kind) -> bool:
    return kind(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _namespace(namespace: str, *, create: bool) -> Path | None:
    root = cache_dir()
    if root is None:
        return None
    where = root / namespace
    try:
        if create:  # owner-only at every level this creates (a umask of 002 would otherwise leave it group-writable, so unused)
            os.makedirs(root, mode=0o700, exist_ok=True)
            os.makedirs(where, mode=0o700, exist_ok=True)
        # the root may be a link (a home on another disk); the namespace directory may not
        if not (_private(os.stat(root), stat.S_ISDIR) and _private(os.lstat(where), stat.S_ISDIR)):
            return None
    except OSError:
        return None
    return where


def get(namespace: str, key: str) -> bytes | None:
    """The entry's bytes, or None (absent, not private to this user, unreadable)."""
    where = _namespace(namespace, create=False)
    if where is None:
        return None
    try:
        fd = os.open(where / key, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _private(st, stat.S_ISREG) or st.st_size > MAX_ENTRY_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def put(namespace: str, key: str, data: bytes) -> None:
    """Store an entry; best effort (a read-only home, a full disk: nothing happens)."""
    where = _namespace(namespace, create=True)
    if where is None or len(data) > MAX_ENTRY_BYTES:
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=where, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, where / key)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


@functools.lru_cache(maxsize=64)
def library_fingerprint(*names: str) -> str:
    """Which versions of the named installed packages are here, without importing them
    (importing statsmodels costs about a second, :mod:`importlib.metadata` tens of milliseconds):
    each package's location, the name of its ``.dist-info`` directory (name and version) and the
    size and mtime of its ``__init__.py``. A reinstall of any of them is a new fingerprint.
    ``""`` when one is not installed (then nothing should be cached). Remembered per process: the
    code a process runs is what it imported, whatever is installed after."""
    import importlib.util

    parts = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return ""
        if spec is None or not spec.origin:
            return ""
        origin = Path(spec.origin)
        site = origin.parent.parent
        try:
            st = origin.stat()
            dists = sorted(e for e in os.listdir(site) if e.startswith(name + "-") and e.endswith(".dist-info"))
        except OSError:
            return ""
        parts.append(f"{origin}|{st.st_size}|{st.st_mtime_ns}|{','.join(dists)}")
    return "\n".join(parts)
