"""Audit URLs: ``file:PATH`` or ``postgresql://...``, parsed, and redacted for messages."""

from __future__ import annotations

import re
from pathlib import Path

from mlgate.errors import AuditError

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
