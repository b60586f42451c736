"""Shared by the tests and benchmarks that hold the embedded engines to real OPA.

- :func:`require_opa`: real OPA in-process (``opa_bindings``) or, outside CI, a skip that names
  the missing package; under ``CI`` a missing OPA is a failure, never a silent skip.
- :func:`example_inputs`: the input document of every example release in staging and production,
  at the examples' fixed instant.
- :func:`mutations`: a seeded generator of input documents derived from those (fields dropped,
  values of the wrong type, more subgroups, more approvals, waivers, times moved, environments
  swapped), the shapes a rule that relies on one engine's reading of a missing value trips on.
- :func:`outcome`: what an engine answers for a document, in a form to compare across engines
  (the decision with its findings in a stable order, or the fact that it raised).
"""

from __future__ import annotations

import copy
import json
import os
import random
from typing import Any, Callable, Iterator

import pytest

ENVIRONMENTS = ("staging", "production")
OPA_PACKAGE = "opa-golib-python-bindings"


def require_opa() -> None:
    from mlgate.policy.engine.opa_inprocess import INSTALL_HINT, available

    if available():
        return
    message = f"real OPA in-process needs the {OPA_PACKAGE} wheel (module opa_bindings): {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and OPA, the reference, is missing: {message}", pytrace=False)
    pytest.skip(message)


def example_inputs() -> dict[tuple[str, str], dict[str, Any]]:
    from conftest import EXAMPLES, EXAMPLES_NOW

    from mlgate import evidence
    from mlgate.gate import GateOptions, prepare
    from mlgate.inputdoc import Request, build_input
    from mlgate.manifest import load_release

    releases = sorted(p.name for p in EXAMPLES.iterdir() if (p / "mlgate.yaml").is_file())
    docs = {}
    for env in ENVIRONMENTS:
        prepared = prepare(GateOptions(environment=env))
        for release in releases:
            rel = load_release(EXAMPLES / release)
            facts = evidence.collect(rel, prepared.trust)
            doc = build_input(release=rel, facts=facts, environment=env, now=EXAMPLES_NOW, request=Request(source="cli"))
            docs[(release, env)] = json.loads(json.dumps(doc))  # plain JSON types, as every engine reads them
    return docs


# --- outcomes -----------------------------------------------------------------------------------


def _finding_key(f: Any) -> str:
    return json.dumps(f, sort_keys=True)


def outcome(decide: Callable[[Any], Any], doc: Any) -> Any:
    """The decision in a comparable form, or ("error"|"undefined", kind) when the engine refused.

    Violations and warnings are sorted (the library orders them by id and message; an engine that
    iterates sets differently must still give the same findings). Both errors are a deny; whether
    an engine raises is compared, its wording is not (each engine words errors its own way)."""
    from mlgate.errors import EngineError, UndefinedDecision

    try:
        value = decide(doc)
    except UndefinedDecision:
        return ("undefined",)
    except EngineError:
        return ("error",)
    if not isinstance(value, dict):
        return ("value", value)
    out = dict(value)
    for key in ("violations", "warnings"):
        if isinstance(out.get(key), list):
            out[key] = sorted(out[key], key=_finding_key)
    return out


def summary(o: Any) -> str:
    """A short line for a mismatch report."""
    if isinstance(o, tuple):
        return o[0]
    ids = lambda k: sorted(f"{f.get('id')}" for f in o.get(k, []) if isinstance(f, dict))  # noqa: E731
    return f"allow={o.get('allow')} violations={ids('violations')} warnings={ids('warnings')}"


def first_difference(a: Any, b: Any) -> str:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return f"{summary(a)} | {summary(b)}"
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            left = {_finding_key(x) for x in a.get(key) or []} if isinstance(a.get(key), list) else {json.dumps(a.get(key))}
            right = {_finding_key(x) for x in b.get(key) or []} if isinstance(b.get(key), list) else {json.dumps(b.get(key))}
            return f"{key}: only first {sorted(left - right)[:2]}; only second {sorted(right - left)[:2]}"
    return "equal"


# --- the generator ------------------------------------------------------------------------------

WRONG_TYPES: list[Any] = [None, "", "x", 0, -1, 1.5, 10**19, True, False, [], [1], {}, {"a": 1}]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append(prefix + (key,))
        out += _paths(value, prefix + (key,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _parent(doc: Any, path: tuple) -> tuple[Any, Any]:
    return _get(doc, path[:-1]), path[-1]


def _drop(rng: random.Random, doc: dict) -> str:
    path = rng.choice(_paths(doc))
    parent, key = _parent(doc, path)
    del parent[key]
    return f"drop {'/'.join(map(str, path))}"


def _retype(rng: random.Random, doc: dict) -> str:
    path = rng.choice(_paths(doc))
    parent, key = _parent(doc, path)
    value = rng.choice([v for v in WRONG_TYPES if type(v) is not type(parent[key]) or v != parent[key]])
    parent[key] = copy.deepcopy(value)
    return f"retype {'/'.join(map(str, path))}={json.dumps(value)}"


def _evidence(doc: dict, kind: str) -> dict | None:
    ev = doc.get("evidence")
    block = ev.get(kind) if isinstance(ev, dict) else None
    return block if isinstance(block, dict) else None


def _more_subgroups(rng: random.Random, doc: dict) -> str:
    audit = _evidence(doc, "bias_audit")
    if not audit or not isinstance(audit.get("groups"), list) or not isinstance(audit.get("comparisons"), list) or not audit["comparisons"]:
        return _retype(rng, doc)
    n = rng.randint(1, 6)
    for i in range(n):
        comparison = copy.deepcopy(rng.choice(audit["comparisons"]))
        if not isinstance(comparison, dict):
            continue
        name = f"g{rng.randint(0, 99)}"
        comparison["group"] = name
        gap = round(rng.uniform(-0.1, 0.3), 3)
        comparison.update({
            "gap": gap, "gap_ci_low": round(gap - rng.uniform(0, 0.1), 3), "gap_ci_high": round(gap + rng.uniform(0, 0.1), 3),
            "p_holm": rng.choice([1.0, 0.5, 0.049, 0.01, 2e-05, 5.44e-33, 0.0009995]),
        })
        audit["comparisons"].append(comparison)
        group = next((copy.deepcopy(g) for g in audit["groups"] if isinstance(g, dict)), None)
        if group is not None and rng.random() < 0.8:
            group["group"] = name
            group["attribute"] = comparison.get("attribute", group.get("attribute"))
            group["trials"] = rng.choice([0, 5, 29, 30, 31, 200])
            group["insufficient"] = group["trials"] < 30 if rng.random() < 0.9 else rng.choice([True, False, None])
            audit["groups"].append(group)
    return f"{n} more subgroups"


def _more_approvals(rng: random.Random, doc: dict) -> str:
    block = _evidence(doc, "approvals")
    if not block or not isinstance(block.get("records"), list) or not block["records"]:
        return _drop(rng, doc)
    n = rng.randint(1, 5)
    now = doc.get("evaluated_at_ns") if isinstance(doc.get("evaluated_at_ns"), int) else 1795946400000000000
    day = 86400 * 10**9
    for _ in range(n):
        record = copy.deepcopy(rng.choice(block["records"]))
        if not isinstance(record, dict):
            continue
        who = rng.choice(["a.smith", "b.jones", "c.lee", "jane.roe", "john.doe", "ml-platform"])
        record["signer_id"] = f"{who}@hospital.example"
        record["printed_name"] = who.replace(".", " ").title()
        record["path"] = f"evidence/approvals/{who}-{rng.randint(0, 9)}.json"
        record["role"] = rng.choice(["quality-assurance", "clinical-safety-officer", "data-scientist", record.get("role")])
        record["meaning"] = rng.choice(["review", "approval", "responsibility", "authorship"])
        if rng.random() < 0.3:
            record["verified"] = rng.choice([False, "true", None])
        if rng.random() < 0.3:
            record["signed_at_ns"] = now + rng.choice([-400, -30, -1, 0, 1]) * day
        if rng.random() < 0.3:
            record["expires_at_ns"] = rng.choice([None, now - day, now, now + day])
        if rng.random() < 0.2:
            record["environment"] = rng.choice(["staging", "production", "dev"])
        block["records"].append(record)
    return f"{n} more approvals"


def _waiver(rng: random.Random, doc: dict) -> str:
    ev = doc.get("evidence")
    if not isinstance(ev, dict):
        return _retype(rng, doc)
    now = doc.get("evaluated_at_ns") if isinstance(doc.get("evaluated_at_ns"), int) else 1795946400000000000
    day = 86400 * 10**9
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    rules = rng.sample(["MLG-BIAS-001", "MLG-BIAS-002", "MLG-BIAS-005", "MLG-CARD-008", "MLG-APPR-004", "MLG-CFG-003", "MLG-DATA-007", "MLG-BIAS-007"], k=rng.randint(1, 3))
    record = {
        "path": f"evidence/waivers/w{rng.randint(0, 9)}.json", "digest": "0" * 64, "verified": True, "reason": None,
        "signer_id": "jane.roe@hospital.example", "printed_name": "Dr. Jane Roe", "role": "clinical-safety-officer",
        "role_authorised": True, "environment_authorised": True, "environment": doc.get("environment"),
        "subject_digest": model.get("digest"), "signed_at": "2026-11-28T09:00:00Z", "signed_at_ns": now - day,
        "expires_at": "2026-12-12T09:00:00Z", "expires_at_ns": now + 13 * day, "rules": rules,
        "justification": "re-run scheduled", "ticket": "CAPA-7", "release_binding": "bound", "release_changes": [],
    }
    for key in rng.sample(sorted(record), k=rng.choice([0, 0, 1, 2])):
        if rng.random() < 0.5:
            del record[key]
        else:
            record[key] = copy.deepcopy(rng.choice(WRONG_TYPES))
    block = ev.setdefault("waivers", {"present": True, "valid": True, "authenticated": True, "errors": [], "records": []})
    if isinstance(block, dict) and isinstance(block.get("records"), list):
        block["records"].append(record)
    return f"waiver for {rules}"


def _move_time(rng: random.Random, doc: dict) -> str:
    day = 86400 * 10**9
    if isinstance(doc.get("evaluated_at_ns"), int):
        doc["evaluated_at_ns"] += rng.choice([-3650, -400, -30, -1, 1, 30, 366, 3650]) * day
    return "move the evaluation time"


def _environment(rng: random.Random, doc: dict) -> str:
    doc["environment"] = rng.choice(["staging", "production", "dev", "qa", "", None, 1])
    return f"environment {doc['environment']!r}"


MUTATORS = [(_drop, 5), (_retype, 5), (_more_subgroups, 2), (_more_approvals, 2), (_waiver, 1), (_move_time, 1), (_environment, 1)]


def mutations(bases: list[dict[str, Any]], count: int, seed: int = 17) -> Iterator[tuple[str, dict[str, Any]]]:
    """``count`` documents, each an example input with 1 to 3 mutations; the same for a seed."""
    rng = random.Random(seed)
    funcs = [f for f, w in MUTATORS for _ in range(w)]
    for i in range(count):
        doc = copy.deepcopy(rng.choice(bases))
        steps = [rng.choice(funcs)(rng, doc) for _ in range(rng.choice([1, 1, 2, 3]))]
        yield f"#{i}: " + "; ".join(steps), doc
