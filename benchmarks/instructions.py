"""Instructions per decision, counted with valgrind's callgrind: the figure that stays put.

    python benchmarks/instructions.py [--release NAME@VERSION] [--environment production]

On a small shared machine, CPU times move by 30% and more from one run to the next (frequency
changes, neighbours, caches cooled by idle time); an instruction count for the same binary and
inputs does not. This prints, for the webhook's gate (one admission: store lookup, input
document, policy engine, durable audit record) and for the policy engine alone (the bundled
library on the embedded engine), the instructions each costs, as the difference between a run
of ``N`` and a run of ``N + 10`` of them (so start-up, imports and the first, cache-filling
decision cancel out). Needs ``valgrind`` on the PATH (Debian: ``apt-get install valgrind``).
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
what, n, examples, body, environment = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
gk = Gatekeeper(Settings(evidence_store="file://" + examples, audit="file://" + str(Path(tempfile.mkdtemp()) / "audit.jsonl")))
gk.start()
doc = json.loads(Path(body).read_text())
outcome = None
for i in range(2 + (n if what == "gate" else 0)):  # two to fill the caches, then the counted ones
    doc["request"]["uid"] = f"count-{i}"
    outcome = gk.admit(parse_review(doc), environment)
if what == "engine":
    decision = outcome.decisions[0]
    input_json = canonical_json(decision.input_document)
    for _ in range(n):
        gk.prepared.engine.decide(decision.input_document, input_json)
'''


def _count(what: str, n: int, environment: str, workload: Path) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, str(workload), what, str(n),
                          str(REPO / "examples"), str(BODY), environment], capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env)
    match = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
    if run.returncode != 0 or not match:
        tail = " ".join(run.stderr.strip().splitlines()[-3:])[:300]
        sys.exit(f"mlgate: error: the counted run failed (exit {run.returncode}): {tail}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--environment", default="production")
    parser.add_argument("--base", type=int, default=2, help="decisions in the shorter run (the longer one has 10 more)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("mlgate: error: valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "workload.py"
        workload.write_text(WORKLOAD)
        print(f"instructions per decision (callgrind), {BODY.name} for {args.environment}, difference of {args.base} and {args.base + 10} runs")
        for what, label in (("gate", "gate, one admission (store, input document, engine, durable audit record)"),
                            ("engine", "policy engine alone (embedded regorus, bundled library)")):
            per = (_count(what, args.base + 10, args.environment, workload) - _count(what, args.base, args.environment, workload)) / 10
            print(f"  {label}: {per / 1e6:.1f} M")


if __name__ == "__main__":
    main()
