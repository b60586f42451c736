"""The bias audit: produce the record (``mlgate evidence bias``) and read it back as facts.

Producing (:func:`compute_bias_audit`) reads a predictions CSV, takes per-group counts from
Fairlearn's ``MetricFrame.by_group`` and leaves every statistic to statsmodels:

* per group: the metric as a proportion ``successes / trials`` with a Wilson score interval;
* per comparison (a group against its reference): a ONE-SIDED two-proportion score test,
  H1: the group's rate < the reference's rate; the gap ``reference - group`` (positive: the group
  is worse) with its Newcombe hybrid-score interval;
* Holm's step-down correction over the family of all *sufficient* comparisons, across every
  sensitive attribute of the record.

Insufficient evidence. A group whose trials (positives, for recall) are below ``n_min`` is
``insufficient``, and so is every comparison that involves it as the group or as the reference.
Insufficient comparisons are outside the Holm family: their p-value is still reported for
information when it can be computed, their ``p_holm`` is ``null``. The policy treats them as
INSUFFICIENT_EVIDENCE, which fails closed, so no test result can make them pass; keeping them
out of the family stops them from diluting (raising) ``p_holm`` of the comparisons that are
decided by the test.

Reading (:func:`read_bias_audit`): JSON, the JSON Schema and plain-Python bookkeeping checks
(tp + fn == positives, value == successes / trials, each value inside its interval, gap ==
reference - value inside its interval, p_holm >= p_value, sorted unique groups, reference counts,
insufficient flags); then, when those hold, every interval, p-value and Holm-adjusted p-value is
recomputed from the record's counts with the same statsmodels calls that made it
(:func:`group_interval`, :func:`compare_proportions`, :func:`holm`), so a number edited by
hand, even by an approver who then re-signs, is an error naming the subgroup and the field
(issue 14). statsmodels is imported when a record is read for the first time; what the
recomputation found is then remembered per user, keyed by the record's bytes, this code and the
installed statistics libraries (:func:`_recomputed_problems_cached` says why that is safe), so a
later ``mlgate check`` of the same record does not import it. pandas and Fairlearn are imported
only inside :func:`compute_bias_audit`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from pathlib import Path
from typing import Any, Sequence

from mlgate import safeio
from mlgate.canonical import sha256_hex
from mlgate.clock import epoch_ns, parse_time, rfc3339
from mlgate.errors import InputError

API_VERSION = "mlgate.dev/bias-audit/v1"
KIND = "BiasAudit"
SCHEMA = "bias_audit.schema.json"

#: metric -> (what counts as a success, what counts as a trial), over the confusion counts.
METRICS: dict[str, tuple[str, str]] = {
    "recall": ("tp", "positives"),          # tp / (tp + fn)
    "specificity": ("tn", "negatives"),     # tn / (tn + fp)
    "precision": ("tp", "predicted"),       # tp / (tp + fp)
    "selection_rate": ("predicted", "n"),   # (tp + fp) / n
}
#: ``reference`` keywords; any other string is a literal group value (the keywords win).
REFERENCE_MODES = ("rest", "best")

#: The test and intervals the record was made with (the record names them; alpha is policy data).
TEST = {
    "statistic": "score",        # statsmodels test_proportions_2indep(method="score"), Miettinen-Nurminen variance
    "alternative": "smaller",    # H1: group rate < reference rate
    "multiplicity": "holm",      # statsmodels multipletests(method="holm")
    "family": "sufficient",      # the Holm family: every comparison with insufficient == false
    "group_ci": "wilson",        # proportion_confint(method="wilson")
    "gap_ci": "newcomb",         # confint_proportions_2indep(method="newcomb"), of reference - group
}

#: Predictions files are bigger than documents, but still bounded.
MAX_PREDICTIONS_BYTES = 512 * 1024 * 1024
MAX_NAME = 256
SIGNIFICANT_DIGITS = 6
#: Cell values that mean "missing"; a missing label, prediction or group is an input error.
MISSING = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "NULL", "null", "None", "none", "<NA>", "#N/A"})
BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


# --------------------------------------------------------------------------- producing


def compute_bias_audit(
    predictions: Path,
    *,
    label: str,
    pred: str,
    sensitive: Sequence[str],
    metric: str = "recall",
    reference: str = "rest",
    n_min: int = 30,
    confidence: float = 0.95,
    seed: int = 0,
    subject_digest: str | None = None,
    created_at: dt.datetime,
) -> dict[str, Any]:
    """Compute the bias audit record of a predictions CSV; JSON-ready and deterministic.

    ``predictions`` has one row per case, binary ``label`` and ``pred`` columns (0/1 or
    true/false) and one column per sensitive attribute. Groups are the attribute's values,
    compared as text. Every expected failure is an :class:`InputError` naming the file or
    parameter and the column. ``seed`` is recorded only: every statistic here is analytic.
    """
    sensitive = _check_parameters(label, pred, sensitive, metric, reference, n_min, confidence, seed, subject_digest)
    created = rfc3339(created_at)  # a naive datetime is a programming error (ValueError)
    confidence = _round(confidence)  # the record's value is the one used, so a reader can re-derive
    path = Path(predictions)
    name = safeio.display(path)
    data = safeio.read_bytes(path, limit=MAX_PREDICTIONS_BYTES)

    import warnings

    import numpy as np
    from fairlearn.metrics import MetricFrame, count

    frame = _load_predictions(data, name, label, pred, sensitive)
    y_true = frame[label].to_numpy(dtype=np.int64)
    y_pred = frame[pred].to_numpy(dtype=np.int64)
    alpha_ci = 1.0 - confidence

    def _c(mask) -> int:
        return int(np.count_nonzero(mask))

    counters = {
        "n": count,
        "positives": lambda t, p: _c(np.asarray(t) == 1),
        "negatives": lambda t, p: _c(np.asarray(t) == 0),
        "tp": lambda t, p: _c((np.asarray(t) == 1) & (np.asarray(p) == 1)),
        "fn": lambda t, p: _c((np.asarray(t) == 1) & (np.asarray(p) == 0)),
        "tn": lambda t, p: _c((np.asarray(t) == 0) & (np.asarray(p) == 0)),
        "fp": lambda t, p: _c((np.asarray(t) == 0) & (np.asarray(p) == 1)),
    }
    success_key, trial_key = METRICS[metric]
    threshold = max(n_min, 1)  # no trials is never enough

    groups: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    raw_p: list[float | None] = []
    with warnings.catch_warnings():
        # A score test of two groups at the same boundary (0/n vs 0/m) divides 0 by 0; handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        for attribute in sorted(sensitive):
            by_group = MetricFrame(
                metrics=counters, y_true=y_true, y_pred=y_pred, sensitive_features=frame[attribute].rename(attribute)
            ).by_group
            rows = []
            for group_value, row in by_group.iterrows():
                c = {k: int(row[k]) for k in counters}
                c["predicted"] = c["tp"] + c["fp"]
                rows.append((str(group_value), c, c[success_key], c[trial_key]))
            rows.sort(key=lambda r: r[0])
            if len(rows) < 2:
                raise InputError(
                    f"attribute has a single group {rows[0][0]!r}; a bias audit needs at least two",
                    file=name, field=attribute,
                )
            for group_value, c, s, t in rows:
                low, high = group_interval(s, t, alpha_ci) if t else (None, None)
                groups.append({
                    "attribute": attribute, "group": group_value, "n": c["n"],
                    "positives": c["positives"], "negatives": c["negatives"],
                    "tp": c["tp"], "fn": c["fn"], "tn": c["tn"], "fp": c["fp"],
                    "successes": s, "trials": t,
                    "value": _round(s / t) if t else None, "ci_low": _round(low), "ci_high": _round(high),
                    "insufficient": t < threshold,
                })

            total_s = sum(r[2] for r in rows)
            total_t = sum(r[3] for r in rows)
            ref = _reference_row(rows, reference, threshold, name, attribute)
            for group_value, _counts, s, t in rows:
                if ref is None:
                    ref_name, ref_s, ref_t = "rest", total_s - s, total_t - t
                elif group_value == ref[0]:
                    continue  # the reference is not compared with itself
                else:
                    ref_name, ref_s, ref_t = ref[0], ref[2], ref[3]
                entry: dict[str, Any] = {
                    "attribute": attribute, "group": group_value, "reference_group": ref_name,
                    "successes": s, "trials": t, "reference_successes": ref_s, "reference_trials": ref_t,
                    "value": _round(s / t) if t else None,
                    "reference_value": _round(ref_s / ref_t) if ref_t else None, "gap": None, "gap_ci_low": None, "gap_ci_high": None,
                    "p_value": None, "p_holm": None,
                    "insufficient": t < threshold or ref_t < threshold,
                }
                p_value = None
                if t and ref_t:
                    value, ref_value = s / t, ref_s / ref_t
                    gap_low, gap_high, p_value = compare_proportions(s, t, ref_s, ref_t, alpha_ci)
                    entry.update({
                        "gap": _round(ref_value - value),
                        "gap_ci_low": _round(gap_low), "gap_ci_high": _round(gap_high),
                        "p_value": _round(p_value),
                    })
                comparisons.append(entry)
                raw_p.append(p_value)

    family = [i for i, c in enumerate(comparisons) if not c["insufficient"]]
    for i, p_holm in zip(family, holm([raw_p[i] for i in family])):
        comparisons[i]["p_holm"] = _round(p_holm)

    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "subject_digest": subject_digest,
        "created_at": created,
        "metric": metric,
        "reference": reference,
        "confidence": _round(confidence),
        "n_min": n_min,
        "seed": seed,
        "test": dict(TEST),
        "predictions_digest": sha256_hex(data),
        "row_count": int(len(frame)),
        "columns": {"label": label, "pred": pred, "sensitive": list(sensitive)},
        "tool_versions": tool_versions(),
        "groups": groups,
        "comparisons": comparisons,
    }


# --------------------------------------------------------------------------- statistics (statsmodels)
# One implementation, used to make a record and to check one: the reader recomputes every
# interval and p-value from the record's counts with these same calls.
def group_interval(successes: int, trials: int, alpha_ci: float) -> tuple[float, float]:
    """The Wilson score interval of ``successes / trials``."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=alpha_ci, method="wilson")
    return float(low), float(high)


def compare_proportions(s: int, t: int, ref_s: int, ref_t: int, alpha_ci: float) -> tuple[float, float, float]:
    """``(gap_ci_low, gap_ci_high, p_value)`` of the group ``s/t`` against the reference
    ``ref_s/ref_t``: the Newcombe interval of ``reference - group`` and the one-sided score test
    (H1: the group's rate is smaller)."""
    import warnings

    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    with warnings.catch_warnings():
        # A score test of two groups at the same boundary (0/n vs 0/m) divides 0 by 0; handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        gap_low, gap_high = confint_proportions_2indep(ref_s, ref_t, s, t, method="newcomb", compare="diff", alpha=alpha_ci)
        result = test_proportions_2indep(s, t, ref_s, ref_t, method="score", compare="diff", alternative="smaller", correction=True)
    p_value = float(result.pvalue)
    if not math.isfinite(p_value):
        # Only when both rates sit at the same boundary (0 or 1): the observed difference is
        # exactly 0 and the null distribution is degenerate, so the group is not worse with
        # certainty: P(T <= t_obs) = 1.
        if s * ref_t != ref_s * t:
            raise RuntimeError(f"score test gave {p_value} for {s}/{t} vs {ref_s}/{ref_t}")
        p_value = 1.0
    return float(gap_low), float(gap_high), p_value


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (empty family: empty list)."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, method="holm")[1]]


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import mlgate

    out = {"mlgate": mlgate.__version__}
    for dist in ("fairlearn", "statsmodels", "numpy", "pandas", "scipy", "scikit-learn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


def _round(x: Any) -> float | None:
    """Six significant digits, so the record is byte-stable; NaN/None -> None, -0.0 -> 0.0."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}") + 0.0


def _reference_row(rows, reference: str, threshold: int, name: str, attribute: str):
    """``None`` for ``rest``; otherwise the row (group, counts, successes, trials) of the reference."""
    if reference == "rest":
        return None
    if reference == "best":
        # The best group among those with enough trials, so a tiny group with a lucky 100% is
        # not everyone's yardstick; failing that, among those with any trials. Ties: more
        # trials first, then the group's name.
        pool = [r for r in rows if r[3] >= threshold] or [r for r in rows if r[3] > 0] or rows
        return min(pool, key=lambda r: (-(r[2] / r[3]) if r[3] else 0.0, -r[3], r[0]))
    for r in rows:
        if r[0] == reference:
            return r
    values = ", ".join(repr(r[0]) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
    raise InputError(
        f"reference group {reference!r} does not occur in column {attribute!r} (groups: {values})",
        file=name, field="reference",
    )


def _check_parameters(label, pred, sensitive, metric, reference, n_min, confidence, seed, subject_digest) -> list[str]:
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}", field="metric")
    if isinstance(sensitive, str):
        sensitive = [sensitive]
    sensitive = list(sensitive)
    if not sensitive:
        raise InputError("at least one sensitive column is required", field="sensitive")
    for field, col in [("label", label), ("pred", pred)] + [("sensitive", s) for s in sensitive]:
        if not isinstance(col, str) or not col or len(col) > MAX_NAME:
            raise InputError(f"expected a column name of 1 to {MAX_NAME} characters, got {col!r}", field=field)
    if len(set(sensitive)) != len(sensitive):
        raise InputError(f"sensitive columns repeat: {sensitive}", field="sensitive")
    if label == pred or label in sensitive or pred in sensitive:
        raise InputError(f"label {label!r}, pred {pred!r} and sensitive {sensitive} must be different columns", field="sensitive")
    if not isinstance(reference, str) or not reference or len(reference) > MAX_NAME:
        raise InputError(f"expected 'rest', 'best' or a group value, got {reference!r}", field="reference")
    if isinstance(n_min, bool) or not isinstance(n_min, int) or n_min < 0:
        raise InputError(f"expected a non-negative integer, got {n_min!r}", field="n_min")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"expected an integer, got {seed!r}", field="seed")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise InputError(f"expected a number strictly between 0 and 1, got {confidence!r}", field="confidence")
    if subject_digest is not None and not _is_digest(subject_digest):
        raise InputError(f"expected a lower-case hex digest (64 or 128 characters), got {subject_digest!r}", field="subject_digest")
    return sensitive


def _is_digest(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) in (64, 128) and all(ch in "0123456789abcdef" for ch in value)
    )


def _load_predictions(data: bytes, name: str, label: str, pred: str, sensitive: list[str]):
    import pandas as pd

    text = safeio.decode_text(data, name)
    if not text.strip():
        raise InputError("empty file: expected a CSV header and rows", file=name)
    try:
        header = next(csv.reader(io.StringIO(text)))
    except (csv.Error, StopIteration) as exc:
        raise InputError(f"invalid CSV header: {exc}", file=name) from None
    needed = [label, pred, *sensitive]
    for col in needed:
        hits = header.count(col)
        if hits == 0:
            shown = ", ".join(repr(h) for h in header[:20]) + (", ..." if len(header) > 20 else "")
            raise InputError(f"column {col!r} not found (columns: {shown})", file=name, field=col)
        if hits > 1:
            raise InputError(f"column {col!r} appears {hits} times in the header", file=name, field=col)
    try:
        frame = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, usecols=needed, engine="c"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, csv.Error) as exc:
        raise InputError(f"invalid CSV: {' '.join(str(exc).split())[:200]}", file=name) from None
    if len(frame) == 0:
        raise InputError("no data rows after the header", file=name)
    frame = frame.reset_index(drop=True)
    for col in needed:
        column = frame[col]
        stripped = column.fillna("").astype(str).str.strip()
        missing = column.isna() | stripped.isin(MISSING)
        if missing.any():
            row = int(missing.to_numpy().argmax()) + 1
            raise InputError(
                f"missing value (empty or NaN) at data row {row}; {int(missing.sum())} row(s) in all",
                file=name, field=col,
            )
        if col in (label, pred):
            mapped = stripped.str.lower().map(BINARY)
            bad = mapped.isna()
            if bad.any():
                row = int(bad.to_numpy().argmax()) + 1
                raise InputError(
                    f"expected binary 0/1 or true/false, got {column.iloc[row - 1]!r} at data row {row}",
                    file=name, field=col,
                )
            frame[col] = mapped.astype("int64")
        else:
            too_long = column.str.len() > MAX_NAME
            if too_long.any():
                row = int(too_long.to_numpy().argmax()) + 1
                raise InputError(f"group value longer than {MAX_NAME} characters at data row {row}", file=name, field=col)
    return frame


# --------------------------------------------------------------------------- reading

#: Record fields carried into the facts block; ``created_at_ns`` is derived from ``created_at``.
_FACT_FIELDS = (
    "subject_digest", "metric", "reference", "created_at", "n_min", "confidence", "seed", "test",
    "predictions_digest", "row_count", "columns", "tool_versions", "groups", "comparisons",
)
_LIST_FIELDS = ("groups", "comparisons")
MAX_ERRORS = 50
_REL = 1e-5     # six significant digits leave at most 5e-6 relative error
_ABS = 2e-6     # sums and differences of rounded proportions


def read_bias_audit(data: bytes, name: str, *, path: str | None = None, digest: str | None = None) -> dict[str, Any]:
    """The ``evidence.bias_audit`` facts block of the input document for one record file.

    Unparseable bytes raise :class:`InputError`; a record that parses but breaks the schema or
    is internally inconsistent gives ``valid: false`` and one-line errors naming the file and
    the JSON path. When the schema fails, the record's fields are ``null`` / ``[]`` (nothing
    ill-typed reaches the policy); when only consistency checks fail, they are carried as read.
    ``path`` defaults to ``name``, ``digest`` to the SHA-256 of ``data``.
    """
    doc = safeio.parse_json(data, name)
    facts: dict[str, Any] = {
        "present": True, "valid": False, "authenticated": False, "errors": [],
        "path": name if path is None else path,
        "digest": sha256_hex(data) if digest is None else digest,
    }
    for field in _FACT_FIELDS:
        facts[field] = [] if field in _LIST_FIELDS else None
    facts["created_at_ns"] = None

    try:
        problems = _non_finite(doc) or _schema_problems(doc)
    except RecursionError:
        raise InputError("invalid JSON: nesting too deep", file=name) from None
    if problems:
        facts["errors"] = _render(name, problems)
        return facts

    for field in _FACT_FIELDS:
        facts[field] = doc[field]
    try:
        created = parse_time(doc["created_at"])
        facts["created_at_ns"] = epoch_ns(created)
    except ValueError:
        facts["created_at"] = None
        problems.append(("created_at", f"{doc['created_at']!r} is not a valid RFC 3339 time"))
    problems.extend(_consistency_problems(doc))
    if not problems:
        problems.extend(_recomputed_problems_cached(doc))
    facts["errors"] = _render(name, problems)
    facts["valid"] = not problems
    return facts


def _render(name: str, problems: list[tuple[str, str]]) -> list[str]:
    lines = [_one_line(f"{name}: {where}: {what}") for where, what in problems[:MAX_ERRORS]]
    if len(problems) > MAX_ERRORS:
        lines.append(f"{name}: {len(problems) - MAX_ERRORS} more error(s) not shown")
    return lines


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_problems(doc: Any) -> list[tuple[str, str]]:
    from mlgate import schemas

    return list(schemas.errors(SCHEMA, doc, limit=MAX_ERRORS))


def _non_finite(doc: Any) -> list[tuple[str, str]]:
    """JSON like ``1e999`` parses to infinity; no such number may reach the policy (or canonical JSON)."""
    from mlgate.schemas import json_path

    out: list[tuple[str, str]] = []
    stack: list[tuple[tuple, Any]] = [((), doc)]
    while stack:  # iterative: a deeply nested document must not exhaust the stack here
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            out.append((json_path(where), "number out of range"))
        elif isinstance(value, dict):
            stack.extend(((*where, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*where, i), v) for i, v in enumerate(value))
    return sorted(out)


def _close(a: float, b: float, rel: float = _REL, abs_: float = 1e-12) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def _le(a: float, b: float) -> bool:
    """a <= b, allowing for six-significant-digit rounding of both."""
    return a <= b + _ABS + _REL * max(abs(a), abs(b))


_GROUP_COUNTS = ("n", "positives", "negatives", "tp", "fn", "tn", "fp", "successes", "trials")
_COMPARISON_COUNTS = ("successes", "trials", "reference_successes", "reference_trials")


def _differs(recorded: Any, computed: float | None) -> bool:
    """The record's six-significant-digit value is not the recomputed one (a last-digit
    difference from another statsmodels build is tolerated)."""
    expected = _round(computed)
    if recorded is None or expected is None:
        return recorded is not expected
    return not math.isclose(float(recorded), expected, rel_tol=1e-4, abs_tol=1e-9)


#: The libraries whose results the recomputation is; an installed version that changes is a new cache key.
_STATS_LIBRARIES = ("statsmodels", "scipy", "numpy")
_CACHE_NAMESPACE = "bias-recomputed-v1"


def _cache_key(doc: dict[str, Any]) -> str | None:
    """The cache key of a record's recomputation (None: the libraries or this code cannot be fingerprinted)."""
    from mlgate import localcache
    from mlgate.canonical import canonical_json

    libraries = localcache.library_fingerprint(*_STATS_LIBRARIES)
    if not libraries:
        return None
    try:
        code = Path(__file__).read_bytes()
    except OSError:
        return None
    return localcache.key_digest(_CACHE_NAMESPACE, code, libraries, canonical_json(doc))


def _recomputed_problems_cached(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """:func:`_recomputed_problems`, remembered in the per-user cache (:mod:`mlgate.localcache`).

    The key is the sha256 of everything the answer depends on: the record's canonical JSON
    (every count, every recorded number, the confidence), this module's own source (the
    checking code) and the installed statsmodels, scipy and numpy (:func:`mlgate.localcache.library_fingerprint`).
    The value is the list of problems found, usually empty. So the first read of a record pays
    for importing statsmodels and recomputing (seconds on a loaded machine); every later read
    of the same bytes with the same code and libraries reads one small file.

    Why this is safe: an entry only ever answers for the exact record it was computed from (a
    number edited by hand is a different record, a different key, a fresh recomputation). A
    forged entry could pass a record with hand-edited numbers, but only someone who runs as
    this user can write one (the cache refuses directories and files that others can write),
    and that person can already change mlgate's code or policy. Set ``MLGATE_CACHE_DIR=off``
    where the cache directory may come from someone else (a CI cache restored from another job).
    """
    import json

    from mlgate import localcache

    key = _cache_key(doc)
    if key is None:
        return _recomputed_problems(doc)
    cached = localcache.get(_CACHE_NAMESPACE, key)
    if cached is not None:
        try:
            value = json.loads(cached)
            if isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value):
                return [(where, what) for where, what in value]
        except ValueError:
            pass  # a torn or foreign file: recompute and rewrite it
    problems = _recomputed_problems(doc)
    localcache.put(_CACHE_NAMESPACE, key, json.dumps(problems).encode("utf-8"))
    return problems


def _recomputed_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Every interval, p-value and Holm-adjusted p-value recomputed from the record's counts
    (issue 14: the numbers are checked, not trusted). Each mismatch names the subgroup and the
    field: ``comparisons[3] (ethnicity=Black).p_holm: recorded 0.9, the counts give 5.44e-33``."""
    out: list[tuple[str, str]] = []
    alpha_ci = 1.0 - float(doc["confidence"])

    def report(at: str, who: str, field: str, recorded: Any, computed: float | None) -> None:
        out.append((f"{at}.{field}", f"{who}: recorded {recorded!r}, the counts give {_round(computed)!r}"))

    for i, g in enumerate(doc["groups"]):
        s, t = g["successes"], g["trials"]
        if not t:
            continue
        low, high = group_interval(s, t, alpha_ci)
        who = f"{g['attribute']}={g['group']}"
        for field, computed in (("ci_low", low), ("ci_high", high)):
            if _differs(g[field], computed):
                report(f"groups[{i}]", who, field, g[field], computed)
    raw: dict[int, float] = {}
    for i, c in enumerate(doc["comparisons"]):
        s, t, ref_s, ref_t = c["successes"], c["trials"], c["reference_successes"], c["reference_trials"]
        if not (t and ref_t):
            continue
        gap_low, gap_high, p_value = compare_proportions(s, t, ref_s, ref_t, alpha_ci)
        raw[i] = p_value
        who = f"{c['attribute']}={c['group']}"
        for field, computed in (("gap_ci_low", gap_low), ("gap_ci_high", gap_high), ("p_value", p_value)):
            if _differs(c[field], computed):
                report(f"comparisons[{i}]", who, field, c[field], computed)
    family = [i for i, c in enumerate(doc["comparisons"]) if not c["insufficient"] and i in raw]
    for i, p_holm in zip(family, holm([raw[i] for i in family])):
        c = doc["comparisons"][i]
        if _differs(c["p_holm"], p_holm):
            report(f"comparisons[{i}]", f"{c['attribute']}={c['group']}", "p_holm", c["p_holm"], p_holm)
    return out


def _consistency_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Checks the schema cannot express; each names the JSON path that is off."""
    out: list[tuple[str, str]] = []
    # JSON Schema counts 3.0 as an integer; a count written as a float was not written by us.
    for field in ("n_min", "seed", "row_count"):
        if isinstance(doc[field], float):
            out.append((field, "expected integer, got number"))
    for section, fields in (("groups", _GROUP_COUNTS), ("comparisons", _COMPARISON_COUNTS)):
        for i, item in enumerate(doc[section]):
            out.extend((f"{section}[{i}].{f}", "expected integer, got number") for f in fields if isinstance(item[f], float))
    if out:
        return out
    success_key, trial_key = METRICS[doc["metric"]]
    threshold = max(doc["n_min"], 1)
    sensitive = doc["columns"]["sensitive"]
    reference = doc["reference"]

    groups: dict[tuple[str, str], dict[str, Any]] = {}
    per_attribute: dict[str, list[dict[str, Any]]] = {a: [] for a in sensitive}
    keys = []
    for i, g in enumerate(doc["groups"]):
        at = f"groups[{i}]"
        key = (g["attribute"], g["group"])
        keys.append(key)
        if key in groups:
            out.append((at, f"duplicate group {g['attribute']}={g['group']!r}"))
        groups[key] = g
        if g["attribute"] not in per_attribute:
            out.append((f"{at}.attribute", f"{g['attribute']!r} is not one of columns.sensitive"))
        else:
            per_attribute[g["attribute"]].append(g)
        if g["tp"] + g["fn"] != g["positives"]:
            out.append((f"{at}.positives", f"tp + fn = {g['tp'] + g['fn']} but positives = {g['positives']}"))
        if g["tn"] + g["fp"] != g["negatives"]:
            out.append((f"{at}.negatives", f"tn + fp = {g['tn'] + g['fp']} but negatives = {g['negatives']}"))
        if g["positives"] + g["negatives"] != g["n"]:
            out.append((f"{at}.n", f"positives + negatives = {g['positives'] + g['negatives']} but n = {g['n']}"))
        counts = dict(g, predicted=g["tp"] + g["fp"])
        if g["successes"] != counts[success_key] or g["trials"] != counts[trial_key]:
            out.append((f"{at}.successes", f"successes/trials {g['successes']}/{g['trials']} are not {success_key}/{trial_key} "
                                           f"{counts[success_key]}/{counts[trial_key]} for metric {doc['metric']}"))
        if g["successes"] > g["trials"]:
            out.append((f"{at}.successes", f"successes {g['successes']} exceed trials {g['trials']}"))
        out.extend(_value_problems(at, g["successes"], g["trials"], g["value"]))
        if g["insufficient"] != (g["trials"] < threshold):
            out.append((f"{at}.insufficient", f"is {str(g['insufficient']).lower()} but trials {g['trials']} vs n_min {doc['n_min']}"))
        if g["trials"]:
            if g["ci_low"] is None or g["ci_high"] is None or g["value"] is None:
                out.append((f"{at}.ci_low", "a group with trials needs value, ci_low and ci_high"))
            elif not (_le(g["ci_low"], g["value"]) and _le(g["value"], g["ci_high"])):
                out.append((f"{at}.value", f"{g['value']} lies outside its interval [{g['ci_low']}, {g['ci_high']}]"))
        elif g["value"] is not None or g["ci_low"] is not None or g["ci_high"] is not None:
            out.append((f"{at}.value", "a group without trials has no value or interval"))
    if keys != sorted(keys):
        out.append(("groups", "not sorted by attribute and group"))
    for attribute, members in per_attribute.items():
        if len(members) < 2:
            out.append(("groups", f"attribute {attribute!r} has {len(members)} group(s); at least two are needed"))
        elif sum(g["n"] for g in members) != doc["row_count"]:
            out.append(("groups", f"group sizes of {attribute!r} add up to {sum(g['n'] for g in members)}, not row_count {doc['row_count']}"))

    seen: dict[str, set[str]] = {a: set() for a in sensitive}
    ckeys = []
    for i, c in enumerate(doc["comparisons"]):
        at = f"comparisons[{i}]"
        ckeys.append((c["attribute"], c["group"]))
        g = groups.get((c["attribute"], c["group"]))
        if g is None:
            out.append((at, f"group {c['attribute']}={c['group']!r} is not in groups"))
            continue
        if c["group"] in seen.get(c["attribute"], set()):
            out.append((at, f"duplicate comparison for {c['attribute']}={c['group']!r}"))
        seen.setdefault(c["attribute"], set()).add(c["group"])
        if (c["successes"], c["trials"]) != (g["successes"], g["trials"]):
            out.append((f"{at}.successes", f"{c['successes']}/{c['trials']} differ from the group's {g['successes']}/{g['trials']}"))
        members = per_attribute.get(c["attribute"], [])
        if reference == "rest":
            expected_ref = ("rest", sum(m["successes"] for m in members) - g["successes"], sum(m["trials"] for m in members) - g["trials"])
        else:
            named = groups.get((c["attribute"], c["reference_group"]))
            expected_ref = (c["reference_group"], named["successes"], named["trials"]) if named else None
            if named is None:
                out.append((f"{at}.reference_group", f"{c['reference_group']!r} is not a group of {c['attribute']!r}"))
            elif reference != "best" and c["reference_group"] != reference:
                out.append((f"{at}.reference_group", f"is {c['reference_group']!r} but the record's reference is {reference!r}"))
            elif c["reference_group"] == c["group"]:
                out.append((f"{at}.reference_group", "a group is not compared with itself"))
        got_ref = (c["reference_group"], c["reference_successes"], c["reference_trials"])
        if expected_ref is not None and got_ref != expected_ref:
            out.append((f"{at}.reference_successes", f"reference {got_ref[0]!r} {got_ref[1]}/{got_ref[2]} should be {expected_ref[0]!r} {expected_ref[1]}/{expected_ref[2]}"))
        if c["reference_successes"] > c["reference_trials"]:
            out.append((f"{at}.reference_successes", "exceeds reference_trials"))
        expect_insufficient = c["trials"] < threshold or c["reference_trials"] < threshold
        if c["insufficient"] != expect_insufficient:
            out.append((f"{at}.insufficient", f"is {str(c['insufficient']).lower()} but trials {c['trials']} and reference_trials {c['reference_trials']} vs n_min {doc['n_min']}"))
        out.extend(_value_problems(f"{at}.value", c["successes"], c["trials"], c["value"], path_given=True))
        out.extend(_value_problems(f"{at}.reference_value", c["reference_successes"], c["reference_trials"], c["reference_value"], path_given=True))
        computable = c["trials"] > 0 and c["reference_trials"] > 0
        stats = ("gap", "gap_ci_low", "gap_ci_high", "p_value")
        if not computable:
            if any(c[k] is not None for k in stats) or c["p_holm"] is not None:
                out.append((f"{at}.gap", "without trials on both sides there is no gap, interval or p-value"))
            continue
        if any(c[k] is None for k in stats):
            out.append((f"{at}.gap", "gap, gap_ci_low, gap_ci_high and p_value are required when both sides have trials"))
            continue
        if c["value"] is not None and c["reference_value"] is not None:
            if abs(c["gap"] - (c["reference_value"] - c["value"])) > _ABS:
                out.append((f"{at}.gap", f"{c['gap']} is not reference_value - value = {c['reference_value'] - c['value']:.6g}"))
        if not (_le(c["gap_ci_low"], c["gap"]) and _le(c["gap"], c["gap_ci_high"])):
            out.append((f"{at}.gap", f"{c['gap']} lies outside its interval [{c['gap_ci_low']}, {c['gap_ci_high']}]"))
        if not c["insufficient"]:
            if c["p_holm"] < c["p_value"] and not _close(c["p_holm"], c["p_value"]):
                out.append((f"{at}.p_holm", f"{c['p_holm']} is below p_value {c['p_value']}"))
    if ckeys != sorted(ckeys):
        out.append(("comparisons", "not sorted by attribute and group"))
    for attribute, members in per_attribute.items():
        names = {g["group"] for g in members}
        compared = seen.get(attribute, set())
        expected = names if reference == "rest" else names - {c["reference_group"] for c in doc["comparisons"] if c["attribute"] == attribute}
        if compared != expected or (reference != "rest" and len(names - compared) != 1):
            out.append(("comparisons", f"attribute {attribute!r}: compared groups {sorted(compared)} do not match the groups less the reference"))
        elif reference == "best" and members:
            rows = [(g["group"], None, g["successes"], g["trials"]) for g in members]
            best = _reference_row(rows, "best", threshold, "", attribute)[0]
            if names - compared != {best}:
                out.append(("comparisons", f"attribute {attribute!r}: the reference is {sorted(names - compared)[0]!r} but the best group is {best!r}"))
    return out


def _value_problems(at: str, successes: int, trials: int, value: float | None, path_given: bool = False) -> list[tuple[str, str]]:
    where = at if path_given else f"{at}.value"
    if trials == 0:
        return [] if value is None else [(where, f"is {value} but there are no trials")]
    if value is None:
        return [(where, f"is null but {successes}/{trials} is defined")]
    if not _close(value, successes / trials):
        return [(where, f"{value} is not {successes}/{trials} = {successes / trials:.6g}")]
    return []
