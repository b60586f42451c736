"""Canonical JSON and digests (sorted keys, no spaces, UTF-8).

What JSON cannot carry, and what happens to it:

* ``datetime.date`` / ``datetime.datetime`` (YAML reads ``2026-11-01`` as a date): written as
  RFC 3339 strings (``2026-11-01``; a datetime in UTC with a ``Z``, a naive one taken as UTC
  as YAML 1.1 says). The same in every canonical form, so digests stay stable.
* Non-finite numbers (NaN, Infinity) and any other object: refused, with a
  :class:`NotCanonical` error that names where the value lies (``at release.owner: ...``).
* A lone surrogate (``"\\ud800"`` in YAML or JSON: not Unicode text, no UTF-8 encoding):
  :func:`canonical_json` refuses it (an input document holding one is an error decision);
  :func:`record_json`, used to seal audit records, writes it as the six characters
  ``\\ud800`` (Python's ``backslashreplace``), so a record naming hostile input can always be
  written and read back by any JSON parser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any


class NotCanonical(ValueError, TypeError):
    """A value has no canonical JSON form (a non-finite number, a lone surrogate, an object
    JSON has no type for). A ValueError and a TypeError, as ``json.dumps`` raised before."""


def _rfc3339(value: dt.date) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # YAML 1.1: a timestamp without a zone is UTC
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _default(value: Any) -> Any:
    if isinstance(value, dt.date):
        return _rfc3339(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default)


def canonical_json(obj: Any) -> bytes:
    try:
        return _dumps(obj).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotCanonical(explain(obj, exc)) from None


def record_json(obj: Any) -> bytes:
    """:func:`canonical_json`, with lone surrogates written as ``\\udXXX`` text (see above).
    Identical bytes for every value that has no lone surrogate."""
    try:
        return _dumps(obj).encode("utf-8")
    except UnicodeEncodeError:
        return canonical_json(escape_surrogates(obj))
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotCanonical(explain(obj, exc)) from None


def escape_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by the text ``\\udXXX``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_surrogates(obj: Any) -> Any:
    """A copy of ``obj`` whose strings (keys too) carry no lone surrogate."""
    if isinstance(obj, str):
        return escape_text(obj)
    if isinstance(obj, dict):
        return {escape_text(k) if isinstance(k, str) else k: escape_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [escape_surrogates(v) for v in obj]
    return obj


def explain(obj: Any, exc: BaseException) -> str:
    """Where the first value in ``obj`` with no canonical form lies, and why (slow path, errors only)."""
    found = _locate(obj, "", 0)
    return found if found is not None else f"{type(exc).__name__}: {exc}"


def _locate(obj: Any, path: str, depth: int) -> str | None:
    where = path or "the top level"
    if depth > 200:
        return f"at {where}: nested too deeply"
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"at {where}: a lone surrogate U+{ord(obj[exc.start]):04X} (not Unicode text)"
        return None
    if isinstance(obj, bool) or obj is None or isinstance(obj, int):
        return None
    if isinstance(obj, float):
        return None if math.isfinite(obj) else f"at {where}: {obj!r} is not a finite number (JSON has no NaN or Infinity)"
    if isinstance(obj, dt.date):
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"at {where}: a key of type {type(key).__name__} (JSON keys are strings)"
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                found = _locate(key, sub + " (the key)", depth + 1)
                if found:
                    return found
            found = _locate(value, sub, depth + 1)
            if found:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found = _locate(value, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    return f"at {where}: a value of type {type(obj).__name__} (JSON has no such type)"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (datasets can be large). Only a regular
    file: a FIFO or a device raises :class:`mlgate.safeio.NotRegularFile` (an OSError) at once."""
    from mlgate.safeio import open_regular

    h = hashlib.sha256()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_json(obj: Any) -> str:
    return sha256_hex(canonical_json(obj))
