"""JSON Schemas shipped with mlgate, and one place that validates against them."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__name__).joinpath(name).read_text("utf-8"))


def json_path(path) -> str:
    """Render a jsonschema error path as ``spec.datasets[0].digest``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


_TYPE_NAMES = {dict: "object", list: "list", str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def _describe(instance: Any) -> str:
    return _TYPE_NAMES.get(type(instance), type(instance).__name__)


def errors(name: str, instance: Any, *, limit: int = 20) -> list[tuple[str, str]]:
    """Validate ``instance`` against schema ``name``; return (json path, message) pairs in path order."""
    from jsonschema.exceptions import best_match

    found = sorted(_validator(name).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    out: list[tuple[str, str]] = []
    for err in found[:limit]:
        # oneOf/anyOf: report the branch that came closest, not "is not valid under any".
        leaf = best_match(err.context) if err.context else err
        out.append((json_path(leaf.absolute_path), _message(leaf)))
    return out


@lru_cache(maxsize=None)
def _validator(name: str):
    from jsonschema import Draft202012Validator

    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _message(err) -> str:
    if err.validator == "type":
        expected = err.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        if expected == "array":
            expected = "list"
        return f"expected {expected}, got {_describe(err.instance)}"
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "additionalProperties":
        return err.message
    if err.validator == "const":
        return f"expected {err.validator_value!r}, got {err.instance!r}"
    if err.validator == "pattern":
        return f"{err.instance!r} does not match {err.validator_value}"
    return " ".join(str(err.message).split())[:300]
