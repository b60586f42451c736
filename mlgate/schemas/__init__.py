"""JSON Schemas shipped with mlgate, and the one place that validates against them.

Every reader reports schema problems the same way: ``<file>: <json path>: <what was found,
what was expected>``, one line each, never a dump of a hostile value. A schema can name its
own message for a subschema with the ``x-message`` keyword (jsonschema ignores unknown keywords).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

MAX_ERRORS = 20


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__name__).joinpath(name).read_text("utf-8"))


def json_path(parts: Iterable[Any]) -> str:
    """``spec.datasets[0].digest``; ``$`` for the document itself."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "$"


def json_type(value: Any) -> str:
    """The JSON name of a value's type, as a YAML or JSON author knows it (arrays are lists)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "list", str: "string", int: "integer", float: "number"}.get(type(value), type(value).__name__)


def _type_name(name: str) -> str:
    return "list" if name == "array" else name


def clip(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=None)
def _validator(name: str):
    from jsonschema import Draft202012Validator  # lazy: ~50 ms the CLI's start-up must not pay

    # The shipped schemas are checked against the meta-schema by the test suite
    # (tests/test_schemas.py), not on every run: that check alone costs ~150 ms.
    return Draft202012Validator(load(name))


def _explain(err: Any) -> tuple[str, str]:
    """(json path, message) for one jsonschema error."""
    where = json_path(err.absolute_path)
    if isinstance(err.schema, dict) and "x-message" in err.schema:
        return where, err.schema["x-message"]
    validator = err.validator
    if validator in ("anyOf", "oneOf") and err.context:
        # The branch that got furthest (the entry was an object, but one of its fields is wrong) ...
        deeper = [e for e in err.context if len(e.relative_path) > 0 or e.validator != "type"]
        if deeper:
            return _explain(max(deeper, key=lambda e: len(e.absolute_path)))
        # ... or, when no branch matched the type at all, every type that would have been accepted.
        accepted: list[str] = []
        for e in err.context:
            for t in e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]:
                if _type_name(t) not in accepted:
                    accepted.append(_type_name(t))
        return where, f"expected {' or '.join(accepted)}, got {json_type(err.instance)}"
    if validator == "type":
        expected = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        return where, f"expected {' or '.join(_type_name(t) for t in expected)}, got {json_type(err.instance)}"
    if validator == "required":
        missing = [p for p in err.validator_value if isinstance(err.instance, dict) and p not in err.instance]
        return where, f"{', '.join(repr(m) for m in missing) or 'a required field'} is required"
    if validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return where, f"unexpected field(s) {', '.join(repr(clip(e, 40)) for e in extra[:5])}" if extra else clip(err.message)
    if validator == "const":
        return where, f"got {clip(repr(err.instance), 60)}, expected {err.validator_value!r}"
    if validator == "enum":
        return where, f"got {clip(repr(err.instance), 60)}, expected one of {', '.join(map(str, err.validator_value))}"
    if validator == "pattern":
        return where, f"{clip(repr(err.instance), 60)} does not match the required pattern {err.validator_value}"
    return where, clip(err.message, 200)


def errors(name: str, instance: Any, *, limit: int = MAX_ERRORS) -> list[tuple[str, str]]:
    """Validate ``instance`` against schema ``name``: (json path, message) pairs in path order.

    A document this user's mlgate has already found valid against the same schema is not
    validated again (:func:`_verdict_key`): importing jsonschema and resolving the schemas'
    ``$ref`` costs a CLI start tens of milliseconds, for documents (the trust policy, the
    release's evidence) that rarely change between checks."""
    key = _verdict_key(name, instance)
    if key is not None and _cache().get(_VERDICTS, key) == _VALID:
        return []
    found = sorted(_validator(name).iter_errors(instance), key=lambda e: (json_path(e.absolute_path), str(e.validator)))
    out: list[tuple[str, str]] = []
    for err in found:
        pair = _explain(err)
        if pair not in out:
            out.append(pair)
        if len(out) >= limit:
            break
    if key is not None and not out:
        _cache().put(_VERDICTS, key, _VALID)
    return out


_VERDICTS = "schema-valid-v1"
_VALID = b"valid"
_JSON_SCALARS = (str, int, float, bool, type(None))


def _cache():
    from mlgate import localcache

    return localcache


def _verdict_key(name: str, instance: Any) -> str | None:
    """The key under which "``instance`` is valid against schema ``name``" is remembered
    (:mod:`mlgate.localcache`); None when the instance cannot be keyed exactly.

    The key is the sha256 of the schema file's bytes, this module's code, the installed
    jsonschema and referencing, and the instance written as strict JSON: only dicts with
    string keys, lists, strings, numbers, booleans and null, no NaN (a YAML date, a tuple or an
    integer key has no exact JSON form, so such an instance is always validated). Only a
    "valid" verdict is kept; invalid documents are validated on every read so their errors are
    always complete and fresh.

    Why this is safe: the entry answers for these exact bytes of instance and schema, nothing
    else; only this user can write it (:mod:`mlgate.localcache`), and a forged "valid" entry
    for a malformed document gives the readers a document of the wrong shape, which they meet
    with an error (a deny), never a fact they were not given."""
    from mlgate import localcache

    stack = [instance]
    while stack:  # exact JSON types only; iterative: a deeply nested document must not exhaust the stack
        value = stack.pop()
        if isinstance(value, dict):
            if not all(type(k) is str for k in value):
                return None
            stack.extend(value.values())
        elif type(value) is list:
            stack.extend(value)
        elif type(value) not in _JSON_SCALARS or (type(value) is float and value != value) or value in (float("inf"), float("-inf")):
            return None
    libraries = localcache.library_fingerprint("jsonschema", "referencing")
    if not libraries:
        return None
    try:
        text = json.dumps(instance, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        schema, code = _schema_bytes(name), Path(__file__).read_bytes()
    except (ValueError, TypeError, OSError, RecursionError):
        return None
    return localcache.key_digest(_VERDICTS, name, schema, code, libraries, text.encode("utf-8", "surrogatepass"))


@lru_cache(maxsize=None)
def _schema_bytes(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


def messages(name: str, instance: Any, file: str, *, limit: int = MAX_ERRORS) -> list[str]:
    """The same as one-line messages ``<file>: <json path>: <message>``."""
    found = errors(name, instance, limit=limit + 1)
    lines = [" ".join(f"{file}: {where}: {what}".split()) for where, what in found[:limit]]
    if len(found) > limit:
        lines.append(f"{file}: $: more errors not shown")
    return lines
