"""Every example's decision, reports and audit record, compared with golden files.

What a user sees (exit code, text/JSON/SARIF/JUnit output, the audit record) must not change
unless a change means it to. Regenerate on purpose only (model-transparency's
``--update_goldens`` habit): ``MLGATE_UPDATE_GOLDENS=1 python -m pytest tests/test_goldens.py``,
then review the diff of ``tests/assets/goldens/``.
"""

from __future__ import annotations

import json
import os

import pytest

from cli_helpers import run
from conftest import ASSETS, EXAMPLES

GOLDENS = ASSETS / "goldens"
UPDATE = os.environ.get("MLGATE_UPDATE_GOLDENS") == "1"
# Fields that depend on where and when the suite runs, not on the decision: the policy
# directory's git commit (and the record hash, which covers it) and the OS user.
_VOLATILE = ("policy_git", "hash", "actor")


def _ids():
    n = iter(range(1, 1_000_000))
    return lambda: f"00000000-0000-4000-8000-{next(n):012d}"


def _observe(release, env, tmp_path):
    seen = {}
    for fmt in ("text", "json", "sarif", "junit"):
        log = tmp_path / f"{fmt}.jsonl"
        code, out, err = run(["check", release, "--env", env, "-o", fmt, "--audit-log", log], ids=_ids())
        record = json.loads(log.read_text().splitlines()[-1])

        def stable(text):
            # The checkout's own path appears where a report names the release's files (SARIF locations).
            return text.replace(str(tmp_path), "<TMP>").replace(str(EXAMPLES.parent), "<REPO>").replace(record["hash"], "<HASH>")

        seen[fmt] = {"exit": code, "stdout": stable(out), "stderr": stable(err)}
        if fmt == "json":
            for key in _VOLATILE:
                record.pop(key, None)
            if isinstance(record.get("input"), dict):  # the stored input document names the OS user too
                record["input"].get("request", {}).pop("user", None)
            seen["record"] = record
    return json.loads(json.dumps(seen, default=str))


@pytest.mark.parametrize("env", ["staging", "production"])
@pytest.mark.parametrize("example", ["readmission-risk", "chest-xray", "triage-acuity", "triage-acuity-v2"])
def test_example_matches_golden(example, env, tmp_path):
    seen = _observe(EXAMPLES / example, env, tmp_path)
    golden = GOLDENS / f"{example}.{env}.json"
    if UPDATE:
        golden.write_text(json.dumps(seen, indent=1, sort_keys=True) + "\n")
    expected = json.loads(golden.read_text())
    for part in expected:
        assert seen[part] == expected[part], f"{example} {env}: {part} differs from {golden.name}"
