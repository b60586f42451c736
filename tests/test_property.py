"""Property: removing or corrupting any single piece of evidence never turns a deny into an allow,
and never crashes (the CLI answers 1 or 2, never a traceback)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import run
from conftest import EXAMPLES

DENIED = ("triage-acuity", "production")
ALLOWED = ("readmission-risk", "production")


def _leaf_paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,)
            yield from _leaf_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield prefix + (i,)
            yield from _leaf_paths(v, prefix + (i,))


def _files(release: Path, env: str, allowed: bool) -> list[str]:
    """What a mutation may hit. From a denied baseline: any file but the data tables. From an
    allowed one: what the decision for `env` rests on (model, its signature, evaluated evidence,
    this environment's approvals); a byte of free text elsewhere, such as the manifest's
    description or another environment's approval, may legitimately change nothing."""
    rels = sorted(p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file())
    if not allowed:
        return [r for r in rels if not r.endswith(".csv")]
    return [r for r in rels if r.startswith("model") or (r.startswith("evidence/") and
            (not r.startswith("evidence/approvals/") or f".{env}." in r))]


MUTATIONS = st.sampled_from(["delete_file", "flip_byte", "truncate", "drop_field", "retype_field"])
REPLACEMENTS = st.sampled_from([None, True, False, 0, -1, 1e308, "", "x", [], {}, "true"])


def _mutate(release: Path, data, env: str, allowed: bool) -> str:
    kind = data.draw(MUTATIONS)
    files = _files(release, env, allowed)
    target = release / data.draw(st.sampled_from(files))
    rel = target.relative_to(release).as_posix()
    if kind == "delete_file":
        target.unlink()
    elif kind == "flip_byte":
        raw = bytearray(target.read_bytes())
        if raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
            target.write_bytes(bytes(raw))
    elif kind == "truncate":
        raw = target.read_bytes()
        target.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))])
    elif allowed and (rel.endswith(".sigstore.json") or rel == "model.sig"):
        # Unsigned envelope metadata (the key hint, the empty tlog list) may be dropped without
        # changing what was signed; from an allowed baseline only byte-level damage counts there.
        return f"{kind} skipped ({rel} is a signed envelope)"
    else:
        try:
            doc = json.loads(target.read_text())
        except (ValueError, UnicodeDecodeError):
            return f"{kind} skipped ({rel} is not JSON)"
        paths = list(_leaf_paths(doc))
        if not paths:
            return f"{kind} skipped (empty)"
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        if kind == "drop_field":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(REPLACEMENTS)
        target.write_text(json.dumps(doc))
    return f"{kind} {rel}"


@pytest.mark.parametrize("baseline", [DENIED, ALLOWED], ids=["denied-baseline", "allowed-baseline"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_single_mutation_never_allows_and_never_crashes(tmp_path_factory, baseline, data):
    name, env = baseline
    work = tmp_path_factory.mktemp("mut")
    release = work / name
    shutil.copytree(EXAMPLES / name, release)
    what = _mutate(release, data, env, baseline is ALLOWED)
    if "skipped" in what:
        return
    code, out, err = run(["check", release, "--env", env, "--audit-log", work / "a.jsonl"])
    assert "Traceback" not in out + err
    assert code in (1, 2), f"{what}: exit {code}\n{out}"


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_input_document_field_mutation_never_allows(data):
    """The same property one level down: any single field of a denied input document, removed or retyped."""
    from mlgate.policy.engine import create_engine
    from mlgate.gate import decide
    from mlgate.errors import PolicyError
    from mlgate.policy import load_policy

    doc = json.loads(json.dumps(_denied_input()))
    paths = [p for p in _leaf_paths(doc["evidence"], ("evidence",))]
    path = data.draw(st.sampled_from(paths))
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(REPLACEMENTS)
    engine = _engine(create_engine, load_policy)
    try:
        raw = engine.decide(doc)
        allowed, _, _ = decide(raw)
    except PolicyError:
        allowed = False
    assert not allowed, path


_CACHE: dict = {}


def _engine(create_engine, load_policy):
    if "engine" not in _CACHE:
        _CACHE["engine"] = create_engine("embedded", load_policy(), timeout_s=0)
    return _CACHE["engine"]


def _denied_input():
    if "input" not in _CACHE:
        from mlgate import evidence
        from mlgate.clock import FixedClock
        from mlgate.inputdoc import Request, build_input
        from mlgate.manifest import load_release
        from mlgate.policy import load_policy
        from mlgate.signing.trust import load_trust_policy

        from conftest import EXAMPLES_NOW

        release = load_release(EXAMPLES / "triage-acuity")
        trust = load_trust_policy(EXAMPLES / "trust.yaml")
        facts = evidence.collect(release, trust)
        _CACHE["input"] = build_input(release=release, facts=facts, environment="production",
                                      now=FixedClock(EXAMPLES_NOW).now(), request=Request())
    return _CACHE["input"]
