"""What `mlgate check` imports (issue 17 part 5): once the per-user cache knows an unchanged
release and policy, a check imports no statistics library, no JSON Schema validator, no
GitPython and no X.509 code it does not need; the decision and its record are the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import EXAMPLES, REPO

HEAVY = ("statsmodels", "scipy", "pandas", "jsonschema", "git", "cryptography.x509")

PROBE = r"""
import json, runpy, sys
sys.argv = ["mlgate", "check", sys.argv[1], "--env", "production", "--audit-log", sys.argv[2], "-o", "json"]
try:
    runpy.run_module("mlgate", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "loaded": sorted(m for m in %r if m in sys.modules)}), file=sys.stderr)
""" % (HEAVY,)


def _check(tmp_path, n):
    env = dict(os.environ, MLGATE_CACHE_DIR=str(tmp_path / "cache"))
    log = tmp_path / f"audit-{n}.jsonl"
    run = subprocess.run([sys.executable, "-c", PROBE, str(EXAMPLES / "readmission-risk"), str(log)],
                         capture_output=True, text=True, cwd=REPO, env=env)
    facts = json.loads(run.stderr.strip().splitlines()[-1])
    decision = json.loads(run.stdout)
    return facts, decision


def test_a_second_check_imports_none_of_the_heavy_libraries(tmp_path):
    first, decision1 = _check(tmp_path, 1)
    assert first["exit"] == 0 and "statsmodels" in first["loaded"]  # the first check recomputes and validates
    second, decision2 = _check(tmp_path, 2)
    assert second == {"exit": 0, "loaded": []}
    for d in (decision1, decision2):  # the clock moved between the two: the time and what it went into
        for volatile in ("decision_id", "audit", "evaluated_at", "input_digest"):
            d.pop(volatile, None)
    assert decision1 == decision2
