"""Waivers in the auditor report (issue #5 part 6): the "Waivers (risk acceptance)" section, the
waived findings in the decisions table, and whatever a decision did with each waiver.

Every trail here is written by real `mlgate check` runs on a copy of the triage-acuity example
(denied in production for MLG-BIAS-002/006) carrying a waiver signed by Dr. Jane Roe.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest

from mlgate.evidence.waiver import create_waiver
from mlgate.manifest import load_release
from mlgate.report.chromium import dump_dom

from cli_helpers import run
from conftest import EXAMPLES, EXAMPLES_NOW
from test_audit_report import HOSTILE, Dom, _self_contained, needs_chromium
from test_waivers import BIAS_RULES, JANE, JUSTIFICATION, digest_of, key

WAIVER = "evidence/waivers/w.sigstore.json"
SIGNED = EXAMPLES_NOW - dt.timedelta(days=1)  # 2026-11-28T12:00:00Z
EXPIRES = SIGNED + dt.timedelta(days=20)  # 2026-12-18T12:00:00Z
AFTER_EXPIRY = EXPIRES + dt.timedelta(hours=1)


def _release(root: Path) -> Path:
    release = root / "triage-acuity"
    shutil.copytree(EXAMPLES / "triage-acuity", release)
    assert "    waivers: [evidence/waivers/]\n" in (release / "mlgate.yaml").read_text()  # the example declares its waivers directory
    return release


def _sign(release: Path, *, justification: str = JUSTIFICATION, ticket: str = "CAPA-2026-114", name: str = "w.sigstore.json") -> Path:
    bundle = create_waiver(key("jane.roe"), release_name="triage-acuity", model_digest=digest_of(release), rules=BIAS_RULES,
                           environment="production", justification=justification, signed_at=SIGNED, expires_at=EXPIRES,
                           ticket=ticket, release=load_release(release).binding, **JANE)
    path = release / "evidence" / "waivers" / name
    path.write_bytes(bundle)
    return path


def _check(release: Path, log: Path, *, now: dt.datetime, expect: int) -> None:
    code, _out, err = run(["check", release, "--env", "production", "--audit-log", log, "--retain-evidence"], now=now)
    assert code == expect, err


def _report(log: Path, out: Path, *extra, now: dt.datetime) -> Dom:
    code, _out, err = run(["audit", "report", "--audit", f"file:{log}", "--release", "triage-acuity@2.0.0", "-o", out, *extra], now=now)
    assert code == 0, err
    html = out.read_text()
    dom = Dom(html)
    _self_contained(dom, html)
    return dom


def _steps(dom: Dom) -> dict[str, str]:
    return {a["data-step"]: a["data-state"] for t, a in dom.elements if t == "li" and "data-step" in a}


def _section(html: str, ident: str) -> str:
    return re.search(rf'<section id="{ident}">.*?</section>', html, re.S).group(0)


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """A trail whose one decision was allowed because the waiver applied; the report, read from retained copies."""
    root = tmp_path_factory.mktemp("applied")
    release = _release(root)
    _sign(release)
    log = root / "audit.jsonl"
    _check(release, log, now=EXAMPLES_NOW, expect=0)
    out = root / "report.html"
    _report(log, out, now=EXAMPLES_NOW + dt.timedelta(hours=1))  # no --release-dir: the waiver is known by its content
    return out


def test_applied_waiver_has_its_section(applied):
    html = applied.read_text()
    dom = Dom(html)
    sections = [a["id"] for t, a in dom.elements if t == "section"]
    assert sections.index("approvals") + 1 == sections.index("waivers") == sections.index("decisions") - 1
    assert re.findall(r"<h2>(\d+)\. ", html) == [str(i) for i in range(1, 10)]
    (card,) = [a for t, a in dom.elements if t == "div" and a.get("class", "").startswith("waiver")]
    assert card == {"class": "waiver", "data-waiver": WAIVER}
    text = Dom(_section(html, "waivers")).all_text()
    assert "7. Waivers (risk acceptance)" in text
    assert "Dr. Jane Roe <jane.roe@hospital.example>" in text and "clinical-safety-officer" in text
    assert "Signed (UTC) 2026-11-28T12:00:00Z" in text
    assert "Expires (UTC) 2026-12-18T12:00:00Z not expired when this report was generated" in text
    assert "<dt>Rules covered</dt><dd><code>MLG-BIAS-002</code>, <code>MLG-BIAS-006</code></dd>" in html
    assert f"Justification {JUSTIFICATION}" in text and "Ticket CAPA-2026-114" in text
    assert "Signature verified" in text and "Bound to this model" in text and "Bytes from retained copy" in text
    # what the decision did with it, from its record
    rows = [a for t, a in Dom(_section(html, "waivers")).elements if t == "tr" and "data-sequence" in a]
    assert rows == [{"data-sequence": "1", "data-applied": "true"}]
    assert "APPLIED: waived MLG-BIAS-002, MLG-BIAS-006" in text
    # the evidence appendix names its role
    assert re.search(r"evidence/waivers/w\.sigstore\.json</span></td><td>waiver</td>", html)


def test_waived_findings_do_not_look_like_a_clean_allow(applied):
    html = applied.read_text()
    dom = Dom(html)
    decisions = _section(html, "decisions")
    (row,) = re.findall(r"<tr><td>1</td>.*?</tr>", decisions, re.S)
    assert "ALLOW" in row and "2 WAIVED" in row
    waived = [a for t, a in Dom(decisions).elements if t == "li" and a.get("class") == "waived"]
    assert waived == [{"class": "waived", "data-waiver": WAIVER}] * 2
    row_text = Dom(row).all_text()
    assert "WAIVED MLG-BIAS-002 WAIVED by Dr. Jane Roe (clinical-safety-officer) until 2026-12-18T12:00:00Z" in row_text
    assert f"justification: {JUSTIFICATION}" in row_text
    # the bias table marks the group as waived, not as passing
    bias = Dom(_section(html, "bias")).all_text()
    assert "WAIVED MLG-BIAS-002, MLG-BIAS-006" in bias and "FLAGGED" not in bias
    steps = _steps(dom)
    assert steps["waivers"] == "warn" and steps["decisions"] == "warn" and steps["bias"] == "warn"
    chain = Dom(re.search(r'<ol class="chain".*?</ol>', html, re.S).group(0)).all_text()
    assert "1 signed, 1 applied (latest)" in chain and "latest: ALLOW (production), 2 finding(s) waived" in chain


def test_expired_waiver_is_shown_not_applied_with_the_reason(tmp_path):
    release = _release(tmp_path)
    _sign(release)
    log = tmp_path / "audit.jsonl"
    _check(release, log, now=AFTER_EXPIRY, expect=1)
    out = tmp_path / "r.html"
    dom = _report(log, out, "--release-dir", release, now=AFTER_EXPIRY)  # roles from the manifest this time
    html = out.read_text()
    section = Dom(_section(html, "waivers"))
    text = section.all_text()
    assert "Expires (UTC) 2026-12-18T12:00:00Z expired when this report was generated" in text
    assert "Signature verified" in text and f"Justification {JUSTIFICATION}" in text
    rows = [a for t, a in section.elements if t == "tr" and "data-sequence" in a]
    assert rows == [{"data-sequence": "1", "data-applied": "false"}]
    (row,) = re.findall(r'<tr data-sequence="1".*?</tr>', _section(html, "waivers"), re.S)
    assert "NOT applied" in row and "expired at 2026-12-18T12:00:00Z" in row and "APPLIED" not in row.replace("NOT applied", "")
    decisions = _section(html, "decisions")
    assert "WAIVED" not in decisions and "DENY" in decisions
    steps = _steps(dom)
    assert steps["waivers"] == "warn" and steps["decisions"] == "bad" and steps["bias"] == "bad"


def test_waiver_applied_once_then_removed_is_still_reported(tmp_path):
    """The basis decision no longer read the waiver; the earlier decision it allowed still shows it."""
    release = _release(tmp_path)
    path = _sign(release)
    log = tmp_path / "audit.jsonl"
    _check(release, log, now=EXAMPLES_NOW, expect=0)
    path.unlink()
    _check(release, log, now=EXAMPLES_NOW + dt.timedelta(hours=1), expect=1)
    out = tmp_path / "r.html"
    _report(log, out, now=EXAMPLES_NOW + dt.timedelta(hours=2))
    section = Dom(_section(out.read_text(), "waivers"))
    text = section.all_text()
    assert "not among the evidence of the basis decision" in text
    assert "Dr. Jane Roe" in text and JUSTIFICATION in text and "MLG-BIAS-002 , MLG-BIAS-006" in text  # rules, from the record
    rows = [a for t, a in section.elements if t == "tr" and "data-sequence" in a]
    assert rows == [{"data-sequence": "1", "data-applied": "true"}]


def test_unsigned_waiver_is_not_verified_and_marked_bad(tmp_path):
    release = _release(tmp_path)
    path = _sign(release)
    doc = json.loads(path.read_bytes())
    doc["dsseEnvelope"]["signatures"] = []
    path.write_text(json.dumps(doc))
    log = tmp_path / "audit.jsonl"
    _check(release, log, now=EXAMPLES_NOW, expect=1)
    out = tmp_path / "r.html"
    dom = _report(log, out, "--release-dir", release, now=EXAMPLES_NOW)
    section = Dom(_section(out.read_text(), "waivers"))
    (card,) = [a for t, a in section.elements if t == "div" and a.get("class", "").startswith("waiver")]
    assert card["class"] == "waiver bad"
    text = section.all_text()
    assert "Signature NOT verified" in text
    assert re.search(r"NOT applied not verified: evidence/waivers/w\.sigstore\.json", text)
    assert _steps(dom)["waivers"] == "bad"


@pytest.fixture(scope="module")
def hostile_waiver(tmp_path_factory):
    """A waiver whose justification, ticket and file name carry markup and script."""
    root = tmp_path_factory.mktemp("hostile-waiver")
    release = _release(root)
    _sign(release, justification=f"Accepted {HOSTILE} pending retraining.", ticket=HOSTILE, name="<b>w<img src=x onerror=alert(1)>.json")
    log = root / "audit.jsonl"
    _check(release, log, now=EXAMPLES_NOW, expect=0)
    out = root / "report.html"
    _report(log, out, "--release-dir", release, now=EXAMPLES_NOW)
    return out


def test_hostile_justification_is_text_not_markup(hostile_waiver):
    html = hostile_waiver.read_text()
    dom = Dom(html)
    assert not dom.tags("script") and not dom.tags("img") and not dom.tags("b")
    assert "&lt;script&gt;document.title=&#x27;PWNED&#x27;&lt;/script&gt;" in html
    assert f"Justification Accepted {HOSTILE} pending retraining." in Dom(_section(html, "waivers")).all_text()
    assert f"Ticket {HOSTILE}" in Dom(_section(html, "waivers")).all_text()
    assert f"justification: Accepted {HOSTILE} pending retraining." in Dom(_section(html, "decisions")).all_text()
    assert "evidence/waivers/&lt;b&gt;w&lt;img src=x onerror=alert(1)&gt;.json" in html
    assert re.search(r"<title>(.*?)</title>", html).group(1) == "Audit report: triage-acuity 2.0.0"


@needs_chromium
def test_chromium_hostile_waiver_runs_no_script(hostile_waiver):
    dom_text = dump_dom(hostile_waiver)
    dom = Dom(dom_text)
    assert "PWNED" not in re.search(r"<title>(.*?)</title>", dom_text).group(1)
    assert not dom.tags("script") and not dom.tags("img") and not dom.tags("b")
    assert f"Accepted {HOSTILE} pending retraining." in dom.all_text()


def test_garbled_waiver_is_listed_by_the_manifest(tmp_path):
    """Content alone cannot tell a garbled file is a waiver; the manifest (--release-dir) can."""
    release = _release(tmp_path)
    (release / WAIVER).write_text("not a bundle")
    log = tmp_path / "audit.jsonl"
    _check(release, log, now=EXAMPLES_NOW, expect=1)
    out = tmp_path / "r.html"
    _report(log, out, "--release-dir", release, now=EXAMPLES_NOW)
    section = Dom(_section(out.read_text(), "waivers"))
    assert [a["data-waiver"] for t, a in section.elements if t == "div" and "data-waiver" in a] == [WAIVER]
    assert "Signature NOT verified" in section.all_text()
