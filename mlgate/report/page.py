"""The auditor report as one self-contained HTML page: inline CSS, inline SVG, no script, no
external resource (the Content-Security-Policy forbids both), escaped by construction
(:mod:`mlgate.report.html`). Printable (``@media print``) and printed to PDF by Chromium.
"""

from __future__ import annotations

from typing import Any

from mlgate.report.gather import EvidenceFile, ReportData
from mlgate.report.html import Markup, esc, join, raw_static, tag, void
from mlgate.report.plot import forest_plot

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = raw_static("""
:root { --ink:#1b1f24; --muted:#57606a; --line:#d0d7de; --ok:#1a7f37; --okbg:#dafbe1; --bad:#b42318; --badbg:#ffebe9;
        --warn:#9a6700; --warnbg:#fff8c5; --none:#57606a; --nonebg:#eaeef2; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 0; background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; }
header.top { border-bottom: 3px solid var(--ink); padding-bottom: 12px; margin-bottom: 16px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); break-after: avoid; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta { color: var(--muted); margin: 2px 0; }
code, .digest { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 7px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
td .pill { white-space: normal; }
table.decisions, table.bias { table-layout: fixed; }
table.decisions td, table.bias td { overflow-wrap: anywhere; }
table.decisions th:nth-child(1) { width: 5%; } table.decisions th:nth-child(2) { width: 12%; }
table.decisions th:nth-child(3) { width: 10%; } table.decisions th:nth-child(4) { width: 9%; }
table.decisions th:nth-child(5) { width: 9%; } table.decisions th:nth-child(6) { width: 8%; }
table.decisions th:nth-child(7) { width: 11%; } table.decisions th:nth-child(8) { width: 8%; }
table.decisions td .pill { overflow-wrap: normal; }
table.bias th:nth-child(1) { width: 17%; } table.bias th:nth-child(10) { width: 15%; }
.path { overflow-wrap: anywhere; }
table.bias td, table.bias th { font-size: 12px; }
figure { margin: 8px 0; }
th { background: #f6f8fa; font-weight: 600; }
tr { break-inside: avoid; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 6px 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.pill { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.ok { color: var(--ok); background: var(--okbg); } .bad { color: var(--bad); background: var(--badbg); }
.warn { color: var(--warn); background: var(--warnbg); } .none { color: var(--none); background: var(--nonebg); }
ol.chain { list-style: none; display: flex; flex-wrap: wrap; gap: 6px; padding: 0; margin: 12px 0; counter-reset: step; }
ol.chain li { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; min-width: 118px; background: #fff; }
ol.chain li::before { counter-increment: step; content: counter(step) ". "; color: var(--muted); font-size: 12px; }
ol.chain li + li { position: relative; }
ol.chain li .name { font-weight: 600; display: block; }
.banner { border-radius: 6px; padding: 10px 14px; margin: 10px 0; font-weight: 600; }
.banner.bad { border: 2px solid var(--bad); } .banner.ok { border: 1px solid var(--ok); }
.note { color: var(--warn); background: var(--warnbg); padding: 6px 10px; border-radius: 4px; margin: 6px 0; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; border-left: 3px solid var(--line); padding: 6px 10px; margin: 4px 0 10px; max-height: none; }
svg.forest { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.small { font-size: 12px; color: var(--muted); }
ul.violations { margin: 0; padding-left: 18px; }
ul.violations li { overflow-wrap: anywhere; }
ul.violations li.waived { list-style: none; margin-left: -18px; border-left: 3px solid var(--warn); padding-left: 6px; background: var(--warnbg); }
div.waiver { border: 1px solid var(--line); border-left: 4px solid var(--warn); border-radius: 4px; padding: 4px 12px 8px; margin: 10px 0; break-inside: avoid; }
div.waiver.bad { border-left-color: var(--bad); }
footer { margin-top: 32px; border-top: 1px solid var(--line); padding-top: 8px; color: var(--muted); font-size: 12px; }
@media print { table { table-layout: fixed; font-size: 10.5px; } table.bias td, table.bias th { font-size: 10px; } th, td { overflow-wrap: anywhere; } main { max-width: none; padding: 0; } h2 { break-before: auto; } .text { max-height: none; } a { color: inherit; } }
@page { size: A4; margin: 14mm 12mm; }
""")


def pill(state: str, text: str) -> Markup:
    return tag("span", text, class_=f"pill {state}")


def short(digest: Any, n: int = 16) -> str:
    return str(digest)[:n] if digest else "-"


def digest_cell(digest: Any) -> Markup:
    return tag("code", str(digest), class_="digest") if digest else esc("-")


def table(headers: list[str], rows: list[list[Any]], *, cls: str | None = None) -> Markup:
    return tag("table", tag("thead", tag("tr", [tag("th", h) for h in headers])),
               tag("tbody", [tag("tr", [tag("td", c) for c in row]) for row in rows]), class_=cls)


def kv(pairs: list[tuple[str, Any]]) -> Markup:
    return tag("dl", [[tag("dt", k), tag("dd", v)] for k, v in pairs], class_="kv")


def _source(ef: EvidenceFile | None) -> Markup:
    if ef is None:
        return esc("-")
    if ef.data is not None:
        return tag("span", ef.source)
    return tag("span", f"unavailable: {ef.problem}", class_="pill bad")


# --------------------------------------------------------------------------- steps
def _step_states(d: ReportData) -> list[tuple[str, str, str, str]]:
    """(anchor, name, state, text) per link of the traceability chain."""
    out = []
    if not d.datasets:
        out.append(("datasets", "Datasets", "none", "none recorded"))
    elif any(x["ok"] is False for x in d.datasets):
        out.append(("datasets", "Datasets", "bad", "digest mismatch"))
    else:
        out.append(("datasets", "Datasets", "ok", f"{len(d.datasets)} by digest"))
    if not d.validations:
        out.append(("validation", "Data validation", "none", "none"))
    elif all(v.get("available") and v.get("success") for v in d.validations):
        out.append(("validation", "Data validation", "ok", "all passed"))
    else:
        out.append(("validation", "Data validation", "bad", "failed or unavailable"))
    sig = (d.model or {}).get("signature")
    if not d.model.get("digest"):
        out.append(("model", "Model", "none", "no digest"))
    elif sig and sig.get("gate"):
        out.append(("model", "Model", "bad", "signature finding"))
    else:
        out.append(("model", "Model", "ok", short(d.model["digest"], 12)))
    card = d.model_card
    if card is None:
        out.append(("model-card", "Model card", "none" if d.model_card_file is None else "bad", "none" if d.model_card_file is None else "unavailable"))
    elif not card.get("valid", False) or card.get("placeholders"):
        out.append(("model-card", "Model card", "warn", "incomplete"))
    else:
        out.append(("model-card", "Model card", "ok", "present"))
    if d.bias is None:
        out.append(("bias", "Bias audit", "none" if d.bias_file is None else "bad", "none" if d.bias_file is None else "unavailable"))
    elif not d.bias.get("valid") or any(r["violations"] for r in d.bias_rows):
        flagged = sum(1 for r in d.bias_rows if r["flagged"])
        out.append(("bias", "Bias audit", "bad", f"{flagged} group(s) flagged" if flagged else "invalid"))
    elif any(r["flagged"] for r in d.bias_rows):  # flagged, and every finding waived
        out.append(("bias", "Bias audit", "warn", f"{sum(1 for r in d.bias_rows if r['flagged'])} group(s) flagged, waived"))
    else:
        out.append(("bias", "Bias audit", "ok", "no group flagged"))
    if not d.approvals:
        out.append(("approvals", "Approvals", "none", "none"))
    elif all(a.get("verified") and a.get("bound_to_model") and not a.get("evidence_changed") for a in d.approvals):
        out.append(("approvals", "Approvals", "ok", f"{len(d.approvals)} signed"))
    else:
        out.append(("approvals", "Approvals", "bad", "not bound / invalid"))
    latest = d.records[-1] if d.records else None
    if not d.waivers:
        out.append(("waivers", "Waivers", "none", "none"))
    elif any(_waiver_problem(w) for w in d.waivers if not w["recorded_only"]):
        out.append(("waivers", "Waivers", "bad", "not bound / invalid"))
    else:  # a valid waiver is still an accepted risk: never shown as plain green
        applied = sum(1 for e in (latest or {}).get("waivers") or [] if isinstance(e, dict) and e.get("applied"))
        out.append(("waivers", "Waivers", "warn", f"{len(d.waivers)} signed, {applied} applied (latest)"))
    if latest is None:
        out.append(("decisions", "Gate decisions", "none", "none recorded"))
    else:
        res = str(latest.get("result"))
        waived = _waived(latest)
        state = ("warn" if waived else "ok") if res == "allow" else "bad"
        out.append(("decisions", "Gate decisions", state, f"latest: {res.upper()} ({latest.get('environment')})"
                    + (f", {len(waived)} finding(s) waived" if waived else "")))
    v = d.verification
    out.append(("chain", "Chain verification", "ok" if v is not None and v.ok else "bad", (v.status.upper() if v is not None else "not run")))
    return out


def _waived(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's findings that a waiver turned from violations into warnings."""
    return [w for w in record.get("warnings") or [] if isinstance(w, dict) and isinstance(w.get("waiver"), dict)]


def _waiver_problem(w: dict[str, Any]) -> str | None:
    """Why a waiver file cannot be relied on (unavailable, not verified, another model), else None."""
    if not w.get("available"):
        return "unavailable"
    if not w.get("verified"):
        return "NOT verified"
    if w.get("bound_to_model") is False:
        return "another model"
    return None


def _header(d: ReportData) -> Markup:
    v = d.verification
    banner = None
    if v is not None and not v.ok:
        banner = tag("div", f"The audit trail did not verify ({v.status}): {v.problem}", class_="banner bad", role="alert", id="chain-banner")
    return tag("header", tag("h1", f"Audit report: {d.title}"),
               tag("p", "Traceability of one model release for an auditor (21 CFR Part 11: 11.10(b) and (e), 11.50, 11.70; EU AI Act Art. 12).", class_="meta"),
               kv([("Release", d.title), ("Model digest", digest_cell(d.model.get("digest"))), ("Audit trail", d.trail_location),
                   ("Generated", f"{d.generated_at} by mlgate {d.mlgate_version}"),
                   ("Evidence basis", f"decision sequence {d.basis.get('sequence')} ({d.basis.get('decision_id')}) at {d.basis.get('timestamp')}"
                    if d.basis else "no recorded decision")]),
               banner,
               tag("ol", [tag("li", tag("span", name, class_="name"), pill(state, text), data_step=anchor, data_state=state)
                          for anchor, name, state, text in _step_states(d)], class_="chain", aria_label="Traceability chain"),
               [tag("p", n, class_="note") for n in d.notes],
               class_="top")


def _datasets(d: ReportData) -> Markup:
    rows = [[x["name"] or "-", x["uri"], digest_cell(x["declared"]), digest_cell(x["read"]),
             pill("ok" if x["ok"] else "bad" if x["ok"] is False else "none", x["status"])] for x in d.datasets]
    body = table(["Dataset", "URI / path", "Declared sha256 (manifest)", "sha256 read by the gate", "Status"], rows) if rows else \
        tag("p", "No dataset was recorded.", class_="small")
    return tag("section", tag("h2", "1. Datasets"), body, id="datasets")


def _validations(d: ReportData) -> Markup:
    parts = []
    for v in d.validations:
        if not v.get("available"):
            parts.append(tag("h3", v["path"]))
            parts.append(tag("p", pill("bad", "unavailable"), " ", v.get("problem")))
            continue
        ds = v.get("dataset") or {}
        state = pill("ok", "PASSED") if v.get("success") else pill("bad", "FAILED")
        parts.append(tag("h3", v["path"], " ", state))
        unlinked = "not linked to a dataset" if d.manifest is not None else "unknown without the release manifest (pass --release-dir)"
        parts.append(kv([("Dataset", f"{ds.get('name')} (sha256 {short(ds.get('digest'))})" if ds else unlinked),
                         ("Suite", v.get("suite_name") or "-"), ("Validated at", v.get("validated_at") or "-"),
                         ("Expectations", f"{v.get('successful')} of {v.get('evaluated')} passed"),
                         ("Great Expectations", v.get("gx_version") or "-"), ("File sha256", digest_cell(v.get("digest"))),
                         ("Bytes from", v.get("source"))]))
        if v.get("failed_expectations"):
            parts.append(table(["Failed expectation", "Column", "Unexpected", "Severity"],
                               [[f.get("type"), f.get("column") or "-", f.get("unexpected_count") if f.get("unexpected_count") is not None else "-",
                                 f.get("severity") or "-"] for f in v["failed_expectations"]]))
        for err in v.get("errors") or []:
            parts.append(tag("p", err, class_="note"))
    if not parts:
        parts.append(tag("p", "No data-validation result was recorded.", class_="small"))
    return tag("section", tag("h2", "2. Data validation"), parts, id="validation")


def _model(d: ReportData) -> Markup:
    m = d.model
    pairs: list[tuple[str, Any]] = [("Model digest (sha256, OpenSSF model-signing root)", digest_cell(m.get("digest")))]
    if len(d.model_digests) > 1:
        pairs.append(("Other digests in these decisions", join((digest_cell(x) for x in d.model_digests if x != m.get("digest")), ", ")))
    if m.get("path"):
        pairs.append(("Model directory", m["path"]))
    if m.get("storage_uri"):
        pairs.append(("Storage URI", m["storage_uri"]))
    sig = m.get("signature")
    if sig:
        pairs.append(("Model signature", tag("span", sig["path"], " ", digest_cell(sig["digest"]))))
        pairs.append(("Signing key", f"{sig.get('signer') or 'a key not listed as a model signer'} (key id {short(sig.get('key_id'))})"
                      if sig.get("key_id") else (sig.get("problem") or "-")))
        pairs.append(("Gate's signature check", pill("bad", sig["gate"]) if sig.get("gate") else pill("ok", "no finding in the basis decision")))
    return tag("section", tag("h2", "3. Model"), kv(pairs), id="model")


_CARD_SECTIONS = [("intended_use", "Intended use"), ("out_of_scope_use", "Out-of-scope use"), ("limitations", "Limitations")]


def _model_card(d: ReportData) -> Markup:
    parts = []
    ef = d.model_card_file
    card = d.model_card
    if ef is None:
        parts.append(tag("p", "No model card was recorded.", class_="small"))
    elif card is None:
        parts.append(tag("p", pill("bad", "unavailable"), " ", ef.rel, ": ", ef.problem))
    else:
        sections = card.get("sections") or {}
        present = [k for k, s in sections.items() if isinstance(s, dict) and s.get("present") and not s.get("empty")]
        missing = [k for k, s in sections.items() if isinstance(s, dict) and (not s.get("present") or s.get("empty"))]
        parts.append(kv([("File", tag("span", ef.rel, " ", digest_cell(ef.digest))), ("Title", card.get("title") or "-"),
                         ("Format", card.get("format") or "-"), ("Bytes from", ef.source),
                         ("Sections present", ", ".join(present) or "-"), ("Sections missing or empty", ", ".join(missing) or "none"),
                         ("Placeholders", ", ".join(card.get("placeholders") or []) or "none")]))
        for key, title in _CARD_SECTIONS:
            text = card.get(key)
            parts.append(tag("h3", title))
            parts.append(tag("div", text, class_="text", data_section=key) if text else tag("p", "(not stated)", class_="small"))
        for err in card.get("errors") or []:
            parts.append(tag("p", err, class_="note"))
    return tag("section", tag("h2", "4. Model card summary"), parts, id="model-card")


def _num(x: Any, digits: int = 4) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "-" if x is None else str(x)
    return f"{x:.{digits}g}"


def _bias(d: ReportData) -> Markup:
    parts = []
    ef, b = d.bias_file, d.bias
    if ef is None:
        parts.append(tag("p", "No bias audit was recorded.", class_="small"))
    elif b is None:
        parts.append(tag("p", pill("bad", "unavailable"), " ", ef.rel, ": ", ef.problem))
    else:
        t = d.thresholds or {}
        model = d.model.get("digest")
        same_model = b.get("subject_digest") == model if b.get("subject_digest") else None
        parts.append(kv([("File", tag("span", ef.rel, " ", digest_cell(ef.digest))), ("Bytes from", ef.source),
                         ("Metric", f"{b.get('metric')} (reference: {b.get('reference')}, {_num(b.get('confidence'))} confidence)"),
                         ("Audited model", tag("span", digest_cell(b.get("subject_digest")), " ",
                                               pill("ok", "the released model") if same_model else pill("bad", "NOT the released model"))),
                         ("Created", b.get("created_at") or "-"), ("Rows", b.get("row_count")),
                         ("Thresholds", f"delta {t.get('delta')}, alpha {t.get('alpha')}, n_min {t.get('n_min')}, non-inferiority "
                                        f"{'required' if t.get('non_inferiority') else 'not required'}" if t else "unknown"),
                         ("Threshold source", d.threshold_note or "-"),
                         ("Valid record", pill("ok", "yes") if b.get("valid") else pill("bad", "no"))]))
        for err in b.get("errors") or []:
            parts.append(tag("p", err, class_="note"))
        delta = t.get("delta") if isinstance(t.get("delta"), (int, float)) and not isinstance(t.get("delta"), bool) else None
        if d.bias_rows:
            parts.append(tag("figure", forest_plot(d.bias_rows, metric=str(b.get("metric")), delta=delta, confidence=b.get("confidence")),
                             tag("figcaption", f"Per-group {b.get('metric')} with its confidence interval, the reference's value, and the band "
                                               f"within delta below the reference. Red rows: flagged by the gate in the basis decision "
                                               f"(a waived finding included: see the Gate column and Waivers).", class_="small"),
                             id="bias-plot"))
            rows = []
            for r in d.bias_rows:
                if r["flagged"]:
                    state = [pill("bad", "FLAGGED " + ", ".join(r["violations"])) if r["violations"] else None,
                             pill("warn", "WAIVED " + ", ".join(r["waived"])) if r.get("waived") else None]
                else:
                    state = pill("none", "insufficient") if r.get("insufficient") else pill("ok", "no violation")
                rows.append([r["label"], f"{r.get('successes')}/{r.get('trials')}", _num(r.get("value")),
                             f"[{_num(r.get('ci_low'))}, {_num(r.get('ci_high'))}]", f"{r.get('reference_group')}: {_num(r.get('reference_value'))}",
                             _num(r.get("gap")), f"[{_num(r.get('gap_ci_low'))}, {_num(r.get('gap_ci_high'))}]", _num(r.get("p_value")),
                             _num(r.get("p_holm")), state])
            parts.append(table(["Group", "Successes/trials", b.get("metric") or "value", "CI", "Reference", "Gap", "Gap CI", "p", "p (Holm)", "Gate"],
                               rows, cls="bias"))
    return tag("section", tag("h2", "5. Bias audit"), parts, id="bias")


def _approvals(d: ReportData) -> Markup:
    rows = []
    for a in d.approvals:
        if not a.get("available"):
            rows.append([a["path"], "-", "-", "-", "-", "-", pill("bad", "unavailable"), a.get("problem")])
            continue
        binding = []
        if a.get("bound_to_model") is False:
            binding.append(pill("bad", f"signed for another model {short(a.get('subject_digest'), 12)}"))
        elif a.get("bound_to_model"):
            binding.append(pill("ok", "this model"))
        if a.get("evidence_changed"):
            binding.append(pill("bad", "evidence changed since: " + ", ".join(a["evidence_changed"])))
        elif a.get("verified"):
            binding.append(pill("ok", "the evidence shown"))
        status = pill("ok", "verified") if a.get("verified") else pill("bad", "NOT verified")
        rows.append([tag("span", tag("strong", a.get("printed_name") or "-"), void("br"), tag("span", a.get("signer_id") or "", class_="small")),
                     a.get("signed_at") or "-", tag("strong", a.get("meaning") or "-"), a.get("role") or "-", a.get("environment") or "-",
                     a.get("expires_at") or "never", status, [binding, tag("div", a.get("reason"), class_="small") if a.get("reason") else None,
                                                               tag("div", a["path"], class_="small path")]])
    body = table(["Printed name", "Signed (UTC)", "Meaning", "Role", "Environment", "Expires", "Signature", "Bound to"], rows, cls="approvals") if rows else \
        tag("p", "No approval was recorded.", class_="small")
    trust = tag("p", f"Signatures verified against the trust policy {d.trust_source or '(not loaded)'} when this report was generated.", class_="small")
    return tag("section", tag("h2", "6. Approvals (electronic signatures, 11.50)"), body, trust, id="approvals")


def _applied_cell(a: dict[str, Any]) -> Markup:
    if a["entry"] is None:
        return pill("none", "not recorded")
    if a["applied"]:
        return pill("warn", "APPLIED: waived " + ", ".join(a["waived"]))
    return pill("none", "NOT applied")


def _waiver(w: dict[str, Any]) -> Markup:
    problem = _waiver_problem(w)
    if not w.get("available"):
        status = [pill("bad", "unavailable"), tag("div", w.get("problem"), class_="small")]
    elif w.get("verified"):
        status = pill("ok", "verified")
    else:
        status = [pill("bad", "NOT verified"), tag("div", w.get("reason"), class_="small")]
    if w.get("bound_to_model") is False:
        bound = pill("bad", f"signed for another model {short(w.get('subject_digest'), 12)}")
    elif w.get("bound_to_model"):
        bound = pill("ok", "this model")
    else:
        bound = esc("unknown (the file is not available)" if not w.get("available") else "-")
    expiry: list[Any] = [w.get("expires_at") or "-"]
    if w.get("expired_now") is not None:
        expiry += [" ", pill("none", "expired when this report was generated") if w["expired_now"] else
                   pill("warn", "not expired when this report was generated")]
    signer = tag("span", tag("strong", w.get("printed_name") or "-"), " ", tag("span", f"<{w.get('signer_id')}>" if w.get("signer_id") else "", class_="small"))
    pairs: list[tuple[str, Any]] = [
        ("Signed by (printed name)", signer), ("Role", w.get("role") or "-")]
    if w.get("available"):
        pairs.append(("Environment", w.get("environment") or "-"))
    pairs += [
        ("Signed (UTC)", w.get("signed_at") or "-"), ("Expires (UTC)", expiry),
        ("Rules covered", join((tag("code", r) for r in w.get("rules") or []), ", ") if w.get("rules") else "-"),
        ("Justification", tag("div", w.get("justification"), class_="text", data_section="justification") if w.get("justification") else "-"),
        ("Ticket", w.get("ticket") or "-"), ("Signature", status), ("Bound to", bound),
        ("File", tag("span", tag("span", w["path"], class_="path"), " ", digest_cell(w.get("digest")))),
    ]
    if w.get("source"):
        pairs.append(("Bytes from", w["source"]))
    rows = [tag("tr", tag("td", a["sequence"]), tag("td", a["timestamp"]), tag("td", a["environment"] or "-"),
                tag("td", pill("ok" if str(a["result"]) == "allow" else "bad", str(a["result"]).upper())),
                tag("td", _applied_cell(a)), tag("td", a["reason"] or "-"),
                data_sequence=a["sequence"], data_applied="true" if a["applied"] else "false")
            for a in w["decisions"]]
    applied = tag("table", tag("thead", tag("tr", [tag("th", h) for h in ["Decision", "Time (UTC)", "Env", "Result", "Applied", "Reason not applied"]])),
                  tag("tbody", rows), class_="waiver-decisions") if rows else tag("p", "No recorded decision read this waiver.", class_="small")
    return tag("div", tag("h3", w.get("printed_name") or w["path"], " ", tag("span", w.get("role") or "", class_="small"), " ", pill("bad", problem) if problem else pill("warn", "risk acceptance")),
               kv(pairs), tag("h4", "What the gate did with it (from each decision's record)"), applied,
               class_="waiver bad" if problem and not w["recorded_only"] else "waiver", data_waiver=w["path"])


def _waivers(d: ReportData) -> Markup:
    intro = tag("p", "A waiver is a signed, time-limited acceptance of the risk of named violations for one model. The gate turns a "
                     "violation it covers into a warning only when the policy accepts the waiver (signer's role, environment, model digest, "
                     "validity window, waivers.max_days, waivers.not_waivable); whether it did is copied from each decision's record.",
                class_="small")
    body = [_waiver(w) for w in d.waivers] or [tag("p", "No waiver was recorded.", class_="small")]
    trust = tag("p", f"Signatures verified against the trust policy {d.trust_source or '(not loaded)'} when this report was generated.", class_="small")
    return tag("section", tag("h2", "7. Waivers (risk acceptance)"), intro, body, trust, id="waivers")


def _decisions(d: ReportData) -> Markup:
    basis_ev = (d.basis or {}).get("evidence_digests") or {}
    rows = []
    for r in d.records:
        rel = r.get("release") if isinstance(r.get("release"), dict) else {}
        git = r.get("policy_git") if isinstance(r.get("policy_git"), dict) else None
        policy = [tag("code", short(r.get("policy_revision"))), tag("div", f"git {short(git.get('commit'), 12)}{' (dirty)' if git.get('dirty') else ''}",
                                                                       class_="small") if git else None,
                  tag("div", f"{r.get('engine')} {r.get('engine_version')}", class_="small")]
        res = str(r.get("result"))
        findings = [v for v in r.get("violations") or [] if isinstance(v, dict)]
        waived = _waived(r)
        items = [tag("li", tag("strong", v.get("id")), " ", v.get("message")) for v in findings]
        # A waived finding is a warning in the record; shown here so a waived allow never looks like a clean one.
        items += [tag("li", pill("warn", "WAIVED"), " ", tag("strong", w.get("id")), " ", w.get("message"),
                      tag("div", f"justification: {w['waiver'].get('justification')}", class_="small"),
                      class_="waived", data_waiver=w["waiver"].get("path")) for w in waived]
        vlist = tag("ul", items, class_="violations") if items else esc("-")
        if r.get("error"):
            vlist = [vlist, tag("div", f"error: {r.get('error')}", class_="small")]
        ev = r.get("evidence_digests") or {}
        same = "the evidence shown" if ev == basis_ev and ev else "-" if not ev else f"differs ({sum(1 for k in set(ev) | set(basis_ev) if ev.get(k) != basis_ev.get(k))} file(s))"
        rows.append([r.get("sequence"), r.get("timestamp"), r.get("environment") or "-",
                     [pill("ok" if res == "allow" else "bad", res.upper()), [void("br"), pill("warn", f"{len(waived)} WAIVED")] if waived else None],
                     f"{rel.get('name')}@{rel.get('version')}" if rel else "-",
                     tag("span", r.get("actor") or "-", tag("div", f"{r.get('source')}, {r.get('action')}", class_="small")),
                     policy, same, vlist])
    body = table(["Seq", "Time (UTC)", "Env", "Result", "Release", "Actor", "Policy revision, engine", "Evidence", "Violations (and waived findings)"], rows, cls="decisions") \
        if rows else tag("p", "No decision was recorded for this release.", class_="small")
    return tag("section", tag("h2", "8. Gate decisions (time order)"), body, id="decisions")


def _chain(d: ReportData) -> Markup:
    v = d.verification
    if v is None:
        return tag("section", tag("h2", "9. Chain verification"), tag("p", "not run"), id="chain")
    head = tag("div", pill("ok", "INTACT") if v.ok else pill("bad", v.status.upper()), " ",
               f"{v.records} record(s) verified; head sequence {v.head_sequence}", class_=f"banner {'ok' if v.ok else 'bad'}", id="chain-status")
    pairs: list[tuple[str, Any]] = [("Trail", v.location), ("Head hash", digest_cell(v.head_hash))]
    if not v.ok:
        pairs += [("Problem", v.problem), ("Where", f"sequence {v.sequence}, {v.where}, field {v.field}")]
        if v.expected is not None or v.found is not None:
            pairs += [("Expected", tag("code", str(v.expected))), ("Found", tag("code", str(v.found)))]
    cps = v.checkpoints or []
    cp_rows = [[c.get("sequence") if c.get("sequence") is not None else "-", tag("code", short(c.get("hash"))), c.get("time") or "-",
                f"{c.get('signer_name')} <{c.get('signer_id')}>" if c.get("signer_id") else "-",
                pill("ok" if c["status"] == "ok" else "bad", c["status"].upper()), c.get("reason") or "", tag("div", c["where"], class_="small path")]
               for c in cps]
    parts = [tag("h2", "9. Chain verification"), head, kv(pairs)]
    if cp_rows:
        parts += [tag("h3", "Signed checkpoints"), table(["Sequence", "Hash", "Signed at", "Signer", "Status", "Reason", "Stored"], cp_rows)]
    for note in v.notes:
        parts.append(tag("p", note, class_="small"))
    return tag("section", parts, id="chain")


def _evidence_index(d: ReportData) -> Markup:
    rows = [[tag("span", e.rel, class_="path"), e.role.replace("_", " "), digest_cell(e.digest), _source(e)] for e in d.evidence]
    return tag("section", tag("h2", "Appendix: evidence files of the basis decision"),
               table(["Path", "Role", "sha256", "Bytes from"], rows) if rows else tag("p", "none", class_="small"), id="evidence")


def render(d: ReportData) -> str:
    body = tag("main", _header(d), _datasets(d), _validations(d), _model(d), _model_card(d), _bias(d), _approvals(d), _waivers(d), _decisions(d),
               _chain(d),
               _evidence_index(d),
               tag("footer", f"Generated {d.generated_at} by mlgate {d.mlgate_version} from {d.trail_location}. "
                             "Every value above is copied from the audit trail or from evidence whose sha256 the trail records."))
    head = tag("head", void("meta", charset="utf-8"), void("meta", http_equiv="Content-Security-Policy", content=CSP),
               void("meta", name="viewport", content="width=device-width, initial-scale=1"),
               void("meta", name="generator", content=f"mlgate {d.mlgate_version}"),
               tag("title", f"Audit report: {d.title}"), tag("style", CSS))
    return "<!DOCTYPE html>\n" + tag("html", head, tag("body", body), lang="en") + "\n"
