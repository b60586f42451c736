"""JSON Schemas shipped with mlgate, and the one place that validates against them.

Every reader reports schema problems the same way: ``<file>: <json path>: <what was found,
what was expected>``, one line each, never a dump of a hostile value. A schema can name its
own message for a subschema with the ``x-message`` keyword (jsonschema ignores unknown keywords).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
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
    """Validate ``instance`` against schema ``name``: (json path, message) pairs in path order."""
    found = sorted(_validator(name).iter_errors(instance), key=lambda e: (json_path(e.absolute_path), str(e.validator)))
    out: list[tuple[str, str]] = []
    for err in found:
        pair = _explain(err)
        if pair not in out:
            out.append(pair)
        if len(out) >= limit:
            break
    return out


def messages(name: str, instance: Any, file: str, *, limit: int = MAX_ERRORS) -> list[str]:
    """The same as one-line messages ``<file>: <json path>: <message>``."""
    found = errors(name, instance, limit=limit + 1)
    lines = [" ".join(f"{file}: {where}: {what}".split()) for where, what in found[:limit]]
    if len(found) > limit:
        lines.append(f"{file}: $: more errors not shown")
    return lines
