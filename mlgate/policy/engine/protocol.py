"""The engine protocol every engine implements, and the decision path it answers."""

from __future__ import annotations

from typing import Any, Protocol

from mlgate.errors import PolicyError

DECISION_PATH = "data.mlgate.decision"
ENGINES = ("embedded", "regorus-interp", "rego-cpp", "opa")


class PolicyEngine(Protocol):
    name: str
    version: str

    def decide(self, input_doc: dict[str, Any]) -> Any:
        """Return the raw value of ``data.mlgate.decision`` (any JSON value)."""
        ...


def evaluate(engine: PolicyEngine, input_doc: dict[str, Any], state: dict[str, Any], *, input_json: bytes | None = None,
             static_key: Any = None) -> Any:
    """``engine.decide(input_doc)``; an engine-side decision id goes to ``state["engine_decision_id"]``,
    also when the engine raises (the exception carries it as ``engine_decision_id``).

    ``input_json``: the document's canonical JSON when the caller already has it; an engine that
    says ``takes_input_json`` reads it instead of serialising the document again. ``static_key``:
    the input's static key (:func:`mlgate.policy.timesplit.static_key`), or a callable that makes
    it, for an engine that says ``takes_static_key`` (the time split)."""
    extra = {"input_json": input_json} if input_json is not None and getattr(engine, "takes_input_json", False) else {}
    if getattr(engine, "takes_static_key", False):  # the time split (mlgate.policy.timesplit): a callable, asked only then
        extra["static_key"] = static_key() if callable(static_key) else static_key
    with_id = getattr(engine, "decide_with_id", None)
    if with_id is None:
        return engine.decide(input_doc, **extra)
    try:
        raw, decision_id = with_id(input_doc, **extra)
    except PolicyError as exc:
        if getattr(exc, "engine_decision_id", None):
            state["engine_decision_id"] = exc.engine_decision_id
        raise
    if decision_id:
        state["engine_decision_id"] = decision_id
    return raw
