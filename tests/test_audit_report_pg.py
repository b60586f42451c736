"""The auditor report from a PostgreSQL trail: records, retained evidence (a table) and a
signed checkpoint, all read from the server. Real server, as in test_audit_pg."""

from __future__ import annotations

import re

from cli_helpers import run
from conftest import EXAMPLES, EXAMPLES_NOW
from test_audit_checkpoint import keys, trust  # noqa: F401 - fixtures
from test_audit_pg import pg_url  # noqa: F401 - fixtures
from test_audit_report import Dom


def test_report_from_postgresql(pg_url, keys, trust, tmp_path):  # noqa: F811
    for example, env in (("chest-xray", "staging"), ("triage-acuity-v2", "production")):
        code, _o, err = run(["check", EXAMPLES / example, "--env", env, "--audit", pg_url, "--retain-evidence"], now=EXAMPLES_NOW)
        assert code in (0, 1), err
    assert run(["audit", "checkpoint", "--audit", pg_url, "--key", keys["signer"], "--trust", trust], now=EXAMPLES_NOW)[0] == 0
    out = tmp_path / "r.html"
    code, stdout, err = run(["audit", "report", "--audit", pg_url, "--release", "triage-acuity@2.1.0", "--trust", trust, "-o", out], now=EXAMPLES_NOW)
    assert code == 0, err
    dom = Dom(out.read_text())
    text = dom.all_text()
    assert "retained copy" in text and "unavailable" not in text  # every file from the evidence table
    assert re.search(r"Audit checkpoint service <audit-checkpointer@hospital.example> OK", text)
    assert "2 record(s) verified" in text
    steps = {a["data-step"]: a["data-state"] for t, a in dom.elements if t == "li" and "data-step" in a}
    assert steps["decisions"] == "ok" and steps["approvals"] == "ok" and steps["chain"] == "ok"
