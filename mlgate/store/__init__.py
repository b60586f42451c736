"""Evidence stores: resolve a model reference to a release of the same shape as a release directory.

A reference names a release (``NAME@VERSION``), a model digest (``sha256:HEX``) or the storage
URI a serving runtime loads the model from (KServe ``storageUri``, Seldon ``modelUri``). The
store indexes every ``mlgate.yaml`` it holds by all three, and hands back the release with its
verified, parsed evidence (:class:`~mlgate.evidence.Facts`).

Facts are cached (bounded, TTL) under a fingerprint of the release's files (path, size, mtime,
ctime, inode and type of every file under the release root) and the trust policy: a changed
file is a new key, so evidence is read, verified and parsed again (ctime changes on every write
and cannot be set back, so a same-size rewrite with its mtime restored is noticed; facts of a
file changed within the last ``RACY_S`` seconds are not cached). Decisions are never cached:
the policy judges the cached facts afresh each time (approvals expire, the clock moves).

A ``file://`` store answers an unknown reference from its index at once and rescans in the
background (at most once per ``rescan_after_s``); an ``https://`` store verifies a release
already in its local cache against the index before using it. Every file is opened through
:func:`mlgate.safeio.open_regular`: a FIFO, a device or a socket is refused, never waited on.

Two backends share that contract: :class:`FileStore` (``file://DIR``, a mounted volume) and
:class:`HttpsStore` (``https://HOST/PREFIX``, the same layout served by a static HTTPS or
artifact server, found through ``PREFIX/index.json`` written by ``mlgate webhook index DIR``;
releases are downloaded into a bounded local cache keyed by digest and every byte is re-hashed).

Fail closed: a reference that resolves to nothing, to two releases, or to a release whose
model digest or storage URI no longer matches the reference is a :class:`StoreError`, which
the gate turns into an error decision (a deny).

Modules: :mod:`~mlgate.store.base` (references, the index, the facts cache),
:mod:`~mlgate.store.file`, :mod:`~mlgate.store.https`, :mod:`~mlgate.store.mlflow` (a release
downloaded from an MLflow model version). May import the evidence readers, the manifest,
provenance (the MLflow client) and the basics; never the gate, the audit trail or the doors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlgate.store.base import (
    MANIFEST_NAME, MAX_SCAN_DEPTH, FactsCache, IndexEntry, ModelRef, StoreError, StoreIndex, normalise_uri,
)
from mlgate.store.file import FileStore
from mlgate.store.https import INDEX_NAME, HttpsStore, build_index, parse_index

__all__ = [
    "INDEX_NAME", "MANIFEST_NAME", "MAX_SCAN_DEPTH", "FactsCache", "FileStore", "HttpsStore", "IndexEntry", "ModelRef",
    "StoreError", "StoreIndex", "build_index", "normalise_uri", "open_store", "parse_index",
]


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
