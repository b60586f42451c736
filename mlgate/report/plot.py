"""The bias audit as an inline SVG forest plot, generated here (no plotting library, no fonts
or images to embed, identical bytes for identical input).

One row per comparison (attribute = group against its reference): the group's metric with its
confidence interval (whisker), the reference's metric (a diamond), and the policy's threshold
band: the light band is "within delta below the reference", the red zone left of it is "more
than delta below the reference" (a material gap; the policy also asks for significance, so a
point in the red zone fails only when Holm's p < alpha; the table beside the plot has the
numbers and the gate's verdict). Rows the gate flagged are red.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from mlgate.report.html import Markup, tag

WIDTH = 900
LEFT, PLOT_W = 200, 440
ROW_H, TOP, BOTTOM = 30, 58, 44
INK, MUTED, FAIL, PASS, GREY = "#1b1f24", "#57606a", "#b42318", "#1f4e9c", "#8c959f"
BAND, ZONE = "#fff4d6", "#fde2e0"


def _fmt(x: Any, digits: int = 3) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}"


def _p(x: Any) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        return "n/a"
    return f"{x:.2g}" if x < 0.001 else f"{x:.3f}"


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _clip(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0) if span / s <= 8)
    first = math.ceil(lo / step - 1e-9) * step
    out, t = [], first
    while t <= hi + 1e-9:
        out.append(round(t, 6))
        t += step
    return out


def forest_plot(rows: Sequence[dict[str, Any]], *, metric: str, delta: float | None, confidence: Any) -> Markup:
    """``rows``: dicts with label, value, ci_low, ci_high, reference_value, reference_group,
    gap, gap_ci_low, gap_ci_high, p_holm, insufficient, flagged (bool)."""
    values: list[float] = []
    for r in rows:
        for k in ("value", "ci_low", "ci_high", "reference_value"):
            v = _num(r.get(k))
            if v is not None:
                values.append(v)
        ref = _num(r.get("reference_value"))
        if ref is not None and delta is not None:
            values.append(ref - delta)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max((hi - lo) * 0.08, 0.01)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    if hi - lo < 0.02:
        lo, hi = max(0.0, lo - 0.01), min(1.0, hi + 0.01)

    def x(v: float) -> float:
        return round(LEFT + (min(max(v, lo), hi) - lo) / (hi - lo) * PLOT_W, 2)

    height = TOP + ROW_H * max(len(rows), 1) + BOTTOM
    conf = f"{round(confidence * 100)}% CI" if _num(confidence) is not None else "CI"
    parts: list[Markup] = []
    # legend
    lx = LEFT
    parts.append(tag("circle", cx=lx + 6, cy=16, r=4.5, fill=PASS))
    parts.append(tag("line", x1=lx - 4, y1=16, x2=lx + 16, y2=16, stroke=PASS, stroke_width=2))
    parts.append(tag("text", f"group {metric} ({conf})", x=lx + 22, y=20, font_size=12, fill=INK))
    lx += 190
    parts.append(tag("path", d=f"M{lx + 6} 10 L{lx + 12} 16 L{lx + 6} 22 L{lx} 16 Z", fill="#fff", stroke=INK, stroke_width=1.5))
    parts.append(tag("text", "reference", x=lx + 18, y=20, font_size=12, fill=INK))
    lx += 95
    if delta is not None:
        parts.append(tag("rect", x=lx, y=9, width=14, height=14, fill=BAND, stroke="#d4a72c"))
        parts.append(tag("text", f"within \u03b4 = {delta:g} below reference", x=lx + 20, y=20, font_size=12, fill=INK))
        parts.append(tag("rect", x=lx, y=31, width=14, height=14, fill=ZONE, stroke=FAIL, stroke_opacity=0.5))
        parts.append(tag("text", "material gap (\u2265 \u03b4)", x=lx + 20, y=42, font_size=12, fill=INK))
    else:
        parts.append(tag("text", "threshold \u03b4 unknown (no policy data for this environment)", x=lx, y=20, font_size=12, fill=MUTED))
    parts.append(tag("text", "gap [CI], p (Holm)", x=LEFT + PLOT_W + 16, y=TOP - 6, font_size=11, fill=MUTED))

    for i, r in enumerate(rows):
        y0 = TOP + i * ROW_H
        cy = y0 + ROW_H / 2
        ref = _num(r.get("reference_value"))
        if i % 2 == 1:
            parts.append(tag("rect", x=0, y=y0, width=WIDTH, height=ROW_H, fill="#f6f8fa"))
        if ref is not None and delta is not None:
            x_thr, x_ref = x(ref - delta), x(ref)
            parts.append(tag("rect", x=LEFT, y=y0 + 3, width=max(0.0, round(x_thr - LEFT, 2)), height=ROW_H - 6, fill=ZONE))
            parts.append(tag("rect", x=x_thr, y=y0 + 3, width=max(0.0, round(x_ref - x_thr, 2)), height=ROW_H - 6, fill=BAND))
            parts.append(tag("line", x1=x_thr, y1=y0 + 3, x2=x_thr, y2=y0 + ROW_H - 3, stroke=FAIL, stroke_width=1, stroke_dasharray="3 2"))
        colour = GREY if r.get("insufficient") else FAIL if r.get("flagged") else PASS
        label = _clip(str(r.get("label", "")))
        parts.append(tag("text", label, x=LEFT - 10, y=cy + 4, font_size=12, fill=FAIL if r.get("flagged") else INK, text_anchor="end",
                         font_weight="bold" if r.get("flagged") else None))
        lo_ci, hi_ci, val = _num(r.get("ci_low")), _num(r.get("ci_high")), _num(r.get("value"))
        if lo_ci is not None and hi_ci is not None:
            parts.append(tag("line", x1=x(lo_ci), y1=cy, x2=x(hi_ci), y2=cy, stroke=colour, stroke_width=2))
            for end in (lo_ci, hi_ci):
                parts.append(tag("line", x1=x(end), y1=cy - 5, x2=x(end), y2=cy + 5, stroke=colour, stroke_width=2))
        if ref is not None:
            xr = x(ref)
            parts.append(tag("path", d=f"M{xr} {cy - 6} L{xr + 6} {cy} L{xr} {cy + 6} L{xr - 6} {cy} Z", fill="#fff", stroke=INK, stroke_width=1.5))
        if val is not None:
            parts.append(tag("circle", tag("title", f"{r.get('label')}: {metric} {_fmt(val)} ({conf} {_fmt(lo_ci)} to {_fmt(hi_ci)}); "
                                                    f"reference {r.get('reference_group')} {_fmt(ref)}"),
                             cx=x(val), cy=cy, r=4.5, fill=colour))
        note = "insufficient" if r.get("insufficient") else f"{_fmt(_num(r.get('gap')))} [{_fmt(_num(r.get('gap_ci_low')))}, {_fmt(_num(r.get('gap_ci_high')))}], p {_p(_num(r.get('p_holm')))}"
        parts.append(tag("text", note, x=LEFT + PLOT_W + 16, y=cy + 4, font_size=11, fill=FAIL if r.get("flagged") else MUTED))
    # axis
    ya = TOP + ROW_H * max(len(rows), 1) + 6
    parts.append(tag("line", x1=LEFT, y1=ya, x2=LEFT + PLOT_W, y2=ya, stroke=INK, stroke_width=1))
    for t in _ticks(lo, hi):
        parts.append(tag("line", x1=x(t), y1=ya, x2=x(t), y2=ya + 5, stroke=INK, stroke_width=1))
        parts.append(tag("text", f"{t:g}", x=x(t), y=ya + 18, font_size=11, fill=INK, text_anchor="middle"))
    parts.append(tag("text", metric, x=LEFT + PLOT_W / 2, y=ya + 34, font_size=12, fill=INK, text_anchor="middle"))
    return tag("svg", tag("title", f"Per-group {metric} with {conf} and the threshold band"), *parts,
               xmlns="http://www.w3.org/2000/svg", viewBox=f"0 0 {WIDTH} {height}", width=WIDTH, height=height,
               role="img", class_="forest", font_family="system-ui, -apple-system, 'Segoe UI', sans-serif",
               aria_label=f"Per-group {metric} with {conf} and the threshold band")
