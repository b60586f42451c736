"""``mlgate policy test``: run the Rego unit tests beside the policies, with line coverage.

A test is any rule whose name starts with ``test_`` (as ``opa test`` finds them). It passes
only when it evaluates to a literal ``true``: undefined, ``false`` or any other value fails,
and an evaluation error is reported as an error of that test (OPA's ``ResultSet.Allowed``
habit: only a literal true counts). No test found is an error, never a pass.

Coverage is the engine's own report (regorus ``get_coverage_report_as_json``) after every test
has run: per file, the lines of rule bodies that were evaluated and those that never were.
The total is taken over the policy modules (``*_test.rego`` excluded), so tests cannot raise
the number by covering themselves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgate.errors import PolicyError
from mlgate.policy import PolicySet, load_policy
from mlgate.policy.rego_ast import ParsedPolicy, parse, new_raw_engine
from mlgate.safeio import display

PASS, FAIL, ERROR = "pass", "fail", "error"


@dataclass(frozen=True)
class RegoTest:
    file: str  # as displayed (relative to the working directory)
    path: str  # relative to the policy root
    line: int
    package: str
    name: str

    @property
    def query(self) -> str:
        return f"data.{self.package}.{self.name}"

    @property
    def id(self) -> str:
        return f"{self.package}.{self.name}"


@dataclass(frozen=True)
class TestResult:
    test: RegoTest
    status: str  # pass | fail | error
    detail: str  # why it failed ("" on pass)
    duration_s: float


@dataclass(frozen=True)
class FileCoverage:
    file: str
    path: str
    is_test: bool
    covered: tuple[int, ...]
    not_covered: tuple[int, ...]

    @property
    def percent(self) -> float:
        total = len(self.covered) + len(self.not_covered)
        return 100.0 * len(self.covered) / total if total else 100.0


@dataclass(frozen=True)
class Coverage:
    files: tuple[FileCoverage, ...]

    @property
    def policy_files(self) -> tuple[FileCoverage, ...]:
        return tuple(f for f in self.files if not f.is_test)

    @property
    def covered_lines(self) -> int:
        return sum(len(f.covered) for f in self.policy_files)

    @property
    def total_lines(self) -> int:
        return sum(len(f.covered) + len(f.not_covered) for f in self.policy_files)

    @property
    def percent(self) -> float:
        return 100.0 * self.covered_lines / self.total_lines if self.total_lines else 100.0


@dataclass(frozen=True)
class TestRun:
    root: str
    results: tuple[TestResult, ...]
    coverage: Coverage | None = None
    threshold: float | None = None
    duration_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.status == PASS for r in self.results)

    @property
    def below_threshold(self) -> bool:
        return self.coverage is not None and self.threshold is not None and self.coverage.percent < self.threshold

    @property
    def exit_code(self) -> int:
        return 0 if self.passed and not self.below_threshold else 1


def discover(parsed: ParsedPolicy) -> list[RegoTest]:
    """Every ``test_*`` rule, once per package and name, at its first definition."""
    found: dict[tuple[str, str], RegoTest] = {}
    for module in parsed.modules:
        for rule in module.rules:
            if not rule.name.startswith("test_") or rule.kind == "Func":
                continue
            key = (module.package, rule.name)
            if key not in found or (module.path, rule.line) < (found[key].path, found[key].line):
                found[key] = RegoTest(module.display, module.path, rule.line, module.package, rule.name)
    return sorted(found.values(), key=lambda t: (t.path, t.line, t.name))


def _run_one(engine: Any, test: RegoTest, shown: dict[str, str]) -> TestResult:
    from mlgate.policy.engine.regorus_engine import one_line_error

    started = time.perf_counter()
    try:
        raw = engine.eval_rule_as_json(test.query)
    except Exception as exc:  # noqa: BLE001 - the engine raises RuntimeError/ValueError alike
        detail = one_line_error(exc)
        path = detail.split(":", 1)[0]
        if path in shown:  # the engine names files relative to the policy root
            detail = shown[path] + detail[len(path):]
        return TestResult(test, ERROR, detail, time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    value = json.loads(raw)
    if value is True:
        return TestResult(test, PASS, "", elapsed)
    shown = "undefined" if value == "<undefined>" else json.dumps(value)[:200]
    return TestResult(test, FAIL, f"{test.name} is {shown}, expected true", elapsed)


def coverage_of(engine: Any, parsed: ParsedPolicy) -> Coverage:
    report = json.loads(engine.get_coverage_report_as_json())
    known = {m.path: m for m in parsed.modules}
    files = []
    for item in report.get("files", []):
        module = known.get(item["path"])
        files.append(
            FileCoverage(
                file=module.display if module else item["path"],
                path=item["path"],
                is_test=module.is_test if module else item["path"].endswith("_test.rego"),
                covered=tuple(sorted(set(item.get("covered", [])))),
                not_covered=tuple(sorted(set(item.get("not_covered", [])))),
            )
        )
    return Coverage(tuple(sorted(files, key=lambda f: f.path)))


def run_tests(
    root: Path | None = None,
    *,
    policy: PolicySet | None = None,
    coverage: bool = False,
    threshold: float | None = None,
    run: str | None = None,
) -> TestRun:
    """Load the policy directory, run every test (or those whose id contains ``run``)."""
    started = time.perf_counter()
    policy = policy if policy is not None else load_policy(root)
    engine = new_raw_engine(policy, coverage=coverage or threshold is not None)
    parsed = parse(policy, engine)
    tests = discover(parsed)
    if not tests:
        raise PolicyError("no Rego tests found (expected test_* rules, e.g. in *_test.rego)", file=display(policy.root))
    if run:
        tests = [t for t in tests if run in t.id]
        if not tests:
            raise PolicyError(f"no Rego test matches {run!r}", file=display(policy.root))
    engine.set_input_json("{}")
    shown = {m.path: m.display for m in parsed.modules}
    results = tuple(_run_one(engine, t, shown) for t in tests)
    cov = coverage_of(engine, parsed) if (coverage or threshold is not None) else None
    counts = {s: sum(1 for r in results if r.status == s) for s in (PASS, FAIL, ERROR)}
    return TestRun(display(policy.root), results, cov, threshold, time.perf_counter() - started, counts)


# --- the same tests on real OPA (the reference) ------------------------------------------------


def run_tests_on_opa(root: Path | None = None, *, policy: PolicySet | None = None, run: str | None = None) -> TestRun:
    """Run every test (or those whose id contains ``run``) on real OPA in-process
    (:mod:`mlgate.policy.engine.opa_inprocess`), judged as :func:`run_tests` judges them: a test
    passes only on a literal ``true``; the input is ``{}`` as there. No coverage.

    OPA prepares each distinct query once (about 0.3 s for the bundled library), so each test
    package is evaluated as one document and its ``test_*`` values read from it; a package whose
    document raises (an evaluation error in one of its rules) is run again test by test, so the
    error is reported against the test that raised it."""
    from mlgate.errors import EngineError, UndefinedDecision
    from mlgate.policy.engine.opa_inprocess import OpaInProcessEngine

    started = time.perf_counter()
    policy = policy if policy is not None else load_policy(root)
    tests = discover(parse(policy))
    if not tests:
        raise PolicyError("no Rego tests found (expected test_* rules, e.g. in *_test.rego)", file=display(policy.root))
    if run:
        tests = [t for t in tests if run in t.id]
        if not tests:
            raise PolicyError(f"no Rego test matches {run!r}", file=display(policy.root))
    engine = OpaInProcessEngine(policy, include_tests=True)
    by_package: dict[str, list[RegoTest]] = {}
    for test in tests:
        by_package.setdefault(test.package, []).append(test)
    done: dict[str, TestResult] = {}
    for package, members in by_package.items():
        t0 = time.perf_counter()
        try:
            document = engine.eval_document(f"data.{package}", {})
        except (EngineError, UndefinedDecision):
            document = None
        if isinstance(document, dict):
            each = (time.perf_counter() - t0) / len(members)
            for test in members:
                done[test.id] = _judge(test, document.get(test.name, _ABSENT), each)
            continue
        for test in members:  # one by one: which test raised
            t1 = time.perf_counter()
            try:
                value = engine.eval_document(test.query, {})
            except UndefinedDecision:
                value = _ABSENT
            except EngineError as exc:
                done[test.id] = TestResult(test, ERROR, exc.message, time.perf_counter() - t1)
                continue
            done[test.id] = _judge(test, value, time.perf_counter() - t1)
    engine.close()
    results = tuple(done[t.id] for t in tests)
    counts = {s: sum(1 for r in results if r.status == s) for s in (PASS, FAIL, ERROR)}
    return TestRun(display(policy.root), results, None, None, time.perf_counter() - started, counts)


_ABSENT = object()


def _judge(test: RegoTest, value: Any, elapsed: float) -> TestResult:
    if value is True:
        return TestResult(test, PASS, "", elapsed)
    shown = "undefined" if value is _ABSENT else json.dumps(value)[:200]
    return TestResult(test, FAIL, f"{test.name} is {shown}, expected true", elapsed)


# --- line ranges for people -------------------------------------------------------------------


def ranges(lines: tuple[int, ...]) -> str:
    """(3, 4, 5, 9) -> "3-5, 9"."""
    out: list[str] = []
    start = prev = None
    for n in lines:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = n
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ", ".join(out)
