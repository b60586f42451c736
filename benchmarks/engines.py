"""Per-decision latency of each policy engine (issue 8, part 5).

    python benchmarks/engines.py [--warm N] [--fresh N] [--json OUT]

For each engine: the median and p99 of one ``decide()`` on the examples' input documents
(every example release, staging and production, built at the examples' fixed instant), measured

* warm: one engine, decisions in a loop (what the webhook and a long-running gate see);
* fresh: a new engine per decision, construction included (what one ``mlgate check`` pays).

In-process engines are also measured without their deadline (``/nofork``): the embedded engines
enforce the deadline by evaluating in a forked child, and the fork is most of their warm cost.

Engines: ``embedded`` (regorus's compiled VM, the default since issue 17, with its forked-child
deadline as in production), ``regorus-interp`` (the tree-walker, the default before), ``opa`` (the
remote client against ``tests/opa_rest_server.py``, an HTTP server on 127.0.0.1 that answers like
OPA and evaluates with regorus: the difference to ``embedded`` is the transport's cost; no OPA
binary can be installed here) and ``rego-cpp`` when the extra is installed. All engines are
measured on the bundled library and on the portable policy of ``tests/test_engine_contract.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(fn, inputs: list, n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        doc = inputs[i % len(inputs)]
        start = time.perf_counter()
        fn(doc)
        times.append((time.perf_counter() - start) * 1000)
    return {"n": n, "median_ms": statistics.median(times), "p99_ms": percentile(times, 99)}


def example_inputs() -> list[dict]:
    from conftest import EXAMPLES, EXAMPLES_NOW

    from mlgate import evidence
    from mlgate.gate import GateOptions, prepare
    from mlgate.inputdoc import Request, build_input
    from mlgate.manifest import load_release

    docs = []
    for release in sorted(p for p in EXAMPLES.iterdir() if (p / "mlgate.yaml").is_file()):
        for env in ("staging", "production"):
            prepared = prepare(GateOptions(environment=env))
            rel = load_release(release)
            docs.append(build_input(release=rel, facts=evidence.collect(rel, prepared.trust), environment=env, now=EXAMPLES_NOW,
                                    request=Request(source="cli")))
    return docs


def bench_policy(label: str, policy, inputs: list, warm_n: int, fresh_n: int) -> list[dict]:
    from opa_rest_server import FakeOpa

    from mlgate.policy.engine import create_engine
    from mlgate.policy.engine.opa import OpaSettings
    from mlgate.policy.engine.regopy_engine import available
    from mlgate.errors import PolicyError

    rows = []
    with FakeOpa(policy, bundle_revision=policy.revision) as server:
        kinds = ["embedded", "regorus-interp", "opa"] + (["rego-cpp"] if available() else [])
        for kind in kinds:
            def make():
                if kind == "opa":
                    return create_engine("opa", policy, opa=OpaSettings(url=server.url))
                return create_engine(kind, policy)

            try:
                engine = make()
            except PolicyError as exc:
                rows.append({"policy": label, "engine": kind, "error": exc.diagnostics()})
                continue
            for doc in inputs[:3]:
                engine.decide(doc)  # warm-up
            warm = measure(engine.decide, inputs, warm_n)

            def fresh(doc):
                e = make()
                e.decide(doc)
                if kind == "opa":
                    e.close()

            rows.append({"policy": label, "engine": kind, "version": engine.version, "warm": warm, "fresh": measure(fresh, inputs, fresh_n),
                         **({"fallbacks": engine.fallbacks} if hasattr(engine, "fallbacks") else {})})
            if kind == "opa":
                engine.close()
            else:  # the same engine without the forked-child deadline: the evaluation alone
                bare = create_engine(kind, policy, timeout_s=0)
                rows.append({"policy": label, "engine": f"{kind}/nofork", "version": engine.version, "warm": measure(bare.decide, inputs, warm_n),
                             "fresh": measure(lambda doc: create_engine(kind, policy, timeout_s=0).decide(doc), inputs, fresh_n)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--fresh", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from test_engine_contract import PORTABLE, PORTABLE_INPUTS

    from mlgate.policy import bundled_policy_dir, load_policy

    rows = bench_policy("bundled", load_policy(bundled_policy_dir()), example_inputs(), args.warm, args.fresh)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "p.rego").write_text(PORTABLE)
        (root / "mlgate" / "environments" / "staging").mkdir(parents=True)
        (root / "mlgate" / "environments" / "staging" / "data.json").write_text('{"delta": 0.01}')
        rows += bench_policy("portable", load_policy(root), PORTABLE_INPUTS, args.warm, args.fresh)

    print(f"{'policy':9} {'engine':16} {'warm median':>12} {'warm p99':>9} {'fresh median':>13} {'fresh p99':>10}")
    for row in rows:
        if "error" in row:
            print(f"{row['policy']:9} {row['engine']:16} cannot load: {row['error'][:90]}")
            continue
        w, f = row["warm"], row["fresh"]
        note = f"  (decided by the tree-walker past the VM's cap: {row['fallbacks']})" if row.get("fallbacks") else ""
        print(f"{row['policy']:9} {row['engine']:16} {w['median_ms']:10.2f}ms {w['p99_ms']:7.2f}ms {f['median_ms']:11.2f}ms {f['p99_ms']:8.2f}ms{note}")
    print("issue 17 target: engine per admission <= 0.2 ms median")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
