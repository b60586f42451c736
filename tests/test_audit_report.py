"""`mlgate audit report`: one self-contained HTML page for an auditor, checked as HTML here and
rendered for real in headless Chromium (DOM dump, screenshot, PDF).

The Chromium tests skip only when no browser binary is installed; install it with
``apt-get update && apt-get install -y chromium`` (Debian's package).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mlgate.report.chromium import INSTALL_HINT, dump_dom, find_chromium, print_pdf, screenshot

from cli_helpers import run
from conftest import EXAMPLES, EXAMPLES_NOW, REPO, needs_service

NOW = EXAMPLES_NOW
LATER = NOW + dt.timedelta(hours=2)
needs_chromium = needs_service(find_chromium() is None, "Chromium", f"not installed ({INSTALL_HINT})")

HOSTILE = "<script>document.title='PWNED'</script><img src=x onerror=\"document.title='PWNED'\">"


class Dom(HTMLParser):
    """Elements (tag, attrs, text inside) of an HTML document, as the parser sees them."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def tags(self, name):
        return [a for t, a in self.elements if t == name]

    def all_text(self):
        return " ".join(" ".join(self.text).split())


def _check(release, env, log, *extra, now=NOW):
    code, out, err = run(["check", release, "--env", env, "--audit-log", log, "--retain-evidence", *extra], now=now)
    assert code in (0, 1), err


@pytest.fixture(scope="module")
def trail(tmp_path_factory):
    """A trail with the examples' decisions and every evidence file retained."""
    root = tmp_path_factory.mktemp("trail")
    log = root / "audit.jsonl"
    _check(EXAMPLES / "chest-xray", "staging", log)
    _check(EXAMPLES / "triage-acuity", "production", log)
    _check(EXAMPLES / "triage-acuity", "staging", log)
    _check(EXAMPLES / "readmission-risk", "production", log)
    _check(EXAMPLES / "triage-acuity", "production", log, now=LATER)
    return log


def _report(log, release, out, *extra, now=LATER):
    return run(["audit", "report", "--audit", f"file:{log}", "--release", release, "-o", out, *extra], now=now)


def _self_contained(dom: Dom, html: str) -> None:
    assert not dom.tags("script") and not dom.tags("link") and not dom.tags("iframe") and not dom.tags("object")
    for _tag, attrs in dom.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (name, value)
            assert name not in ("src", "href", "srcset", "action", "formaction") or (value or "").startswith("data:"), (name, value)
    assert "url(" not in html and "@import" not in html
    (csp,) = [a for a in dom.tags("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp["content"] and "script-src" not in csp["content"]


def test_report_traceability_chain_for_a_denied_release(trail, tmp_path):
    out = tmp_path / "report.html"
    code, stdout, err = _report(trail, "triage-acuity@2.0.0", out)
    assert code == 0, err
    assert "triage-acuity 2.0.0, 3 decision(s), chain intact" in stdout
    html = out.read_text()
    dom = Dom(html)
    _self_contained(dom, html)
    text = dom.all_text()
    # the chain, in order
    sections = [a["id"] for t, a in dom.elements if t == "section"]
    assert sections == ["datasets", "validation", "model", "model-card", "bias", "approvals", "waivers", "decisions", "chain", "evidence"]
    headings = re.findall(r"<h2>(\d+)\. ", html)
    assert headings == [str(i) for i in range(1, 10)]  # numbered in page order, no gap, no repeat
    assert "7. Waivers (risk acceptance)" in text and "No waiver was recorded." in text and "WAIVED" not in text
    records = [json.loads(line) for line in trail.read_bytes().splitlines()]
    triage = [r for r in records if r["release"]["name"] == "triage-acuity"]
    assert [r["sequence"] for r in triage] == [2, 3, 5]
    basis = triage[-1]
    assert basis["subject_digest"] in text and f"decision sequence 5 ({basis['decision_id']})" in text
    for rel, digest in basis["evidence_digests"].items():
        assert digest in text, rel  # every file of the basis decision, by digest
    # the three decisions, in time order, with their policy revision
    rows = re.findall(r'<table class="decisions">.*?</table>', html, re.S)[0]
    seqs = re.findall(r"<tr><td>(\d+)</td>", rows)
    assert seqs == ["2", "3", "5"]
    assert rows.count(basis["policy_revision"][:16]) == 3 and "MLG-BIAS-002" in rows
    # bias: the flagged group is drawn in the plot and marked in the table
    (svg,) = dom.tags("svg")
    assert svg["class"] == "forest" and "threshold band" in svg["aria-label"]
    assert len(re.findall(r"<circle ", html)) == 6 + 1  # six groups and the legend's marker
    assert re.search(r"<text [^>]*font-weight=\"bold\"[^>]*>ethnicity=Black</text>", html)
    assert "FLAGGED MLG-BIAS-002" in text and "delta 0.05, alpha 0.05, n_min 30, non-inferiority required" in text
    assert "(the revision the decision used)" in text
    # approvals (11.50): printed name, date/time and meaning
    assert "Sam Patel" in text and "2026-11-15T09:00:00Z" in text and "review" in text
    assert "Dr. Jane Roe" in text and "2026-11-16T09:00:00Z" in text and "approval" in text
    assert text.count("verified") >= 2 and "NOT verified" not in text
    # data validation and datasets
    assert "7 of 7 passed" in text and "triage_input_suite" in text
    # the step summary
    steps = {a["data-step"]: a["data-state"] for t, a in dom.elements if t == "li" and "data-step" in a}
    assert steps == {"datasets": "ok", "validation": "ok", "model": "ok", "model-card": "ok", "bias": "bad", "approvals": "ok",
                     "waivers": "none", "decisions": "bad", "chain": "ok"}


def test_report_shows_an_approval_for_another_model(trail, tmp_path):
    out = tmp_path / "cx.html"
    code, _out, err = _report(trail, "chest-xray", out, "--release-dir", EXAMPLES / "chest-xray")
    assert code == 0, err
    dom = Dom(out.read_text())
    text = dom.all_text()
    import base64
    import json as _json

    bundle = _json.loads((EXAMPLES / "chest-xray" / "evidence" / "approvals" / "jane.roe_hospital.example.approval.staging.sigstore.json").read_text())
    signed_for = _json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))["subject"][0]["digest"]["sha256"]
    assert f"signed for another model {signed_for[:12]}" in text
    assert "evidence changed since: evidence/bias_audit.json, evidence/model_card.md" in text
    steps = {a["data-step"]: a["data-state"] for t, a in dom.elements if t == "li" and "data-step" in a}
    assert steps["approvals"] == "bad" and steps["decisions"] == "bad"
    # with the manifest the datasets are named and checked against their declared digests
    assert "matches the declared digest" in text and "train" in text


def test_report_of_a_tampered_trail_says_so_and_exits_1(trail, tmp_path):
    log = tmp_path / "audit.jsonl"
    shutil.copy(trail, log)
    shutil.copytree(trail.parent / "evidence", tmp_path / "evidence")
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"result":"deny"', b'"result":"allow"')
    log.write_bytes(b"".join(lines))
    out = tmp_path / "r.html"
    code, _out, err = _report(log, "triage-acuity@2.0.0", out)
    assert code == 1 and "did not verify" in err
    dom = Dom(out.read_text())
    (banner,) = [a for t, a in dom.elements if a.get("id") == "chain-banner"]
    assert banner["role"] == "alert"
    assert "The audit trail did not verify (tampered): sequence 2 (line 2): field hash" in dom.all_text()


def test_report_without_retained_evidence_uses_matching_release_files_only(tmp_path):
    release = tmp_path / "rel"
    shutil.copytree(EXAMPLES / "triage-acuity-v2", release)
    log = tmp_path / "audit.jsonl"
    code, _o, err = run(["check", release, "--env", "production", "--audit-log", log], now=NOW)  # no --retain-evidence
    assert code == 0, err
    card = release / "evidence" / "model_card.md"
    card.write_text(card.read_text() + "\nEdited after the decision.\n")
    out = tmp_path / "r.html"
    code, _o, err = _report(log, "triage-acuity@2.1.0", out, "--release-dir", release)
    assert code == 0, err
    text = Dom(out.read_text()).all_text()
    assert "the release directory's copy has changed" in text and "Edited after the decision" not in text
    assert "release directory" in text  # the other files, whose digests match, are shown
    code, _o, err = _report(log, "triage-acuity@2.1.0", tmp_path / "r2.html")
    assert code == 0
    assert "not retained (check --retain-evidence) and no --release-dir given" in Dom((tmp_path / "r2.html").read_text()).all_text()


def test_report_errors_are_one_line(trail, tmp_path):
    code, _o, err = _report(trail, "no-such-model", tmp_path / "x.html")
    assert code == 2 and "no decision about release no-such-model" in err and err.count("\n") == 1
    assert not (tmp_path / "x.html").exists()
    code, _o, err = _report(trail, "chest-xray@9.9.9", tmp_path / "x.html", "--release-dir", EXAMPLES / "chest-xray")
    assert code == 2 and "the manifest is for chest-xray@0.9.0, not chest-xray@9.9.9" in err
    code, _o, err = _report(trail, "@1", tmp_path / "x.html")
    assert code == 2 and "--release: expected NAME or NAME@VERSION" in err
    code, _o, err = _report(tmp_path / "missing.jsonl", "chest-xray", tmp_path / "x.html")
    assert code == 2 and "missing.jsonl" in err


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A release whose evidence, actor and file names carry markup and script."""
    import os

    root = tmp_path_factory.mktemp("hostile")
    release = root / "rel"
    shutil.copytree(EXAMPLES / "triage-acuity", release)
    card = release / "evidence" / "model_card.md"
    card.write_text(card.read_text().replace("Decision support for triage nurses", f"Decision support {HOSTILE} for triage nurses"))
    bias = release / "evidence" / "bias_audit.json"
    doc = json.loads(bias.read_text())
    for item in doc["groups"] + doc["comparisons"]:
        if item["group"] == "Black":
            item["group"] = "Black" + HOSTILE
    bias.write_text(json.dumps(doc, indent=1))
    approvals = release / "evidence" / "approvals"
    src = approvals / "sam.patel_hospital.example.review.production.sigstore.json"
    src.rename(approvals / "<b>sam<b><img src=x onerror=alert(1)>.sigstore.json")
    log = root / "audit.jsonl"
    old = os.environ.get("MLGATE_ACTOR")
    os.environ["MLGATE_ACTOR"] = f"ci{HOSTILE}"
    try:
        _check(release, "production", log)
    finally:
        if old is None:
            os.environ.pop("MLGATE_ACTOR", None)
        else:
            os.environ["MLGATE_ACTOR"] = old
    out = root / "report.html"
    code, _o, err = _report(log, "triage-acuity", out, "--release-dir", release)
    assert code == 0, err
    return out


def test_hostile_evidence_is_text_not_markup(hostile):
    html = hostile.read_text()
    dom = Dom(html)
    _self_contained(dom, html)
    assert not dom.tags("img") and not dom.tags("b")
    text = dom.all_text()
    assert f"Decision support {HOSTILE} for triage nurses" in text  # shown, as text
    assert f"ci{HOSTILE}" in text
    assert "&lt;script&gt;document.title=&#x27;PWNED&#x27;&lt;/script&gt;" in html
    assert re.search(r"<title>(.*?)</title>", html).group(1) == "Audit report: triage-acuity 2.0.0"
    svg = re.search(r"<svg .*?</svg>", html, re.S).group(0)
    assert "ethnicity=Black&lt;script&gt;" in svg and "<script" not in svg  # the hostile group name, inside the plot
    assert "&lt;b&gt;sam&lt;b&gt;&lt;img src=x onerror=alert(1)&gt;.sigstore.json" in html  # a hostile file name


@needs_chromium
def test_chromium_renders_the_report_dom(trail, tmp_path):
    out = tmp_path / "report.html"
    assert _report(trail, "triage-acuity@2.0.0", out)[0] == 0
    dom_text = dump_dom(out)
    dom = Dom(dom_text)
    # Chromium parsed the inline SVG as SVG: the plot has its rows, and the browser kept the structure.
    assert [t for t, a in dom.elements if t == "svg"] == ["svg"]
    assert len(dom.tags("circle")) == 7
    assert len(re.findall(r"<tr><td>\d+</td>", re.findall(r'<table class="decisions">.*?</table>', dom_text, re.S)[0])) == 3
    assert {a["data-step"] for t, a in dom.elements if t == "li" and "data-step" in a} >= {"bias", "approvals", "chain"}
    assert "Audit report: triage-acuity 2.0.0" in re.search(r"<title>(.*?)</title>", dom_text).group(1)


@needs_chromium
def test_chromium_hostile_report_runs_no_script(hostile, tmp_path):
    dom_text = dump_dom(hostile)
    dom = Dom(dom_text)
    assert "PWNED" not in re.search(r"<title>(.*?)</title>", dom_text).group(1)
    assert not dom.tags("script") and not dom.tags("img") and not dom.tags("b")
    assert f"Decision support {HOSTILE} for triage nurses" in dom.all_text()


@needs_chromium
def test_chromium_screenshot_shows_the_plot(trail, tmp_path):
    from PIL import Image

    out = tmp_path / "report.html"
    assert _report(trail, "triage-acuity@2.0.0", out)[0] == 0
    png = tmp_path / "report.png"
    screenshot(out, png, width=1280, height=3000)
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 3000)
    colours = image.getcolors(maxcolors=1 << 20)
    counts = {rgb: n for n, rgb in colours}
    # the flagged group's red marker and whisker, the band's amber and the zone's pink are drawn
    assert sum(n for rgb, n in counts.items() if _near(rgb, (0xB4, 0x23, 0x18))) > 100
    assert sum(n for rgb, n in counts.items() if _near(rgb, (0xFF, 0xF4, 0xD6))) > 2000
    assert sum(n for rgb, n in counts.items() if _near(rgb, (0xFD, 0xE2, 0xE0))) > 2000
    assert len(colours) > 50  # text was rendered, not a blank page


def _near(a, b, tol=6):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


@needs_chromium
def test_pdf(trail, tmp_path):
    out, pdf = tmp_path / "report.html", tmp_path / "report.pdf"
    code, stdout, err = _report(trail, "chest-xray@0.9.0", out, "--pdf", pdf)
    assert code == 0, err
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 20_000 and f"and {pdf}" in stdout


def test_pdf_without_chromium_is_a_one_line_error(trail, tmp_path, monkeypatch):
    monkeypatch.setenv("MLGATE_CHROMIUM", str(tmp_path / "no-such-browser"))
    code, _o, err = _report(trail, "chest-xray", tmp_path / "r.html", "--pdf", tmp_path / "r.pdf")
    assert code == 2 and "Chromium is not installed" in err and INSTALL_HINT in err and err.count("\n") == 1


def test_several_model_digests_render_as_markup_not_text():
    """Markup(", ").join(...) returns a plain str, which the page escapes again: use html.join."""
    from mlgate.report.html import join, tag

    joined = join((tag("code", "a"), tag("code", "<b>")), ", ")
    assert joined == "<code>a</code>, <code>&lt;b&gt;</code>"
    assert tag("td", joined) == "<td><code>a</code>, <code>&lt;b&gt;</code></td>"
