"""The examples do not rot (issue 19 part 2): each keeps its decision for the next 180 days.

The examples carry fixed dates (examples/generate.py's anchor, November 2026): validation
results and bias audits age (evidence.max_age_days), approvals expire. This test evaluates every
example at today's date and at today + 180 days, so it fails half a year before the quick start
would start to deny, which is the time to move the generator's anchor and regenerate
(``python examples/generate.py``). It reads the wall clock on purpose: the calendar is the
thing it guards against.
"""

from __future__ import annotations

import datetime as dt

import pytest

from cli_helpers import check_json
from conftest import EXAMPLES

# (example, environment) -> the rule ids of its deny (empty: allowed), as the README states them.
EXPECTED = {
    ("readmission-risk", "staging"): set(),
    ("readmission-risk", "production"): set(),
    ("triage-acuity-v2", "production"): set(),
    ("triage-acuity", "production"): {"MLG-BIAS-002", "MLG-BIAS-006"},
    ("chest-xray", "staging"): {"MLG-APPR-010", "MLG-APPR-012", "MLG-APPR-020"},
}
HORIZON_DAYS = 180


@pytest.mark.parametrize("days", [0, HORIZON_DAYS])
@pytest.mark.parametrize("example,env", sorted(EXPECTED))
def test_example_keeps_its_decision_for_half_a_year(tmp_path, example, env, days):
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)
    code, decision, _ = check_json(EXAMPLES / example, env, tmp_path / "a.jsonl", now=when)
    found = {v["id"] for v in decision["violations"]}
    expected = EXPECTED[(example, env)]
    assert found == expected, (f"{example} in {env} at {when:%Y-%m-%d} (today + {days} days): {sorted(found)}, expected {sorted(expected)}; "
                               "move examples/generate.py's dates forward and regenerate")
    assert code == (0 if not expected else 1)
