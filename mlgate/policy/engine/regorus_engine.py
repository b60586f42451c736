"""The embedded engine: regorus (``gordon-to-regorus``, pinned in pyproject).

Known traps of regorus 0.13, each handled here:
- ``eval_rule``/``eval_query`` raise TypeError on sets of objects: only ``*_as_json`` is used.
- an unknown rule path raises: the decision is read with ``eval_query_as_json`` (undefined -> ``{}``).
- it lacks ``crypto.*`` and ``io.jwt.*`` (and possibly more): a policy that calls a builtin the
  engine lacks is refused at load time, naming file, line and builtin.
- with ``RUST_BACKTRACE`` set, errors carry native backtraces: it is removed before import.
- an ``Engine`` is unsendable between threads and holds the GIL while it evaluates, so a
  thread cannot enforce a deadline: evaluation runs in a forked child that is killed at the
  deadline (a timeout is an engine error, hence a deny).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from mlgate.canonical import canonical_json
from mlgate.policy.engine.protocol import DECISION_PATH
from mlgate.policy.engine.deadline import evaluate_with_deadline
from mlgate.errors import EngineError, PolicyError, UndefinedDecision
from mlgate.policy.policyset import Module, PolicySet
from mlgate.policy.rego_ast import load_regorus, one_line_error

_UNDEFINED = "<undefined>"  # what eval_rule_as_json gives for an undefined rule


@functools.lru_cache(maxsize=1)
def engine_version() -> str:
    """The regorus wheel's version (importlib.metadata costs ~15 ms: asked once per process)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gordon-to-regorus")
    except PackageNotFoundError:  # pragma: no cover - a build from source
        return "unknown"


class RegorusEngine:
    name = "regorus"

    def __init__(self, policy: PolicySet, *, timeout_s: float = 10.0, include_tests: bool = False,
                 extra_modules: tuple[tuple[str, str], ...] = ()):
        regorus = load_regorus()
        self.version = engine_version()
        self.timeout_s = timeout_s
        self._engine = regorus.Engine()
        modules: tuple[Module, ...] = policy.modules if include_tests else policy.decision_modules()
        # extra_modules: (path, text) generated from the policy (the time split's entry points)
        for path, text in [(m.path, m.text) for m in modules] + list(extra_modules):
            try:
                self._engine.add_policy(path, text)
            except Exception as exc:  # noqa: BLE001 - parse errors: RuntimeError from the native side
                raise PolicyError(f"cannot load policy: {one_line_error(exc)}", file=path) from None
        try:
            self._engine.add_data_json(json.dumps(policy.data))
        except Exception as exc:  # noqa: BLE001
            raise PolicyError(f"cannot load policy data: {one_line_error(exc)}") from None
        from mlgate.policy.rego_ast import checked_builtins

        missing = checked_builtins(policy, self._engine, f"regorus {self.version}",
                                   [(m.path, m.text) for m in modules] + list(extra_modules))  # remembered per policy revision
        if missing:
            file, line, name = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise PolicyError(f"{file}:{line}: builtin {name} is not available in the embedded engine (regorus {self.version}){more}")

    @property
    def raw(self) -> Any:
        return self._engine

    def eval_json(self, query: str, input_doc: dict[str, Any] | None) -> Any:
        """Evaluate ``query``; return the expression's value. Undefined raises UndefinedDecision."""
        if input_doc is not None:
            self._engine.set_input_json(canonical_json(input_doc).decode("utf-8"))
        text = evaluate_with_deadline(lambda: self._evaluate(query), self.timeout_s) if self.timeout_s and hasattr(os, "fork") else self._evaluate(query)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:  # pragma: no cover - the engine's output is JSON
            raise EngineError(f"engine returned invalid JSON: {exc}") from None
        results = doc.get("result") if isinstance(doc, dict) else None
        if not results:
            raise UndefinedDecision(f"{query} is undefined: the policy produced no decision")
        expressions = results[0].get("expressions") or []
        if not expressions or "value" not in expressions[0]:
            raise UndefinedDecision(f"{query} is undefined: the policy produced no decision")
        return expressions[0]["value"]

    #: decide() takes the input document already serialised (the gate serialises it once, for its digest too)
    takes_input_json = True

    def decide(self, input_doc: dict[str, Any], input_json: bytes | None = None) -> Any:
        """The value of the decision rule. Read as a rule, not a query: no query to parse and
        compile per decision (about 0.3 ms of 4 on the bundled library)."""
        self._engine.set_input_json((input_json if input_json is not None else canonical_json(input_doc)).decode("utf-8"))
        evaluate = self._evaluate_rule
        text = evaluate_with_deadline(evaluate, self.timeout_s) if self.timeout_s and hasattr(os, "fork") else evaluate()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:  # pragma: no cover - the engine's output is JSON
            raise EngineError(f"engine returned invalid JSON: {exc}") from None
        if value == _UNDEFINED:  # regorus's rule value for "undefined"; a decision is an object, never this string
            raise UndefinedDecision(f"{DECISION_PATH} is undefined: the policy produced no decision")
        return value

    def _evaluate_rule(self) -> str:
        try:
            return self._engine.eval_rule_as_json(DECISION_PATH)
        except Exception as exc:  # noqa: BLE001 - any engine failure is a deny; no decision rule at all is undefined
            if "not a valid rule path" in str(exc):  # no decision rule at all: undefined, as a query reads it
                return json.dumps(_UNDEFINED)
            raise EngineError(f"policy evaluation failed: {one_line_error(exc)}") from None

    def _evaluate(self, query: str) -> str:
        try:
            return self._engine.eval_query_as_json(query)
        except Exception as exc:  # noqa: BLE001 - any engine failure is a deny
            raise EngineError(f"policy evaluation failed: {one_line_error(exc)}") from None
