"""The default embedded engine: regorus's compiled VM (RVM), from the same pinned wheel.

The policy set is compiled once, at load, into a ``regorus.Program`` with the decision as its
entry point (``data.mlgate.decision``; with the time split also ``decision_static`` and
``decision_timed``, :mod:`mlgate.policy.engine.timesplit`); each decision sets the input and
runs the program. About 4x fewer instructions than the tree-walker
(:mod:`mlgate.policy.engine.regorus_engine`, ``--engine regorus-interp``), which stays for
``mlgate policy test`` (the VM has no ``with``).

Fail closed, each case handled here:

- a library that does not compile for the VM is refused at load (:class:`~mlgate.errors.PolicyError`
  naming the reason and ``--engine regorus-interp``): the gate denies, it never falls back silently;
- a builtin the engine lacks is refused at load, as for the tree-walker;
- the VM of regorus 0.13 has a known bug: the value of an *undefined* function call still lands
  in a set (``s contains f(x)``, ``{n | n := f(x)}``). The library guards every such call
  (``tests/test_rvm_reference.py`` holds the VM to real OPA on every example and 2,000
  generated inputs);
- the wheel's VM stops a run after 25,000 VM instructions and offers no way to raise the cap.
  An input that needs more (many subgroups, many approvals) is decided by the tree-walker on the
  same policy (the same meaning: both are held to OPA), under what is left of the same deadline;
- the VM reads a builtin error (``to_number("x")``) as undefined where OPA and the tree-walker
  raise, and an undefined value can then reach its answer as the string ``"<undefined>"``: such
  an answer is never used, the tree-walker decides that input (raising where OPA raises);
  ``fallbacks`` counts the decisions the tree-walker made;
- an entry point the policy does not define is undefined (the compiler refuses it: it is left out);
- like the tree-walker, the VM holds the GIL while it runs: with a timeout, the run happens in a
  forked child killed at the deadline (:func:`~mlgate.policy.engine.deadline.evaluate_with_deadline`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from mlgate.canonical import canonical_json
from mlgate.errors import EngineError, PolicyError, UndefinedDecision
from mlgate.policy.engine.deadline import evaluate_with_deadline
from mlgate.policy.engine.protocol import DECISION_PATH
from mlgate.policy.engine.regorus_engine import engine_version
from mlgate.policy.policyset import PolicySet
from mlgate.policy.rego_ast import load_regorus, one_line_error

#: what the VM says when a run reaches its fixed instruction cap (regorus 0.13: 25,000)
_CAP = "exceeded maximum instruction limit"


class RvmEngine:
    name = "regorus-rvm"

    #: decide() takes the input document already serialised (the gate serialises it once, for its digest too)
    takes_input_json = True

    def __init__(self, policy: PolicySet, *, timeout_s: float = 10.0, entry_points: tuple[str, ...] = (DECISION_PATH,),
                 extra_modules: tuple[tuple[str, str], ...] = ()):
        regorus = load_regorus()
        self.version = engine_version()
        self.timeout_s = timeout_s
        self.fallbacks = 0
        self.entry_points = tuple(entry_points)
        modules = [(m.path, m.text) for m in policy.decision_modules()] + list(extra_modules)
        data_json = json.dumps(policy.data)
        # The tree-walker first: it names parse errors and missing builtins by file and line, which
        # the VM's compiler does not, and it decides the inputs past the VM's cap.
        from mlgate.policy.engine.regorus_engine import RegorusEngine

        self.interpreter = RegorusEngine(policy, timeout_s=timeout_s, extra_modules=extra_modules)
        #: entry points the policy does not define at all: undefined, as a query reads them
        self.missing: tuple[str, ...] = ()
        self._program = self._vm = None
        program = self._compile(regorus, data_json, modules, list(self.entry_points))
        if program is None:
            return
        self._program = program
        self._vm = regorus.Rvm()
        self._vm.load_program(program)
        try:
            self._vm.set_data_json(data_json)  # the program does not carry the data it was compiled with
        except Exception as exc:  # noqa: BLE001
            raise PolicyError(f"cannot load policy data into the compiled engine: {one_line_error(exc)}") from None

    def _compile(self, regorus: Any, data_json: str, modules: list, entry_points: list[str]) -> Any:
        def compile_(entries: list[str]) -> Any:
            return regorus.Program.compile_from_modules(data_json, modules, entries)

        try:
            return compile_(entry_points)
        except Exception as exc:  # noqa: BLE001 - a compile error comes back as RuntimeError from the native side
            error = exc
        if _NO_RULE in str(error):  # an entry point the policy does not define: find which
            missing = []
            for entry in entry_points:
                try:
                    compile_([entry])
                except Exception as exc:  # noqa: BLE001
                    if _NO_RULE in str(exc):
                        missing.append(entry)
            self.missing = tuple(missing)
            rest = [e for e in entry_points if e not in missing]
            if not rest:
                return None
            try:
                return compile_(rest)
            except Exception as exc:  # noqa: BLE001
                error = exc
        raise PolicyError(f"the policy does not compile for the compiled engine (regorus {self.version} RVM): "
                          f"{one_line_error(error)}; evaluate it with --engine regorus-interp") from None

    def decide(self, input_doc: dict[str, Any], input_json: bytes | None = None) -> Any:
        """The value of ``data.mlgate.decision``."""
        return self.run(DECISION_PATH, input_json if input_json is not None else canonical_json(input_doc))

    def eval_json(self, query: str, input_doc: dict[str, Any] | None) -> Any:
        """Any other query (``mlgate monitor``'s ``data.mlgate.monitoring.decision``, the policy
        tools): the tree-walker over the same policy, which the VM falls back to anyway. Only the
        compiled entry points run on the VM."""
        return self.interpreter.eval_json(query, input_doc)

    def run(self, entry_point: str, input_json: bytes) -> Any:
        """The value of ``entry_point`` for the input ``input_json`` (canonical JSON bytes).
        Undefined raises UndefinedDecision; any failure raises EngineError."""
        if entry_point in self.missing:
            raise UndefinedDecision(f"{entry_point} is undefined: the policy produced no decision")
        started = time.monotonic()
        text = input_json.decode("utf-8")
        try:
            self._vm.set_input_json(text)
        except Exception as exc:  # noqa: BLE001 - the gate's input is JSON; anything else is a deny
            raise EngineError(f"policy evaluation failed: the input is not JSON the engine reads: {one_line_error(exc)}") from None

        def evaluate() -> str:
            return self._execute(entry_point)

        deadline = bool(self.timeout_s) and hasattr(os, "fork")
        try:
            out = evaluate_with_deadline(evaluate, self.timeout_s) if deadline else evaluate()
        except EngineError as exc:
            if _CAP not in str(exc):
                raise
            out = self._fallback(entry_point, text, started)
        else:
            # The VM reads a builtin error as undefined (OPA and the tree-walker raise) and an
            # undefined value can reach the answer ("<undefined>"): such an answer is never used;
            # the tree-walker decides, raising where OPA raises.
            if _LEAK in out:
                out = self._fallback(entry_point, text, started)
        return _value(out, entry_point)

    def _execute(self, entry_point: str) -> str:
        try:
            return self._vm.execute_entry_point(entry_point)
        except Exception as exc:  # noqa: BLE001 - any engine failure is a deny
            raise EngineError(f"policy evaluation failed: {one_line_error(exc)}") from None

    def _fallback(self, entry_point: str, input_text: str, started: float) -> str:
        """The same entry point on the tree-walker, within what is left of the deadline."""
        self.fallbacks += 1
        engine = self.interpreter.raw
        engine.set_input_json(input_text)

        def evaluate() -> str:
            try:
                return engine.eval_rule_as_json(entry_point)
            except Exception as exc:  # noqa: BLE001
                if "not a valid rule path" in str(exc):
                    return json.dumps(_UNDEFINED_RULE)
                raise EngineError(f"policy evaluation failed: {one_line_error(exc)}") from None

        if self.timeout_s and hasattr(os, "fork"):
            late = EngineError(f"policy evaluation exceeded the {self.timeout_s:g} s deadline")
            left = self.timeout_s - (time.monotonic() - started)
            if left <= 0:
                raise late
            try:
                return evaluate_with_deadline(evaluate, left)
            except EngineError as exc:
                if "s deadline" in str(exc) and str(exc).startswith("policy evaluation exceeded"):
                    raise late from None
                raise
        return evaluate()


_NO_RULE = "not a valid rule path"  # the compiler's words for an entry point the policy lacks
_UNDEFINED_RULE = "<undefined>"  # what regorus's eval_rule_as_json gives for an undefined rule
_LEAK = '"<undefined>"'  # an undefined value inside the VM's JSON answer



def _value(text: str, entry_point: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:  # pragma: no cover - the engine's output is JSON
        raise EngineError(f"engine returned invalid JSON: {exc}") from None
    # The VM answers JSON null for an undefined entry point; the tree-walker "<undefined>".
    # A decision (and each document the time split reads) is an object, never either.
    if value is None or value == _UNDEFINED_RULE:
        raise UndefinedDecision(f"{entry_point} is undefined: the policy produced no decision")
    return value

