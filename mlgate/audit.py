"""The audit trail: append-only, hash-chained decision records (design.md section 8).

One :class:`AuditSink` protocol, two backends chosen by a URL (:func:`open_sink`):

* ``file:PATH`` (default ``file:.mlgate/audit.jsonl``; a bare path means the same): JSONL,
  fsync'd, group commit (:mod:`mlgate.audit_file`).
* ``postgresql://...`` (or ``postgres://``): one trail shared by several webhook replicas and
  CI runners, psycopg 3 with a connection pool (:mod:`mlgate.audit_pg`).

The record format (``mlgate.dev/audit/v1``) and sealing are in :mod:`mlgate.audit_record`;
``mlgate audit verify`` is :mod:`mlgate.audit_verify`. Heavy modules (psycopg, GitPython) are
imported only when a backend or option needs them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlgate.audit_file import FileAuditSink, FileEvidenceStore
from mlgate.audit_record import (
    GENESIS_HASH,
    INPUT_MODES,
    RECORD_VERSION,
    AuditOptions,
    AuditReceipt,
    AuditSink,
    DecisionRecord,
    decision_record,
    seal,
)
from mlgate.errors import AuditError

__all__ = [
    "GENESIS_HASH", "INPUT_MODES", "RECORD_VERSION", "AuditOptions", "AuditReceipt", "AuditSink", "DecisionRecord",
    "FileAuditSink", "FileEvidenceStore", "decision_record", "seal", "AuditTarget", "parse_audit_url", "open_sink",
    "redact_url",
]

DEFAULT_AUDIT_URL = "file:.mlgate/audit.jsonl"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


class AuditTarget:
    """A parsed audit URL: ``kind`` is ``file`` (with ``path``) or ``postgresql`` (with ``dsn``)."""

    def __init__(self, kind: str, *, path: Path | None = None, dsn: str | None = None):
        self.kind, self.path, self.dsn = kind, path, dsn

    @property
    def display(self) -> str:
        return f"file:{self.path}" if self.kind == "file" else redact_url(self.dsn or "")


def redact_url(url: str) -> str:
    """A PostgreSQL URL fit for messages: the password replaced by ``***``."""
    return re.sub(r"^(\w+://[^:/@]*:)[^@]*@", r"\1***@", url)


def parse_audit_url(url: str) -> AuditTarget:
    text = (url or "").strip()
    if not text:
        raise AuditError("empty audit URL (expected file:PATH or postgresql://...)", field="--audit")
    m = _SCHEME.match(text)
    if m is None:
        return AuditTarget("file", path=Path(text))
    scheme = m.group(1).lower()
    if scheme == "file":
        rest = text[len(m.group(0)):]
        if rest.startswith("//"):
            rest = rest[2:]
            if not rest.startswith("/"):
                raise AuditError("file URLs with a host are not supported (use file:PATH or file:///abs/path)", file=text, field="--audit")
        if not rest:
            raise AuditError("no path in the file audit URL", file=text, field="--audit")
        return AuditTarget("file", path=Path(rest))
    if scheme in ("postgresql", "postgres"):
        return AuditTarget("postgresql", dsn=text)
    raise AuditError(f"unknown audit URL scheme {scheme!r} (expected file:PATH or postgresql://...)", file=redact_url(text), field="--audit")


def open_sink(url: str, options: AuditOptions | None = None, **backend: Any):
    """The sink for an audit URL. Close it when done (``with open_sink(...) as sink``)."""
    if options is not None and options.input_mode not in INPUT_MODES:
        raise AuditError(f"input mode {options.input_mode!r} is not one of {', '.join(INPUT_MODES)}", field="input_mode")
    target = parse_audit_url(url)
    if target.kind == "file":
        return FileAuditSink(target.path, options)
    from mlgate.audit_pg import PostgresAuditSink

    return PostgresAuditSink(target.dsn, options, **backend)
