"""The time split (issue 17 part 3, mlgate/policy/timesplit.py): the findings of the rules that do not
read the time are cached per (input less its per-decision keys, policy), and per admission only the
rules that do are evaluated. Exactly equivalent: random inputs at random times decide the same split
and whole, in any order (cache hits and misses, the VM's data and input swapped between releases);
nothing that reads the time (approval and waiver expiry, evidence age) is ever cached; the analysis
calls a rule timed whenever it cannot prove otherwise."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path

import pytest
from opa_reference import example_inputs, first_difference, mutations, outcome

from mlgate.clock import epoch_ns, rfc3339
from mlgate.errors import PolicyError
from mlgate.policy import bundled_policy_dir, load_policy
from mlgate.policy.compose import GENERATED_PATH
from mlgate.policy.engine.rvm_engine import RvmEngine
from mlgate.policy.timesplit import TIMED_INPUT_KEYS, split, static_key

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def library():
    return load_policy(bundled_policy_dir())


@pytest.fixture(scope="module")
def engines(library):
    return RvmEngine(library, timeout_s=0), RvmEngine(library, timeout_s=0, time_split=True)


def _at(doc: dict, when: dt.datetime) -> dict:
    out = dict(doc)
    out["evaluated_at_ns"] = epoch_ns(when)
    out["evaluated_at"] = rfc3339(when)
    return out


def _random_time(rng: random.Random) -> dt.datetime:
    # 2025-01-01 .. 2028-01-01: before the examples were signed, while their approvals hold, after they expire
    return dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=rng.randrange(3 * 365 * 86400), microseconds=rng.randrange(10**6))


def test_the_library_splits_and_reuses_its_input(library):
    s = split(list(library.decision_modules()), library.data, GENERATED_PATH)
    assert s.reuses_input
    assert len(s.static) > 40 and 0 < len(s.timed) < 12, (s.static, s.timed)
    timed = " ".join(s.timed)
    # the rules that read the evaluation time: approval expiry/signing time/credential window, evidence age, CFG-003
    for where in ("approvals.rego:318", "approvals.rego:352", "bias.rego:328", "data_validation.rego:266", "config.rego:83"):
        assert where in timed, (where, s.timed)


def test_random_inputs_at_random_times_decide_the_same_split_and_whole(engines):
    plain, split_engine = engines
    cases = [doc for _, doc in mutations(list(example_inputs().values()), 500, seed=23)]
    rng = random.Random(7)
    # each input at three times, in a shuffled order: misses, hits, and the VM switching between releases
    order = [(i, _random_time(rng)) for i in range(len(cases)) for _ in range(3)]
    rng.shuffle(order)
    diffs = []
    for i, when in order:
        doc = _at(cases[i], when) if rng.random() < 0.95 else cases[i]  # some keep the mutation's own (odd) time
        want, got = outcome(plain.decide, doc), outcome(split_engine.decide, doc)
        if want != got:
            diffs.append((i, rfc3339(when), first_difference(want, got)))
    assert not diffs, f"{len(diffs)} differ; first: {diffs[:3]}"
    assert split_engine.static_hits > 500 and split_engine.static_misses >= 400


def test_an_expiring_approval_is_never_cached_past_its_time(engines):
    plain, split_engine = engines
    doc = example_inputs()[("readmission-risk", "production")]
    before = _at(doc, dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
    after = _at(doc, dt.datetime(2027, 12, 1, tzinfo=dt.timezone.utc))  # the examples' approvals expire 2027-11-01
    first = split_engine.decide(before)
    assert first["allow"] is True
    hits = split_engine.static_hits
    late = split_engine.decide(after)
    assert split_engine.static_hits == hits + 1  # the same release: its static findings came from the cache
    assert late["allow"] is False and "MLG-APPR-008" in {v["id"] for v in late["violations"]}
    assert late == plain.decide(after)
    assert split_engine.decide(before) == first == plain.decide(before)


def test_the_static_key_ignores_only_the_per_decision_keys():
    doc = {"environment": "production", "evaluated_at": "x", "evaluated_at_ns": 1, "request": {"user": "a"}, "model": {"digest": "d"}}
    same = dict(doc, evaluated_at="y", evaluated_at_ns=2, request={"user": "b"})
    assert static_key(doc) == static_key(same)
    for key, value in (("environment", "staging"), ("model", {"digest": "e"}), ("extra", 1)):
        assert static_key(dict(doc, **{key: value})) != static_key(doc), key
    assert TIMED_INPUT_KEYS == {"evaluated_at", "evaluated_at_ns", "request"}
    # facts digested once by the gate give the same key as serialising them
    from mlgate.canonical import canonical_json, sha256_hex

    assert static_key(doc, {"model": sha256_hex(canonical_json(doc["model"]))}) == static_key(doc)


# --- the analysis, on small policies -------------------------------------------------------------

HEADER = "package mlgate.rules.org_t\n\nimport rego.v1\n\nimport data.mlgate.lib\n\n"


def _finding(fid: str, cond: str) -> str:
    return (f"# METADATA\n# title: t\n# custom:\n#   id: {fid}\n#   severity: low\n#   controls: [X]\n#   remediation: r\n"
            f"violation contains v if {{\n\t{cond}\n\tv := {{\"id\": \"{fid}\", \"severity\": \"low\", \"controls\": [\"X\"], "
            f"\"remediation\": \"r\", \"message\": \"m\"}}\n}}\n\n")


CASES = {
    "ORG-STATIC-1": ('input.environment == "production"', False),
    "ORG-STATIC-2": ('lib.s(input, "environment") == "production"', False),
    "ORG-STATIC-3": ('object.get(input, ["model", "digest"], "") != ""', False),
    "ORG-STATIC-4": ("is_object(input)", False),
    "ORG-TIME-1": ("input.evaluated_at_ns > 0", True),
    "ORG-TIME-2": ('lib.s(input, "evaluated_at") != ""', True),
    "ORG-TIME-3": ('object.get(input, "evaluated_at_ns", 0) > 0', True),
    "ORG-TIME-4": ("time.now_ns() > 0", True),
    "ORG-TIME-5": ("late", True),  # through a rule of the package
    "ORG-TIME-6": ("lib.now_ns > 0", True),  # through the library
    "ORG-TIME-7": ('input.request.user != "x"', True),
}


def _org_policy(tmp_path: Path, extra: str = "") -> Path:
    pol = tmp_path / "policies"
    shutil.copytree(REPO / "policies", pol)
    text = HEADER + "late if input.evaluated_at_ns > 1\n\n" + "".join(_finding(fid, cond) for fid, (cond, _) in CASES.items()) + extra
    (pol / "mlgate" / "rules" / "org_t.rego").write_text(text)
    return pol


def test_each_way_of_reading_the_time_is_timed(tmp_path):
    policy = load_policy(_org_policy(tmp_path))
    s = split(list(policy.decision_modules()), policy.data, GENERATED_PATH)
    text = dict(s.modules)["mlgate/rules/org_t.rego"]
    lines = text.splitlines()
    for fid, (_, timed) in CASES.items():
        at = next(i for i, line in enumerate(lines) if f"id: {fid}" in line)
        head = next(line for line in lines[at:] if "contains v if" in line)
        assert head.startswith("violation__mlgate_timed" if timed else "violation contains"), (fid, head)
    assert s.reuses_input


def test_an_unnamed_read_of_the_input_keeps_the_input_whole_and_stays_exact(tmp_path):
    extra = _finding("ORG-DYN-1", 'some k, _ in input\n\tk == "evaluated_at_ns"')
    policy = load_policy(_org_policy(tmp_path, extra))
    s = split(list(policy.decision_modules()), policy.data, GENERATED_PATH)
    assert not s.reuses_input  # input[k]: the engine gives the VM the whole input each time
    assert any("ORG-DYN-1" in line for line in dict(s.modules)["mlgate/rules/org_t.rego"].split("violation__mlgate_timed")[1:])
    plain, split_engine = RvmEngine(policy, timeout_s=0), RvmEngine(policy, timeout_s=0, time_split=True)
    doc = example_inputs()[("readmission-risk", "production")]
    for when in (dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), dt.datetime(2027, 12, 1, tzinfo=dt.timezone.utc)):
        at = _at(doc, when)
        got = split_engine.decide(at)
        assert got == plain.decide(at)
        assert {"ORG-DYN-1", "ORG-TIME-1", "ORG-STATIC-1"} <= {v["id"] for v in got["violations"]}
    without = {k: v for k, v in doc.items() if k != "evaluated_at_ns"}
    assert "ORG-TIME-1" not in {v["id"] for v in split_engine.decide(without)["violations"]}
    assert split_engine.decide(without) == plain.decide(without)


def test_reserved_data_keys_are_refused(tmp_path, library):
    with pytest.raises(PolicyError, match="policy data may not set 'mlgate:static'"):
        split(list(library.decision_modules()), {**library.data, "mlgate:static": {}}, GENERATED_PATH)


def test_the_webhook_evaluates_split(tmp_path):
    """The webhook builds its engines with the split; a second admission of a release is a cache hit."""
    import json

    from mlgate.gatekeeper.config import Settings
    from mlgate.gatekeeper.review import parse_review
    from mlgate.gatekeeper.service import Gatekeeper

    gk = Gatekeeper(Settings(evidence_store="file://" + str(REPO / "examples"), audit="file://" + str(tmp_path / "audit.jsonl"),
                             trust_policy=REPO / "examples" / "trust.yaml"))
    gk.start()
    try:
        engine = gk.prepared.engine
        assert engine.split is not None and engine.split.reuses_input
        body = json.loads((REPO / "tests" / "assets" / "admission" / "deployment-create-v1.json").read_text())
        outcomes = []
        for i in range(3):
            body["request"]["uid"] = f"split-{i}"
            outcomes.append(gk.admit(parse_review(body), "production"))
        assert engine.static_hits >= 2
        assert len({o.result for o in outcomes}) == 1 and outcomes[0].decisions
        records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert len({json.dumps(r.get("violations"), sort_keys=True) for r in records if r.get("kind") != "policy-change"}) == 1
    finally:
        gk.close()
