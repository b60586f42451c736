"""benchmarks/faults.py (issue 16 part 5) in its quick mode: a writer process killed mid-batch, a
FIFO as evidence, poisoned releases among concurrent admissions to a real webhook; every decision
returned is recorded, and every chain verifies."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_quick_fault_run_records_every_decision_and_keeps_the_chain():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "faults.py"), "--quick"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[-1] == "faults: 3 injection(s) run, 0 skipped; records == decisions recorded + in flight, chains intact: yes", proc.stdout
    rows = {m.group(1): m for m in (re.match(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+[\d.]+\s+(.*)$", line) for line in lines) if m}
    assert set(rows) == {"cli-sigkill", "cli-fifo", "webhook-poison"}
    for name, m in rows.items():
        sent, returned, records, refused, in_flight = map(int, m.groups()[1:6])
        assert records == returned - refused + in_flight, name
        assert m.group(7).startswith(("intact", "torn -> repaired -> intact")), m.group(0)
    assert int(rows["cli-sigkill"].group(3)) < int(rows["cli-sigkill"].group(2)), "the writer is killed before its batch ends"
    assert int(rows["webhook-poison"].group(3)) == int(rows["webhook-poison"].group(2)) == 12


def test_unknown_injection_is_a_usage_error():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "faults.py"), "--only", "meteor"], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert proc.returncode == 2 and "unknown injection 'meteor'" in proc.stderr
