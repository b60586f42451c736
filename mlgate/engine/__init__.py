"""The policy engine seam (design.md section 6): one protocol, several engines.

An engine answers one question: the value of ``data.mlgate.decision`` for an input document.
It raises :class:`~mlgate.errors.UndefinedDecision` when the policy is silent and
:class:`~mlgate.errors.EngineError` on any failure; it never decides allow by itself
(:func:`mlgate.gate.decide` does).
"""

from __future__ import annotations

from typing import Any, Protocol

from mlgate.errors import PolicyError
from mlgate.policy import PolicySet

DECISION_PATH = "data.mlgate.decision"


class PolicyEngine(Protocol):
    name: str
    version: str

    def decide(self, input_doc: dict[str, Any]) -> Any:
        """Return the raw value of ``data.mlgate.decision`` (any JSON value)."""
        ...


def create_engine(kind: str, policy: PolicySet, *, timeout_s: float = 10.0) -> PolicyEngine:
    if kind == "embedded":
        from mlgate.engine.regorus_engine import RegorusEngine

        return RegorusEngine(policy, timeout_s=timeout_s)
    raise PolicyError(f"unknown policy engine {kind!r} (available: embedded)")
