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


def parse_audit_url(url: str, *, field: str = "--audit") -> AuditTarget:
    """``file:PATH``, ``file:///abs/path``, ``postgresql://...``, or a bare path. A bare value must
    look like a path (a directory part or a suffix: ``./trail``, ``audit.jsonl``): a lone word
    such as ``garbage`` is a mistyped URL far more often than a file name, and silently writing
    the trail to ``./garbage`` hides it. ``field`` names where the value came from (``--audit``,
    ``MLGATE_AUDIT``)."""
    text = (url or "").strip()
    if not text:
        raise AuditError("empty audit URL (expected file:PATH or postgresql://...)", field=field)
    m = _SCHEME.match(text)
    if m is None:
        path = Path(text)
        if len(path.parts) < 2 and not path.suffix and not path.is_absolute():
            raise AuditError(f"not an audit URL (expected file:PATH, postgresql://..., or a path such as ./{text} or {text}.jsonl)",
                             file=text, field=field)
        return AuditTarget("file", path=path)
    scheme = m.group(1).lower()
    if scheme == "file":
        rest = text[len(m.group(0)):]
        if rest.startswith("//"):
            rest = rest[2:]
            if not rest.startswith("/"):
                raise AuditError("file URLs with a host are not supported (use file:PATH or file:///abs/path)", file=text, field=field)
        if not rest:
            raise AuditError("no path in the file audit URL", file=text, field=field)
        return AuditTarget("file", path=Path(rest))
    if scheme in ("postgresql", "postgres"):
        return AuditTarget("postgresql", dsn=text)
    raise AuditError(f"unknown audit URL scheme {scheme!r} (expected file:PATH or postgresql://...)", file=redact_url(text), field=field)
