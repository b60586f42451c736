"""The policy engine seam (design.md section 6): one protocol, several engines.

An engine answers one question: the value of ``data.mlgate.decision`` for an input document.
It raises :class:`~mlgate.errors.UndefinedDecision` when the policy is silent and
:class:`~mlgate.errors.EngineError` on any failure; it never decides allow by itself
(:func:`mlgate.gate.decide` does).

Engines (``--engine``):

- ``embedded`` (default): regorus's compiled VM, in-process (:mod:`mlgate.policy.engine.rvm_engine`).
- ``regorus-interp``: regorus's tree-walking interpreter, in-process
  (:mod:`mlgate.policy.engine.regorus_engine`); what ``mlgate policy test`` runs on (``with``).
- ``rego-cpp``: Microsoft rego-cpp through ``regopy``, in-process, the ``rego-cpp`` extra
  (:mod:`mlgate.policy.engine.regopy_engine`).
- ``opa``: an OPA server over its REST data API (:mod:`mlgate.policy.engine.opa`).

An engine that reports an id of its own for a decision (OPA's ``decision_id``) implements
``decide_with_id``; :func:`evaluate` reads it, so the id reaches the audit record even when the
answer is a deny (undefined, an error body).

May import the policy set and its Rego parse (:mod:`mlgate.policy.policyset`,
:mod:`mlgate.policy.rego_ast`) and the basics; never the authoring tools (:mod:`mlgate.policytools`),
the gate or the doors.
"""

from __future__ import annotations

from typing import Any

from mlgate.errors import PolicyError
from mlgate.policy.engine.protocol import DECISION_PATH, ENGINES, PolicyEngine, evaluate
from mlgate.policy.policyset import PolicySet

__all__ = ["DECISION_PATH", "ENGINES", "PolicyEngine", "create_engine", "evaluate"]


def create_engine(kind: str, policy: PolicySet, *, timeout_s: float = 10.0, opa: Any = None, time_split: bool = False) -> PolicyEngine:
    """Build the engine ``kind`` for ``policy``. ``opa`` (:class:`mlgate.policy.engine.opa.OpaSettings`)
    is required for ``kind="opa"`` and refused for the in-process engines. ``time_split``: the
    default engine caches the findings that do not depend on the time (:mod:`mlgate.policy.timesplit`;
    the webhook, which admits the same release again and again); the other engines evaluate whole."""
    if kind != "opa" and opa is not None:
        raise PolicyError(f"OPA server options (--opa-url, --opa-token, TLS) need --engine opa, not {kind!r}")
    if kind == "embedded":
        from mlgate.policy.engine.rvm_engine import RvmEngine

        return RvmEngine(policy, timeout_s=timeout_s, time_split=time_split)
    if kind == "regorus-interp":
        from mlgate.policy.engine.regorus_engine import RegorusEngine

        return RegorusEngine(policy, timeout_s=timeout_s)
    if kind == "rego-cpp":
        from mlgate.policy.engine.regopy_engine import RegopyEngine

        return RegopyEngine(policy, timeout_s=timeout_s)
    if kind == "opa":
        from mlgate.policy.engine.opa import OpaEngine

        if opa is None:
            raise PolicyError("--engine opa needs --opa-url (the OPA server's base URL)")
        return OpaEngine(opa, timeout_s=timeout_s, policy=policy)
    raise PolicyError(f"unknown policy engine {kind!r} (available: {', '.join(ENGINES)})")
