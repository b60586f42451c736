"""Instructions per decision, counted with valgrind's callgrind: the figure that stays put.

    python benchmarks/instructions.py [--environment production] [--engines regorus-interp,embedded]

On a small shared machine, CPU times move by 30% and more from one run to the next (frequency
changes, neighbours, caches cooled by idle time); an instruction count for the same binary and
inputs does not. This prints, for the webhook's gate (one admission: store lookup, input
document, policy engine, durable audit record) and for the policy engine alone (the bundled
library on the embedded engine), the instructions each costs, as the difference between a run
of ``N`` and a run of ``N + 10`` of them (so start-up, imports and the first, cache-filling
decision cancel out). Needs ``valgrind`` on the PATH (Debian: ``apt-get install valgrind``).

Each engine of ``--engines`` is counted in the same run and printed side by side with the issue's
targets: ``regorus-interp`` (the tree-walker, the default before issue 17), ``embedded-whole`` (the
compiled VM evaluating the whole decision each time) and ``embedded`` (the compiled VM with the
webhook's time split: the static findings cached per release, only the timed rules evaluated).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BODY = REPO / "tests" / "assets" / "admission" / "deployment-create-v1.json"

WORKLOAD = r'''
import json, sys, tempfile
from pathlib import Path
from mlgate.canonical import canonical_json
from mlgate.gatekeeper.config import Settings
from mlgate.gatekeeper.review import parse_review
from mlgate.gatekeeper.service import Gatekeeper
what, n, examples, body, environment, engine = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
whole = engine == "embedded-whole"  # the compiled VM without the time split (the webhook's engine before issue 17 part 3)
if whole:
    import mlgate.policy.engine as engines
    create = engines.create_engine
    engines.create_engine = lambda *a, **k: create(*a, **{**k, "time_split": False})
    engine = "embedded"
gk = Gatekeeper(Settings(evidence_store="file://" + examples, audit="file://" + str(Path(tempfile.mkdtemp()) / "audit.jsonl"), engine=engine,
                         trust_policy=Path(examples) / "trust.yaml"))
gk.start()
doc = json.loads(Path(body).read_text())
outcome = None
for i in range(2 + (n if what == "gate" else 0)):  # two to fill the caches, then the counted ones
    doc["request"]["uid"] = f"count-{i}"
    outcome = gk.admit(parse_review(doc), environment)
if what == "engine":
    decision = outcome.decisions[0]
    input_json = canonical_json(decision.input_document)
    from mlgate.policy.timesplit import static_key
    extra = {"static_key": static_key(decision.input_document)} if getattr(gk.prepared.engine, "takes_static_key", False) else {}  # the gate digests the facts once per release
    for _ in range(n):
        gk.prepared.engine.decide(decision.input_document, input_json, **extra)
'''


#: issue 17's targets on this 2-core machine (the engine's is in time: 0.2 ms median per admission)
TARGETS = {"gate": "<= 3 M", "engine": "-"}


def _count(what: str, n: int, environment: str, workload: Path, engine: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, str(workload), what, str(n),
                          str(REPO / "examples"), str(BODY), environment, engine], capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env)
    match = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
    if run.returncode != 0 or not match:
        tail = " ".join(run.stderr.strip().splitlines()[-3:])[:300]
        sys.exit(f"mlgate: error: the counted run failed (exit {run.returncode}): {tail}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--environment", default="production")
    parser.add_argument("--base", type=int, default=2, help="decisions in the shorter run (the longer one has 10 more)")
    parser.add_argument("--engines", default="regorus-interp,embedded-whole,embedded",
                        help="engines to count, side by side (comma-separated; embedded-whole: the VM without the time split)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("mlgate: error: valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "workload.py"
        workload.write_text(WORKLOAD)
        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
        print(f"instructions per decision (callgrind), {BODY.name} for {args.environment}, difference of {args.base} and {args.base + 10} runs")
        rows = (("gate", "gate, one admission (store, input document, engine, durable audit record)", TARGETS["gate"]),
                ("engine", "policy engine alone (bundled library, one decide())", TARGETS["engine"]))
        print(f"  {'':<72}" + "".join(f"{e:>16}" for e in engines) + f"{'target':>10}")
        for what, label, target in rows:
            per = [(_count(what, args.base + 10, args.environment, workload, e) - _count(what, args.base, args.environment, workload, e)) / 10 for e in engines]
            print(f"  {label:<72}" + "".join(f"{p / 1e6:>14.1f} M" for p in per) + f"{target:>10}")

if __name__ == "__main__":
    main()
