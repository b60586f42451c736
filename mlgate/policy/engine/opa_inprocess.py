"""Real OPA in-process: the reference semantics the embedded engines are checked against.

OPA v1.20 built as a Go c-shared library, from the PyPI wheel ``opa-golib-python-bindings``
(module ``opa_bindings``). The wheel declares Python >= 3.14 but works on 3.11; it is installed
the way ``.ci/run`` does it::

    pip download --no-deps --python-version 3.14 --only-binary :all: opa-golib-python-bindings==0.4.4 -d DIR
    pip install --ignore-requires-python DIR/*.whl

Not an ``--engine`` choice: the gate's engines are regorus (fast) and an OPA server (REST). This
one is what the tests use as the reference (``tests/test_opa_reference.py``) and what the REST
test server (``tests/opa_rest_server.py``) evaluates with. What it answers, measured on 0.4.4:

- builtin errors are strict (``to_number("x")``, ``object.get`` on a non-object are evaluation
  errors, as in regorus), raised here as :class:`~mlgate.errors.EngineError`;
- an undefined document raises :class:`~mlgate.errors.UndefinedDecision`;
- ``input=None`` evaluates with no input document at all (not JSON ``null``);
- each distinct query is prepared once per engine (about 0.3-0.4 s for the bundled library, the
  compile of every module), then costs milliseconds: evaluate a whole package document to read
  many rules at once (:meth:`OpaInProcessEngine.eval_document`).
- ``not f(x)`` where ``x`` is undefined is undefined, not true (regorus and rego-cpp read it as
  true); the library avoids the form (``policies/mlgate/lib/lib.rego``, ``env_known``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mlgate.errors import EngineError, PolicyError, UndefinedDecision
from mlgate.policy.engine.protocol import DECISION_PATH
from mlgate.policy.policyset import Module, PolicySet

NAME = "opa-inprocess"
PACKAGE = "opa-golib-python-bindings"
INSTALL_HINT = (
    "pip download --no-deps --python-version 3.14 --only-binary :all: opa-golib-python-bindings==0.4.4 -d DIR "
    "&& pip install --ignore-requires-python DIR/*.whl"
)


def _bindings() -> Any:
    try:
        import opa_bindings
    except ImportError:
        raise PolicyError(f"real OPA in-process needs the {PACKAGE} wheel (module opa_bindings): {INSTALL_HINT}") from None
    return opa_bindings


def available() -> bool:
    try:
        _bindings()
    except PolicyError:
        return False
    return True


@cache
def opa_version() -> str:
    """The OPA version compiled into the wheel's library (``1.20.2``), read from its Go module info."""
    from pathlib import Path

    lib = Path(_bindings().__file__).parent / "libopabridge.so"
    marker = b"github.com/open-policy-agent/opa\tv"
    try:
        blob = lib.read_bytes()
    except OSError:  # pragma: no cover - a wheel laid out differently
        return "unknown"
    at = blob.find(marker)
    if at < 0:
        alt = b"open-policy-agent/opa@v"
        at = blob.find(alt)
        if at < 0:
            return "unknown"
        at += len(alt)
    else:
        at += len(marker)
    end = at
    while end < len(blob) and blob[end : end + 1] in b"0123456789.":
        end += 1
    return blob[at:end].decode("ascii").rstrip(".") or "unknown"


def bindings_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _path(query: str) -> str:
    """``data.mlgate.decision`` -> ``mlgate.decision`` (the document path eval_document takes)."""
    if query == "data":
        return ""
    if not query.startswith("data."):
        raise PolicyError(f"{query!r} is not a data document path (expected data.<package>.<rule>)")
    return query[len("data."):]


class OpaInProcessEngine:
    """OPA evaluating a policy set in this process. Thread-safe: the bindings serialise evaluations."""

    name = NAME

    def __init__(self, policy: PolicySet, *, include_tests: bool = False):
        bindings = _bindings()
        self._errors = (bindings.OpaError,)
        self._undefined = bindings.OpaUndefinedError
        self.version = opa_version()
        self._engine = bindings.OpaEngine()
        self._engine.print_handler = lambda message, location: None
        modules: tuple[Module, ...] = policy.modules if include_tests else policy.decision_modules()
        for module in modules:
            try:
                self._engine.add_policy(module.path, module.text)
            except bindings.OpaError as exc:
                raise PolicyError(f"cannot load policy in OPA: {_one_line(exc)}", file=module.path) from None
        try:
            self._engine.add_data(policy.data)
        except bindings.OpaError as exc:
            raise PolicyError(f"cannot load policy data in OPA: {_one_line(exc)}") from None

    def eval_document(self, query: str, input_doc: Any = None) -> Any:
        """The value of the document ``query`` (``data.a.b``). ``input_doc=None``: no input at all.

        Undefined raises UndefinedDecision; a compile or evaluation error raises EngineError
        (a module OPA cannot compile surfaces on the first evaluation: OPA compiles lazily)."""
        try:
            return self._engine.eval_document(_path(query), input_doc)
        except self._undefined:
            raise UndefinedDecision(f"{query} is undefined: the policy produced no decision") from None
        except self._errors as exc:
            raise EngineError(f"policy evaluation failed (OPA {self.version}): {_one_line(exc)}") from None

    def eval_json(self, query: str, input_doc: Any) -> Any:
        """As the other engines' ``eval_json``: ``{}`` stands for an empty input, None for none."""
        return self.eval_document(query, input_doc)

    def decide(self, input_doc: dict[str, Any], input_json: bytes | None = None) -> Any:
        return self.eval_document(DECISION_PATH, input_doc)

    def close(self) -> None:
        self._engine.close()


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:500]
