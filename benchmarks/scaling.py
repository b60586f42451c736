"""How a decision's cost grows with the evidence (issue 17 part 4). Prints; asserts nothing.

    python benchmarks/scaling.py [--runs 200] [--engines embedded,regorus-interp] [--instructions]

The input is the readmission-risk example's production input document, grown two ways:

* bias comparisons: 6, 24, 48 and 96 (the example's six comparisons repeated over new groups,
  with their groups, so every join in the bias rules has partners and every rule still fires
  the way it did for the originals: a mix of passes, a significant gap, large-but-not-significant);
* validation records: 2, 8 and 16 (datasets, their Great Expectations records and their
  provenance entries, each naming its own dataset; the two originals kept as they are).

For each size and engine: the median CPU time of one ``decide()`` in-process (no forked
deadline), and its ratio to the smallest size. ``embedded`` is the CLI's whole decision;
``embedded-split`` the webhook's admission of a release seen before (the time split: static
findings cached, only the timed rules run), ``embedded-split-first`` its first admission of a
release (the static findings evaluated one rule package per VM run, then the timed rules). Target: 96 comparisons cost at most 2x 6. With
``--instructions``, each figure is also counted with valgrind's callgrind (the difference
between runs of 2 and 12 decisions, divided by 10: start-up cancels out), the figure that stays
put on a loaded machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

BIAS_SIZES = (6, 24, 48, 96)
VALIDATION_SIZES = (2, 8, 16)


def base_input() -> dict:
    from conftest import EXAMPLES, EXAMPLES_NOW

    from mlgate import evidence
    from mlgate.gate import GateOptions, prepare
    from mlgate.inputdoc import Request, build_input
    from mlgate.manifest import load_release

    prepared = prepare(GateOptions(environment="production", trust_policy=EXAMPLES / "trust.yaml"))
    release = load_release(EXAMPLES / "readmission-risk")
    return build_input(release=release, facts=evidence.collect(release, prepared.trust), environment="production",
                       now=EXAMPLES_NOW, request=Request(source="cli"))


def with_comparisons(doc: dict, n: int) -> dict:
    """The input with ``n`` bias comparisons: copies of the example's, over renamed groups."""
    out = copy.deepcopy(doc)
    bias = out["evidence"]["bias_audit"]
    groups = {(g["attribute"], g["group"]): g for g in bias["groups"]}
    originals = bias["comparisons"]
    new_groups, new_comparisons = [], []
    for i in range(n):
        c = copy.deepcopy(originals[i % len(originals)])
        g = copy.deepcopy(groups[(c["attribute"], c["group"])])
        name = f"{c['group']}-{i // len(originals):02d}"
        c["group"] = g["group"] = name
        new_groups.append(g)
        new_comparisons.append(c)
    bias["groups"] = sorted(new_groups, key=lambda g: (g["attribute"], g["group"]))
    bias["comparisons"] = sorted(new_comparisons, key=lambda c: (c["attribute"], c["group"]))
    return out


def with_validations(doc: dict, n: int) -> dict:
    """The input with ``n`` datasets, each with its own validation record."""
    out = copy.deepcopy(doc)
    datasets, records = out["datasets"], out["evidence"]["data_validation"]["records"]
    by_digest = {r["dataset"]["digest"]: r for r in records}
    prov = {p["sha256"]: p for p in out["evidence"]["provenance"]["datasets"]}
    new_datasets, new_records, new_prov = [], [], []
    for i in range(n):
        d = copy.deepcopy(datasets[i % len(datasets)])
        r = copy.deepcopy(by_digest[d["actual_digest"]])
        p = copy.deepcopy(prov[d["actual_digest"]])
        if i >= len(datasets):  # the originals keep their names and digests (the approvals sign them)
            digest = f"{i:064x}"
            d["name"] = p["name"] = f"{d['name']}-{i:02d}"
            d["actual_digest"] = d["declared_digest"] = p["sha256"] = digest
            r["dataset"] = {"digest": digest, "name": d["name"]}
        new_datasets.append(d)
        new_records.append(r)
        new_prov.append(p)
    out["datasets"], out["evidence"]["data_validation"]["records"] = new_datasets, new_records
    out["evidence"]["provenance"]["datasets"] = new_prov
    return out


def cases(doc: dict) -> list[tuple[str, int, dict]]:
    return ([("bias comparisons", n, with_comparisons(doc, n)) for n in BIAS_SIZES]
            + [("validation records", n, with_validations(doc, n)) for n in VALIDATION_SIZES])


def engine_ms(engine, input_json: bytes, runs: int, split: str | None = None) -> float:
    """The median CPU time of this thread for one decision: on a shared machine, time spent
    waiting for a core is not the decision's cost (it is in wall time).

    ``split``: the webhook's time split, ``"admission"`` (the same release admitted again at a
    later time: its static findings cached, the timed rules evaluated) or ``"first"`` (every
    decision the release's first: the static findings evaluated, rule package by package, then
    the timed rules)."""
    if split is None:
        for _ in range(3):
            engine.decide(None, input_json)
    doc = json.loads(input_json)
    key = engine_key(doc)  # the gate's: from the facts' digests, made once per collection
    times = []
    for i in range(runs + 3):
        if split is not None:
            at = dict(doc, evaluated_at_ns=doc["evaluated_at_ns"] + i * 1000)
            at_json = canonical_json(at)  # the gate has it (the record's input digest), as it has the key
            if split == "first":
                engine.drop_static(key)
            start = time.thread_time()
            engine.decide(at, at_json, key)
        else:
            start = time.thread_time()
            engine.decide(None, input_json)
        if i >= 3:
            times.append(time.thread_time() - start)
    return statistics.median(times) * 1000


def canonical_json(value):
    from mlgate.canonical import canonical_json as dumps

    return dumps(value)


def engine_key(doc: dict) -> str:
    from mlgate.policy.timesplit import static_key

    return static_key(doc)


WORKER = r'''
import sys
from pathlib import Path
from mlgate.policy import bundled_policy_dir, load_policy
from mlgate.policy.engine import create_engine
kind, n, path, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
engine = create_engine(kind, load_policy(bundled_policy_dir() if policy == "bundled" else policy), timeout_s=0)
data = Path(path).read_bytes()
for _ in range(n):
    engine.decide(None, data)
'''


def instructions(kind: str, input_json: bytes, tmp: Path, policy: str) -> float:
    path, worker = tmp / "input.json", tmp / "worker.py"
    path.write_bytes(input_json)
    worker.write_text(WORKER)
    counts = []
    for n in (2, 12):
        run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, str(worker), kind, str(n), str(path), policy],
                             capture_output=True, text=True, env={k: v for k, v in os.environ.items() if not k.startswith("RUST_")})
        match = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
        if run.returncode != 0 or not match:
            sys.exit(f"callgrind run failed: {run.stderr.strip().splitlines()[-1:]}")
        counts.append(int(match.group(1)))
    return (counts[1] - counts[0]) / 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--engines", default="embedded,embedded-split-first,embedded-split,regorus-interp",
                        help="embedded (the CLI's: the whole decision), embedded-split (the webhook's per admission of a release "
                             "seen before), embedded-split-first (the webhook's first admission of a release), regorus-interp")
    parser.add_argument("--instructions", action="store_true", help="also count instructions with callgrind (slow)")
    parser.add_argument("--policy", action="append", type=Path, default=[],
                        help="a policy directory to measure (repeatable, e.g. `git archive REV policies` unpacked, to compare revisions "
                             "in the same run); default: the bundled library")
    args = parser.parse_args()

    from mlgate.canonical import canonical_json
    from mlgate.policy import bundled_policy_dir, load_policy
    from mlgate.policy.engine import create_engine

    policies = [(str(p), load_policy(p)) for p in args.policy] or [("bundled", load_policy(bundled_policy_dir()))]
    doc = base_input()
    rows = cases(doc)
    kinds = [k for k in args.engines.split(",") if k]
    print(f"decision cost by evidence size (median CPU time of {args.runs} in-process decisions, no forked deadline)")
    with tempfile.TemporaryDirectory() as tmp:
        for (name, policy), kind in ((p, k) for k in kinds for p in policies):
            if len(policies) > 1:
                print(f" policy {name}:")
            split = {"embedded-split": "admission", "embedded-split-first": "first"}.get(kind)
            engine = create_engine("embedded" if split else kind, policy, timeout_s=0, time_split=split is not None)
            first: dict[str, tuple[float, float | None]] = {}
            for label, n, case in rows:
                data = canonical_json(case)
                decision = engine.decide(json.loads(data) if split else None, data)
                ms = engine_ms(engine, data, args.runs, split)
                count = instructions(kind, data, Path(tmp), name) if args.instructions and not split else None
                base = first.setdefault(label, (ms, count))
                ids = sorted({v["id"] for v in decision.get("violations", [])})
                text = f"  {kind:21s} {label:19s} {n:3d}: {ms:7.3f} ms ({ms / base[0]:4.2f}x)"
                if count is not None:
                    text += f"  {count / 1e6:6.2f} M instructions ({count / base[1]:4.2f}x)"
                print(text + f"  violations {len(decision.get('violations', []))} ({', '.join(ids)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
