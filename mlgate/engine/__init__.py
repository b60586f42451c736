"""The policy engine seam (design.md section 6): one protocol, several engines.

An engine answers one question: the value of ``data.mlgate.decision`` for an input document.
It raises :class:`~mlgate.errors.UndefinedDecision` when the policy is silent and
:class:`~mlgate.errors.EngineError` on any failure; it never decides allow by itself
(:func:`mlgate.gate.decide` does).

Engines (``--engine``):

- ``embedded`` (default): regorus, in-process (:mod:`mlgate.engine.regorus_engine`).
- ``rego-cpp``: Microsoft rego-cpp through ``regopy``, in-process, the ``rego-cpp`` extra
  (:mod:`mlgate.engine.regopy_engine`).
- ``opa``: an OPA server over its REST data API (:mod:`mlgate.engine.opa`).

An engine that reports an id of its own for a decision (OPA's ``decision_id``) implements
``decide_with_id``; :func:`evaluate` reads it, so the id reaches the audit record even when the
answer is a deny (undefined, an error body).
"""

from __future__ import annotations

from typing import Any, Protocol

from mlgate.errors import PolicyError
from mlgate.policy import PolicySet

DECISION_PATH = "data.mlgate.decision"
ENGINES = ("embedded", "rego-cpp", "opa")


class PolicyEngine(Protocol):
    name: str
    version: str

    def decide(self, input_doc: dict[str, Any]) -> Any:
        """Return the raw value of ``data.mlgate.decision`` (any JSON value)."""
        ...


def evaluate(engine: PolicyEngine, input_doc: dict[str, Any], state: dict[str, Any], *, input_json: bytes | None = None) -> Any:
    """``engine.decide(input_doc)``; an engine-side decision id goes to ``state["engine_decision_id"]``,
    also when the engine raises (the exception carries it as ``engine_decision_id``).

    ``input_json``: the document's canonical JSON when the caller already has it; an engine that
    says ``takes_input_json`` reads it instead of serialising the document again."""
    extra = {"input_json": input_json} if input_json is not None and getattr(engine, "takes_input_json", False) else {}
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


def create_engine(kind: str, policy: PolicySet, *, timeout_s: float = 10.0, opa: Any = None) -> PolicyEngine:
    """Build the engine ``kind`` for ``policy``. ``opa`` (:class:`mlgate.engine.opa.OpaSettings`)
    is required for ``kind="opa"`` and refused for the in-process engines."""
    if kind != "opa" and opa is not None:
        raise PolicyError(f"OPA server options (--opa-url, --opa-token, TLS) need --engine opa, not {kind!r}")
    if kind == "embedded":
        from mlgate.engine.regorus_engine import RegorusEngine

        return RegorusEngine(policy, timeout_s=timeout_s)
    if kind == "rego-cpp":
        from mlgate.engine.regopy_engine import RegopyEngine

        return RegopyEngine(policy, timeout_s=timeout_s)
    if kind == "opa":
        from mlgate.engine.opa import OpaEngine

        if opa is None:
            raise PolicyError("--engine opa needs --opa-url (the OPA server's base URL)")
        return OpaEngine(opa, timeout_s=timeout_s, policy=policy)
    raise PolicyError(f"unknown policy engine {kind!r} (available: {', '.join(ENGINES)})")
