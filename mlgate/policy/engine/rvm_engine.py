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
import threading
import time
from collections import OrderedDict
from typing import Any

from mlgate.canonical import canonical_json
from mlgate.errors import EngineError, PolicyError, UndefinedDecision
from mlgate.policy.engine.deadline import evaluate_with_deadline
from mlgate.policy.engine.protocol import DECISION_PATH
from mlgate.policy.engine.regorus_engine import engine_version
from mlgate.policy.policyset import PolicySet
from mlgate.policy.rego_ast import load_regorus, one_line_error
from mlgate.policy.timesplit import CACHE_KEY, INPUT_KEY, TIMED_INPUT_KEYS
from mlgate.policy.timesplit import static_key as timesplit_key

#: what the VM says when a run reaches its fixed instruction cap (regorus 0.13: 25,000)
_CAP = "exceeded maximum instruction limit"


class RvmEngine:
    name = "regorus-rvm"

    #: decide() takes the input document already serialised (the gate serialises it once, for its digest too)
    takes_input_json = True

    def __init__(self, policy: PolicySet, *, timeout_s: float = 10.0, entry_points: tuple[str, ...] = (DECISION_PATH,),
                 extra_modules: tuple[tuple[str, str], ...] = (), time_split: bool = False, cache_size: int = 1024):
        regorus = load_regorus()
        self.version = engine_version()
        self.timeout_s = timeout_s
        self.fallbacks = 0
        #: the time split (:mod:`mlgate.policy.timesplit`): static findings cached per static input key
        self.split = None
        self.static_hits = self.static_misses = 0
        self.decided_whole = False  # the last decide(): the tree-walker decided it whole, over the policy as written
        self._static: OrderedDict[str, str] = OrderedDict()  # static key -> the static findings' JSON
        self._origins: dict[str, dict[str, Any]] = {}  # static key -> the summary its findings came from (seed_static)
        self._cache_size = cache_size
        self._data_key: tuple[str, bool] | None = None  # (static key, with its findings) the VM's data holds now
        self._static_input: tuple[str | None, str] = (None, "")  # (static key, the input less its per-decision keys, JSON)
        modules = [(m.path, m.text) for m in policy.decision_modules()] + list(extra_modules)
        _refuse_recursion(policy, modules)
        if time_split and tuple(entry_points) == (DECISION_PATH,) and not extra_modules:
            self.split = _split_of(policy)
            if self.split.useful:
                modules = list(self.split.modules)
                entry_points = (DECISION_PATH, *self.split.static_entries)
            else:
                self.split = None
        self.entry_points = tuple(entry_points)
        data_json = json.dumps(policy.data)
        self._data_json = data_json
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

    @property
    def takes_static_key(self) -> bool:
        """decide() takes the input's static key (:func:`mlgate.policy.timesplit.static_key`)."""
        return self.split is not None

    def decide(self, input_doc: dict[str, Any], input_json: bytes | None = None, static_key: str | None = None) -> Any:
        """The value of ``data.mlgate.decision``. With the time split, the findings of the rules
        that do not read the time come from the cache for the input's static key (computed with
        this input on a miss, and kept), and only the rest is evaluated. Where the split allows it
        (``reuses_input``), the input less its per-decision keys sits in the VM's data, set when
        the static key changes, and the input the VM parses per decision is only the time and the
        request."""
        input_json = input_json if input_json is not None else canonical_json(input_doc)
        self.decided_whole = False  # set when the tree-walker decides this input whole (no cached findings used)
        if self.split is None or not isinstance(input_doc, dict):
            return self.run(DECISION_PATH, input_json)
        if static_key is None:
            static_key = timesplit_key(input_doc)
        vm_input = input_json
        if self.split.reuses_input:
            vm_input = canonical_json({k: input_doc[k] for k in TIMED_INPUT_KEYS if k in input_doc})
        if static_key not in self._static:
            self.static_misses += 1
            self._set_data(static_key, input_doc, findings=False)
            static = self._static_findings(vm_input, input_json)
            if static is _FELL_BACK:  # the VM could not answer this input: the tree-walker decides it whole
                return _value(self._fallback(DECISION_PATH, input_json.decode("utf-8"), time.monotonic()), DECISION_PATH)
            self._static[static_key] = static
            self._origins.pop(static_key, None)
            while len(self._static) > self._cache_size:
                old, _ = self._static.popitem(last=False)
                self._origins.pop(old, None)
        else:
            self.static_hits += 1
            self._static.move_to_end(static_key)
        self._set_data(static_key, input_doc, findings=True)
        return self.run(DECISION_PATH, vm_input, whole_input=input_json)

    def _static_findings(self, vm_input: bytes, input_json: bytes) -> Any:
        """The static findings (JSON ``{"violations": [...], "warnings": [...]}``), each rule package's
        evaluated on its own (the VM's instruction cap applies per run); ``_FELL_BACK`` where the VM
        cannot answer one."""
        found: dict[str, dict[str, Any]] = {"violations": {}, "warnings": {}}
        for entry in self.split.static_entries:
            out = self.run(entry, vm_input, fallback=False, whole_input=input_json)
            if out is _FELL_BACK:
                return _FELL_BACK
            if not isinstance(out, list):
                raise EngineError(f"policy evaluation failed: {entry} is not a set of findings")
            bucket = found["violations" if entry.endswith(".violation") else "warnings"]
            for finding in out:  # a set: the same finding from two packages is one
                bucket.setdefault(canonical_json(finding).decode("utf-8"), finding)
        return canonical_json({kind: [items[k] for k in sorted(items)] for kind, items in found.items()}).decode("utf-8")

    def static_findings(self, key: str) -> str | None:
        """The cached time-independent findings of a static key (JSON), if any."""
        return self._static.get(key)

    def static_origin(self, key: str) -> dict[str, Any] | None:
        """Where the cached findings of ``key`` came from when not from this engine (a verification summary's record)."""
        return self._origins.get(key) if key in self._static else None

    def drop_static(self, key: str) -> None:
        """Forget the cached findings of ``key`` (a summary they came from no longer applies)."""
        self._static.pop(key, None)
        self._origins.pop(key, None)
        if self._data_key is not None and self._data_key[0] == key:
            self._data_key = None

    def seed_static(self, key: str, findings: dict[str, Any], origin: dict[str, Any]) -> None:
        """Take the time-independent findings of ``key`` from elsewhere (a verified summary made by
        ``mlgate check --attest`` for the same input under the same policy) instead of evaluating them."""
        if self.split is None:
            return
        violations, warnings = findings.get("violations"), findings.get("warnings")
        if not isinstance(violations, list) or not isinstance(warnings, list):
            raise EngineError("the summary's static findings are not lists of findings")
        text = canonical_json({"violations": violations, "warnings": warnings}).decode("utf-8")
        if self._static.get(key) != text and self._data_key is not None and self._data_key[0] == key:
            self._data_key = None  # the VM's data holds the findings this replaces
        self._static[key] = text
        self._static.move_to_end(key)
        self._origins[key] = dict(origin)
        while len(self._static) > self._cache_size:
            old, _ = self._static.popitem(last=False)
            self._origins.pop(old, None)

    def _set_data(self, key: str, input_doc: dict[str, Any], *, findings: bool) -> None:
        """The VM's data: the policy's, with the input less its per-decision keys (where the split
        reuses it) and the static findings of ``key`` (``findings``); not set again when that is
        what it holds."""
        if (key, findings) == self._data_key:
            return
        extra = []
        if self.split.reuses_input:
            if self._static_input[0] != key:
                self._static_input = (key, canonical_json({k: v for k, v in input_doc.items() if k not in TIMED_INPUT_KEYS}).decode("utf-8"))
            extra.append(json.dumps(INPUT_KEY) + ":" + self._static_input[1])
        if findings:
            extra.append(json.dumps(CACHE_KEY) + ":" + self._static[key])
        data = self._data_json
        if extra:
            data = data[:-1] + ("," if data != "{}" else "") + ",".join(extra) + "}"
        self._data_key = None
        try:
            self._vm.set_data_json(data)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"policy evaluation failed: cannot set the cached findings: {one_line_error(exc)}") from None
        self._data_key = (key, findings)

    def eval_json(self, query: str, input_doc: dict[str, Any] | None) -> Any:
        """Any other query (``mlgate monitor``'s ``data.mlgate.monitoring.decision``, the policy
        tools): the tree-walker over the same policy, which the VM falls back to anyway. Only the
        compiled entry points run on the VM."""
        return self.interpreter.eval_json(query, input_doc)

    def run(self, entry_point: str, input_json: bytes, *, fallback: bool = True, whole_input: bytes | None = None) -> Any:
        """The value of ``entry_point`` for the input ``input_json`` (canonical JSON bytes).
        Undefined raises UndefinedDecision; any failure raises EngineError. Where the VM cannot
        answer (its instruction cap, an undefined value in the answer) the tree-walker does, over
        the policy as written, with ``whole_input`` where the VM was given only part of it (the
        time split); ``fallback=False`` returns ``_FELL_BACK`` there instead."""
        if entry_point in self.missing:
            raise UndefinedDecision(f"{entry_point} is undefined: the policy produced no decision")
        started = time.monotonic()
        text = input_json.decode("utf-8")
        try:
            self._vm.set_input_json(text)
        except Exception as exc:  # noqa: BLE001 - the gate's input is JSON; anything else is a deny
            raise EngineError(f"policy evaluation failed: the input is not JSON the engine reads: {one_line_error(exc)}") from None
        if whole_input is not None:
            text = whole_input.decode("utf-8")  # what the tree-walker reads, where it decides

        def evaluate() -> str:
            return self._execute(entry_point)

        deadline = bool(self.timeout_s) and hasattr(os, "fork")
        try:
            out = evaluate_with_deadline(evaluate, self.timeout_s) if deadline else evaluate()
        except EngineError as exc:
            if _CAP not in str(exc):
                raise
            if not fallback:
                return _FELL_BACK
            out = self._fallback(entry_point, text, started)
        else:
            # The VM reads a builtin error as undefined (OPA and the tree-walker raise) and an
            # undefined value can reach the answer ("<undefined>"): such an answer is never used;
            # the tree-walker decides, raising where OPA raises.
            if _LEAK in out:
                if not fallback:
                    return _FELL_BACK
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
        self.decided_whole = True
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


_FELL_BACK = object()  # run(..., fallback=False): the VM could not answer
_NO_RULE = "not a valid rule path"  # the compiler's words for an entry point the policy lacks
_UNDEFINED_RULE = "<undefined>"  # what regorus's eval_rule_as_json gives for an undefined rule
_LEAK = '"<undefined>"'  # an undefined value inside the VM's JSON answer


_RECURSION_CACHE = "rule-cycles-v2"


def _refuse_recursion(policy: PolicySet, modules: list[tuple[str, str]]) -> None:
    """Refuse, at load, rules that depend on themselves: Rego forbids it (OPA refuses it at compile
    time), and the VM of regorus 0.13 does not check it but overflows its native stack on the first
    evaluation, killing the process (every gate thread of a webhook). A clean answer is remembered
    per policy text (:mod:`mlgate.localcache`); a forged one could only let such a policy load, and
    the parse costs every start ~0.1 s."""
    from mlgate.policy.rego_ast import remembered
    from mlgate.policy.timesplit import rule_cycles

    def compute() -> tuple[list[str], bool]:
        cycles = rule_cycles(list(policy.decision_modules()), policy.root)
        return cycles, not cycles  # only a clean answer is remembered

    cycles = remembered(_RECURSION_CACHE, modules, compute, lambda found: found == [])
    if cycles:
        more = f" (and {len(cycles) - 1} more)" if len(cycles) > 1 else ""
        raise PolicyError(f"{cycles[0]}: rules that depend on themselves (recursion, which Rego forbids){more}")


_SPLITS_LOCK = threading.Lock()
_SPLITS: dict[str, Any] = {}  # policy text digest -> its Split (each gate thread builds an engine of the same policy)


def _split_of(policy: PolicySet) -> Any:
    from mlgate.canonical import sha256_hex
    from mlgate.policy.compose import GENERATED_PATH
    from mlgate.policy.timesplit import split

    modules = policy.decision_modules()
    key = sha256_hex(canonical_json([[m.path, m.text] for m in modules] + [sorted(policy.data)]))
    with _SPLITS_LOCK:  # every gate thread builds an engine of the same policy, at start and at each policy switch
        found = _SPLITS.get(key)
        if found is None:
            found = split(list(modules), policy.data, GENERATED_PATH, engine=f"regorus-rvm {engine_version()}")
            _SPLITS.clear()  # one policy at a time (a webhook's refresh replaces it)
            _SPLITS[key] = found
        return found


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

