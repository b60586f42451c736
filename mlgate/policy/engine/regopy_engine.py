"""The second embedded engine: Microsoft rego-cpp through ``regopy`` (``pip install 'mlgate[rego-cpp]'``).

For policies that need builtins regorus lacks (``io.jwt.*``, ``crypto.x509.*``). Measured on
regopy 1.5.2 (the version pinned by the extra), each trap handled or reported here
(``mlgate policy lint --engine rego-cpp`` names the place of each one it can see):

- ``some k, v in coll`` inside an array or set comprehension does not compile ("Invalid
  collection"); in a rule body or an object comprehension it does. The bundled library avoids it.
- ``with input as X`` does not compile once a rule it reaches calls any builtin ("shape
  `rego-localref` has no field `rego-refhead`"), nor does ``with ... as`` a reference ("shape
  `rego-with` has no field `rego-ref`"). rego-cpp answers both with no output at all, which
  regopy wraps so that reading it crashes the process: :func:`_checked_query` turns it into an
  error. Rego unit tests, which set their input that way, cannot run on this engine.
- the results of ``concat``, ``lower``, ``upper``, ``replace`` (and a few more) keep their quotes
  when ``sprintf`` formats them into a longer text, unescaped: the output is then not JSON, an
  engine error (a deny). ``trim_prefix(s, "")`` gives a plain string (``approvals.rego``).
- ``time.parse_rfc3339_ns`` is undefined for timestamps ending in ``Z`` (``+00:00`` works), and
  ``sprintf("%q", ...)`` returns ``%q`` literally: no error, a different answer. The lint warns
  at every such call under this engine.
- sets iterate in the order of the set literal, not sorted as in OPA and regorus (``[x | some x
  in {"b", "a"}]`` is ``["b", "a"]``), and ``sprintf("%v", 0.9 - 0.7)`` prints
  ``0.2000000000000001`` (regorus: ``0.20000000000000007``). Findings are sorted by
  :func:`mlgate.gate.decide`, so decisions do not depend on the first; a message that lists a set
  of objects does (MLG-APPR-004 with two or more effective approvals).
- ``sprintf("%.2e", [x])`` prints ``5.44e-33`` as OPA does, where regorus ignores the precision
  (``5.44034e-33``); ``lower`` and ``upper`` change ASCII letters only (``lower("É")`` is ``"É"``).
- builtin errors are undefined by default; ``strict_built_in_errors`` is switched on so that a
  failing builtin is an engine error (a deny), as with regorus.
- the native library prints compile errors to stderr unless the interpreter's log level is ``NONE``
  (set per interpreter: ``set_default_log_level`` aborts the process when called twice).
- what it lacks is asked of the engine itself (``Interpreter.is_builtin``): a policy calling a
  builtin it does not have is refused at load time.
- evaluation holds the GIL, so the deadline is enforced in a forked child, as for regorus.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from typing import Any

from mlgate.canonical import canonical_json
from mlgate.policy.engine.protocol import DECISION_PATH
from mlgate.policy.engine.deadline import evaluate_with_deadline
from mlgate.errors import EngineError, PolicyError, UndefinedDecision
from mlgate.policy.policyset import Module, PolicySet

NAME = "rego-cpp"
_ERROR_AT = re.compile(r"\(error \d+:(?P<file>[^|\s)]+)\|(?P<offset>\d+)\|")
_ERROR_MSG = re.compile(r"\(errormsg \d+:(?P<msg>[^)]*)\)")


def _regopy():
    try:
        import regopy
    except ImportError:
        raise PolicyError("--engine rego-cpp needs the rego-cpp extra: pip install 'mlgate[rego-cpp]'") from None
    return regopy


def available() -> bool:
    try:
        _regopy()
    except PolicyError:
        return False
    return True


def engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("regopy")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


@cache
def engine_has_builtin(name: str) -> bool:
    regopy = _regopy()
    return bool(regopy.Interpreter().is_builtin(name))


def _new_interpreter() -> Any:
    regopy = _regopy()
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE
    interp.strict_built_in_errors = True
    return interp


def one_line_error(text: str, modules: dict[str, str] | None = None) -> str:
    """rego-cpp errors are S-expressions with byte offsets; keep ``file:line:col: message``."""
    msg = _ERROR_MSG.search(text)
    message = msg.group("msg").strip() if msg else " ".join(text.split())[:300]
    at = _ERROR_AT.search(text)
    if at and modules and at.group("file") in modules:
        source = modules[at.group("file")].encode("utf-8")[: int(at.group("offset"))]
        line = source.count(b"\n") + 1
        col = len(source) - (source.rfind(b"\n") + 1) + 1
        return f"{at.group('file')}:{line}:{col}: {message}"
    if at:
        return f"{at.group('file')}: {message}"
    return message or "rego-cpp error"


class RegopyEngine:
    name = NAME

    def __init__(self, policy: PolicySet, *, timeout_s: float = 10.0, include_tests: bool = False):
        regopy = _regopy()
        self.version = engine_version()
        self.timeout_s = timeout_s
        self._interp = _new_interpreter()
        modules: tuple[Module, ...] = policy.modules if include_tests else policy.decision_modules()
        self._sources = {m.path: m.text for m in modules}
        for module in modules:
            try:
                self._interp.add_module(module.path, module.text)
            except regopy.RegoError as exc:
                raise PolicyError(f"cannot load policy in the rego-cpp engine: {one_line_error(str(exc), self._sources)}") from None
        try:
            self._interp.add_data_json(json.dumps(policy.data))
        except regopy.RegoError as exc:
            raise PolicyError(f"cannot load policy data in the rego-cpp engine: {one_line_error(str(exc))}") from None
        from mlgate.policy.rego_ast import builtin_calls, parse

        missing = sorted({(m.display, line, name) for m, line, name in builtin_calls(parse(policy)) if not engine_has_builtin(name)})
        if missing:
            file, line, name = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise PolicyError(f"{file}:{line}: builtin {name} is not available in the rego-cpp engine (regopy {self.version}){more}")
        # rego-cpp compiles lazily: compile now, so a module it cannot compile is a load error
        # (a PolicyError naming file and line), not an error on every decision.
        self._query("data.mlgate.__mlgate_compile_probe__")
        # A query compiles the policy again (about 0.1 s per decision for the bundled library);
        # the decision is evaluated from a bundle compiled once (about a quarter of that).
        # (regopy misses a NULL bundle as it misses a NULL output, see _checked_query)
        self._decision = self._interp.build(DECISION_PATH)
        if getattr(self._decision, "_impl", None) is None or not self._decision.ok():  # pragma: no cover - the probe compiled the same
            raise PolicyError("cannot load policy in the rego-cpp engine: it cannot build the decision")

    takes_input_json = True

    def eval_json(self, query: str, input_doc: dict[str, Any] | None, input_json: bytes | None = None) -> Any:
        """Evaluate ``query``; return its value. Undefined raises UndefinedDecision."""
        if input_doc is not None:
            try:
                self._interp.set_input_term((input_json if input_json is not None else canonical_json(input_doc)).decode("utf-8"))
            except Exception as exc:  # noqa: BLE001 - RegoError from the native side
                raise EngineError(f"rego-cpp refused the input document: {one_line_error(str(exc))}") from None
        text = evaluate_with_deadline(lambda: self._evaluate(query), self.timeout_s, engine="rego-cpp") if self.timeout_s and hasattr(os, "fork") else self._evaluate(query)
        return _value(text, query)

    def decide(self, input_doc: dict[str, Any], input_json: bytes | None = None) -> Any:
        return self.eval_json(DECISION_PATH, input_doc, input_json)

    def _query(self, query: str) -> str:
        regopy = _regopy()
        try:
            out = _checked_query(self._interp, query)
        except regopy.RegoError as exc:
            raise PolicyError(f"cannot load policy in the rego-cpp engine: {one_line_error(str(exc), self._sources)}") from None
        if not out.ok():
            raise PolicyError(f"cannot load policy in the rego-cpp engine: {one_line_error(str(out), self._sources)}")
        return str(out)

    def _evaluate(self, query: str) -> str:
        try:
            out = _checked_query(self._interp, query, self._decision if query == DECISION_PATH else None)
        except json.JSONDecodeError as exc:  # regopy parses the output itself
            raise EngineError(f"policy evaluation failed (rego-cpp): its output is not JSON ({exc}): a string with unescaped quotes, as sprintf "
                              "makes of a concat, lower or upper result there (see mlgate policy lint --engine rego-cpp)") from None
        except Exception as exc:  # noqa: BLE001 - any engine failure is a deny
            raise EngineError(f"policy evaluation failed (rego-cpp): {one_line_error(str(exc), self._sources)}") from None
        if not out.ok():
            detail = str(out)
            detail = "a builtin or runtime error (rego-cpp gives no detail)" if detail.strip() == "<error>" else one_line_error(detail, self._sources)
            raise EngineError(f"policy evaluation failed (rego-cpp): {detail}")
        return str(out)


def _checked_query(interp: Any, query: str, bundle: Any = None) -> Any:
    """``interp.query(query)`` (or the ``bundle`` built for it), raising ``RegoError`` where rego-cpp
    returns no output at all.

    rego-cpp answers some compile failures (the ``with input as ...`` ones of the module docstring)
    with a NULL output. regopy 1.5.2 tests that pointer against 0, but ctypes gives None, so it
    wraps the NULL in an ``Output`` whose ``str()`` crashes the process (SIGSEGV); the error text
    is the interpreter's.
    """
    regopy = _regopy()
    from regopy.rego_shared import rego_get_error

    out = interp.query(query) if bundle is None else interp.query_bundle(bundle)
    if getattr(out, "_impl", None) is None:
        raise regopy.RegoError(rego_get_error(interp._impl) or "rego-cpp returned no output")
    return out


def _value(text: str, query: str) -> Any:
    """rego-cpp's output: ``undefined``, ``{"expressions": [v]}`` or a list of such results."""
    if text.strip() == "undefined":
        raise UndefinedDecision(f"{query} is undefined: the policy produced no decision")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EngineError(f"rego-cpp returned output that is not JSON: {exc}") from None
    results = doc if isinstance(doc, list) else [doc]
    if not results or not isinstance(results[0], dict):
        raise UndefinedDecision(f"{query} is undefined: the policy produced no decision")
    expressions = results[0].get("expressions") or []
    if not expressions:
        raise UndefinedDecision(f"{query} is undefined: the policy produced no decision")
    return expressions[0]
