"""The bias audit: real numbers, checked against independent computations and published values."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgate.canonical import canonical_json, sha256_hex
from mlgate.errors import InputError
from mlgate.evidence.bias import compute_bias_audit, read_bias_audit

ASSETS = Path(__file__).parent / "assets" / "bias"
PREDICTIONS = ASSETS / "predictions.csv"
GOLDEN = ASSETS / "bias_audit.golden.json"
WHEN = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.timezone.utc)
SUBJECT = "ab" * 32
NAME = "evidence/bias_audit.json"

# What tests/assets/bias/predictions.csv holds, by construction (rows, positives, tp, tn).
RACE = {"A": (400, 200, 170, 180), "B": (300, 150, 120, 130), "C": (240, 120, 75, 100), "D": (40, 20, 12, 16)}


def audit(path: Path = PREDICTIONS, **kw):
    args = dict(label="readmitted", pred="predicted", sensitive=["race", "sex"], created_at=WHEN, subject_digest=SUBJECT)
    args.update(kw)
    return compute_bias_audit(path, **args)


@pytest.fixture(scope="module")
def record():
    return audit()


def by_key(items):
    return {(i["attribute"], i["group"]): i for i in items}


def write_counts(tmp_path: Path, counts: dict[str, tuple[int, int]], *, name="counts.csv") -> Path:
    """A CSV with only positives: group -> (tp, positives). Recall of each group is tp/positives."""
    lines = ["label,pred,g"]
    for group, (tp, positives) in counts.items():
        lines += [f"1,1,{group}"] * tp + [f"1,0,{group}"] * (positives - tp)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def counts_audit(path: Path, **kw):
    args = dict(label="label", pred="pred", sensitive=["g"], created_at=WHEN, n_min=1)
    args.update(kw)
    return compute_bias_audit(path, **args)


# --------------------------------------------------------------------------- counts and metrics


def test_group_counts_match_the_construction(record):
    groups = by_key(record["groups"])
    for race, (n, positives, tp, tn) in RACE.items():
        g = groups[("race", race)]
        assert (g["n"], g["positives"], g["tp"], g["fn"]) == (n, positives, tp, positives - tp)
        assert (g["negatives"], g["tn"], g["fp"]) == (n - positives, tn, n - positives - tn)
        assert (g["successes"], g["trials"]) == (tp, positives)
        assert g["value"] == pytest.approx(tp / positives, rel=1e-6)
    assert record["row_count"] == 980
    assert sum(g["n"] for g in record["groups"] if g["attribute"] == "sex") == 980
    assert record["predictions_digest"] == sha256_hex(PREDICTIONS.read_bytes())


@pytest.mark.parametrize("metric", ["recall", "specificity", "precision", "selection_rate"])
def test_metrics_agree_with_fairlearn_and_sklearn(metric):
    import pandas as pd
    from fairlearn.metrics import MetricFrame, selection_rate, true_negative_rate, true_positive_rate
    from sklearn.metrics import precision_score

    functions = {
        "recall": true_positive_rate,
        "specificity": true_negative_rate,
        "precision": lambda t, p: precision_score(t, p, zero_division=0),
        "selection_rate": selection_rate,
    }
    df = pd.read_csv(PREDICTIONS, dtype={"race": str, "sex": str})
    expected = MetricFrame(
        metrics=functions[metric], y_true=df["readmitted"], y_pred=df["predicted"], sensitive_features=df["race"]
    ).by_group
    rec = audit(metric=metric)
    assert rec["metric"] == metric
    for g in rec["groups"]:
        if g["attribute"] == "race":
            assert g["value"] == pytest.approx(float(expected[g["group"]]), rel=1e-5)
    if metric == "selection_rate":
        assert all(g["trials"] == g["n"] for g in rec["groups"])
    assert read_bias_audit(canonical_json(rec), NAME)["valid"]


def test_bool_labels_equal_numeric_labels(tmp_path):
    text = PREDICTIONS.read_text().splitlines()
    out = [text[0]]
    for line in text[1:]:
        cells = line.split(",")
        cells[2] = {"0": "False", "1": "TRUE"}[cells[2]]
        cells[3] = {"0": " false", "1": "1.0"}[cells[3]]
        out.append(",".join(cells))
    path = tmp_path / "bools.csv"
    path.write_text("\n".join(out) + "\n")
    a, b = audit(), audit(path)
    for rec in (a, b):
        rec.pop("predictions_digest")
    assert a == b


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    "s, n, low, high",
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score, no CC).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_published_values(tmp_path, s, n, low, high):
    rec = counts_audit(write_counts(tmp_path, {"x": (s, n), "y": (10, 20)}))
    g = by_key(rec["groups"])[("g", "x")]
    assert (round(g["ci_low"], 4), round(g["ci_high"], 4)) == (low, high)


@pytest.mark.parametrize(
    "ref, grp, low, high",
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10 (hybrid score, no CC).
    [((56, 70), (48, 80), 0.0524, 0.3339), ((9, 10), (3, 10), 0.1705, 0.8090), ((5, 56), (0, 29), -0.0381, 0.1926)],
)
def test_gap_interval_matches_published_newcombe_values(tmp_path, ref, grp, low, high):
    rec = counts_audit(write_counts(tmp_path, {"R": ref, "G": grp}), reference="R")
    (c,) = rec["comparisons"]
    assert (c["group"], c["reference_group"]) == ("G", "R")
    assert c["gap"] == pytest.approx(ref[0] / ref[1] - grp[0] / grp[1], abs=1e-6)
    assert (round(c["gap_ci_low"], 4), round(c["gap_ci_high"], 4)) == (low, high)


def test_wilson_against_closed_form_at_other_confidence(record):
    from scipy.stats import norm

    rec = audit(confidence=0.9)
    z = norm.ppf(0.95)
    for g in rec["groups"]:
        n, p = g["trials"], g["successes"] / g["trials"]
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert g["ci_low"] == pytest.approx(centre - half, rel=1e-5)
        assert g["ci_high"] == pytest.approx(centre + half, rel=1e-5)
    # A narrower confidence gives a narrower interval.
    wide = by_key(record["groups"])[("race", "C")]
    narrow = by_key(rec["groups"])[("race", "C")]
    assert wide["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < wide["ci_high"]


def test_one_sided_score_test_against_scipy(record):
    """The score test of p1 - p2 = 0 is the pooled z-test with variance scaled by N/(N-1)."""
    from scipy.stats import norm

    c = by_key(record["comparisons"])[("race", "C")]
    assert (c["successes"], c["trials"]) == (75, 120)
    assert (c["reference_successes"], c["reference_trials"]) == (170 + 120 + 12, 200 + 150 + 20)
    s1, n1, s2, n2 = 75, 120, 302, 370
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2) * (n1 + n2) / (n1 + n2 - 1))
    z = (s1 / n1 - s2 / n2) / se
    assert c["p_value"] == pytest.approx(norm.cdf(z), rel=1e-5)
    assert c["p_value"] < 1e-4  # C really is worse
    # One-sided: a group better than the rest gets a p-value near 1, not near 0.
    a = by_key(record["comparisons"])[("race", "A")]
    assert a["gap"] < 0 and a["p_value"] > 0.99


def test_gap_is_reference_minus_group(record):
    for c in record["comparisons"]:
        assert c["reference_value"] == pytest.approx(c["reference_successes"] / c["reference_trials"], rel=1e-6)
        assert c["gap"] == pytest.approx(c["reference_value"] - c["value"], abs=2e-6)
        assert c["gap_ci_low"] <= c["gap"] <= c["gap_ci_high"]
    c = by_key(record["comparisons"])[("race", "C")]
    assert c["gap"] == pytest.approx(302 / 370 - 0.625, abs=1e-6) and c["gap"] > 0


def test_holm_over_the_sufficient_family(record):
    from statsmodels.stats.multitest import multipletests

    family = [c for c in record["comparisons"] if not c["insufficient"]]
    # race A, B, C vs rest and sex F, M vs rest; race D is insufficient and outside the family.
    assert [(c["attribute"], c["group"]) for c in family] == [("race", "A"), ("race", "B"), ("race", "C"), ("sex", "F"), ("sex", "M")]
    m = len(family)
    expected = multipletests([c["p_value"] for c in family], method="holm")[1]
    assert [c["p_holm"] for c in family] == pytest.approx(list(expected), rel=1e-5)
    ordered = sorted(family, key=lambda c: c["p_value"])
    # Step-down: the smallest p-value is multiplied by m, and adjusted values keep the order.
    assert ordered[0]["p_holm"] == pytest.approx(m * ordered[0]["p_value"], rel=1e-5)
    assert all(a["p_holm"] <= b["p_holm"] for a, b in zip(ordered, ordered[1:]))
    assert all(c["p_holm"] >= c["p_value"] for c in family)


def test_insufficient_group_is_flagged_and_kept_out_of_holm(record):
    d_group = by_key(record["groups"])[("race", "D")]
    d = by_key(record["comparisons"])[("race", "D")]
    assert d_group["insufficient"] and d_group["trials"] == 20
    assert d["insufficient"] and d["p_holm"] is None and d["p_value"] is not None
    assert not by_key(record["groups"])[("race", "C")]["insufficient"]
    # With n_min 20 (D has exactly 20 positives) D joins the family: m grows from 5 to 6.
    rec = audit(n_min=20)
    d = by_key(rec["comparisons"])[("race", "D")]
    assert not d["insufficient"] and d["p_holm"] is not None
    before = by_key(record["comparisons"])[("race", "C")]
    after = by_key(rec["comparisons"])[("race", "C")]
    assert before["p_holm"] == pytest.approx(5 * before["p_value"], rel=1e-5)
    assert after["p_holm"] == pytest.approx(6 * after["p_value"], rel=1e-5)


def test_insufficient_reference_makes_every_comparison_insufficient(tmp_path):
    rec = counts_audit(write_counts(tmp_path, {"big": (80, 100), "ref": (9, 10), "mid": (60, 100)}), reference="ref", n_min=30)
    assert [c["group"] for c in rec["comparisons"]] == ["big", "mid"]
    assert all(c["insufficient"] and c["p_holm"] is None for c in rec["comparisons"])
    assert read_bias_audit(canonical_json(rec), NAME)["valid"]


def test_group_without_trials(tmp_path):
    path = tmp_path / "no_positives.csv"
    lines = ["label,pred,g"] + ["1,1,a"] * 40 + ["1,0,a"] * 10 + ["0,0,b"] * 40 + ["1,1,c"] * 35 + ["1,0,c"] * 5
    path.write_text("\n".join(lines) + "\n")
    rec = counts_audit(path, n_min=0)
    b = by_key(rec["groups"])[("g", "b")]
    assert b["trials"] == 0 and b["insufficient"] and b["value"] is None and b["ci_low"] is None
    cb = by_key(rec["comparisons"])[("g", "b")]
    assert cb["insufficient"] and cb["p_value"] is None and cb["gap"] is None
    assert read_bias_audit(canonical_json(rec), NAME)["valid"]


def test_identical_boundary_rates_give_p_one(tmp_path):
    rec = counts_audit(write_counts(tmp_path, {"a": (40, 40), "b": (50, 50)}))
    for c in rec["comparisons"]:
        assert c["p_value"] == 1.0 and c["gap"] == 0.0
    assert read_bias_audit(canonical_json(rec), NAME)["valid"]


# --------------------------------------------------------------------------- reference modes


def test_reference_best(record):
    rec = audit(reference="best")
    race = [c for c in rec["comparisons"] if c["attribute"] == "race"]
    assert {c["reference_group"] for c in race} == {"A"}  # 0.85, the best race
    assert [c["group"] for c in race] == ["B", "C", "D"]  # A is not compared with itself
    sex = [c for c in rec["comparisons"] if c["attribute"] == "sex"]
    assert [(c["group"], c["reference_group"]) for c in sex] == [("M", "F")]
    c = by_key(race)[("race", "C")]
    assert (c["reference_successes"], c["reference_trials"]) == (170, 200)
    assert c["gap"] == pytest.approx(0.85 - 0.625, abs=1e-6)
    assert read_bias_audit(canonical_json(rec), NAME)["valid"]


def test_best_ignores_a_lucky_small_group(tmp_path):
    rec = counts_audit(write_counts(tmp_path, {"big": (80, 100), "tiny": (5, 5), "mid": (60, 100)}), reference="best", n_min=30)
    assert {c["reference_group"] for c in rec["comparisons"]} == {"big"}
    assert by_key(rec["comparisons"])[("g", "tiny")]["insufficient"]


def test_reference_literal(record):
    rec = audit(sensitive=["race"], reference="B")
    assert [(c["group"], c["reference_group"]) for c in rec["comparisons"]] == [("A", "B"), ("C", "B"), ("D", "B")]
    c = by_key(rec["comparisons"])[("race", "C")]
    assert (c["reference_successes"], c["reference_trials"]) == (120, 150)
    assert read_bias_audit(canonical_json(rec), NAME)["valid"]


def test_literal_reference_must_exist_in_every_attribute():
    with pytest.raises(InputError, match=r"predictions\.csv: reference: reference group 'B' does not occur in column 'sex'"):
        audit(reference="B")
    with pytest.raises(InputError, match="reference group 'Z'"):
        audit(sensitive=["race"], reference="Z")


# --------------------------------------------------------------------------- determinism


def test_deterministic_bytes(record):
    assert canonical_json(audit()) == canonical_json(record)


def test_row_order_does_not_matter(tmp_path, record):
    lines = PREDICTIONS.read_text().splitlines()
    path = tmp_path / "reversed.csv"
    path.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    a, b = dict(record), audit(path)
    assert a.pop("predictions_digest") != b.pop("predictions_digest")
    assert canonical_json(a) == canonical_json(b)


def test_golden_record(record):
    """The record, less tool versions, is pinned. Regenerate on purpose: MLGATE_UPDATE_GOLDENS=1."""
    pinned = {k: v for k, v in record.items() if k != "tool_versions"}
    if os.environ.get("MLGATE_UPDATE_GOLDENS"):
        GOLDEN.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")
    assert canonical_json(pinned) == canonical_json(json.loads(GOLDEN.read_text()))


def test_record_fields(record):
    assert set(record) == {
        "apiVersion", "kind", "subject_digest", "created_at", "metric", "reference", "confidence", "n_min", "seed",
        "test", "predictions_digest", "row_count", "columns", "tool_versions", "groups", "comparisons",
    }
    assert record["apiVersion"] == "mlgate.dev/bias-audit/v1" and record["kind"] == "BiasAudit"
    assert record["created_at"] == "2026-11-29T10:00:00Z"
    assert record["columns"] == {"label": "readmitted", "pred": "predicted", "sensitive": ["race", "sex"]}
    assert record["test"]["alternative"] == "smaller" and "alpha" not in record
    assert {"fairlearn", "statsmodels", "numpy", "pandas", "mlgate"} <= set(record["tool_versions"])
    contract_group = {"attribute", "group", "n", "positives", "tp", "fn", "value", "ci_low", "ci_high", "insufficient"}
    contract_comparison = {"attribute", "group", "reference_group", "value", "reference_value", "gap", "gap_ci_low",
                           "gap_ci_high", "p_value", "p_holm", "insufficient"}
    assert all(contract_group <= set(g) for g in record["groups"])
    assert all(contract_comparison <= set(c) for c in record["comparisons"])
    keys = [(g["attribute"], g["group"]) for g in record["groups"]]
    assert keys == sorted(keys)


def test_import_stays_light():
    code = (
        "import sys, mlgate.evidence.bias as b\n"
        f"facts = b.read_bias_audit(open({str(GOLDEN)!r}, 'rb').read(), 'x')\n"
        "heavy = [m for m in ('pandas', 'numpy', 'scipy', 'fairlearn', 'statsmodels', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# --------------------------------------------------------------------------- bad inputs


def bad_csv(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "bad.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def run_bad(path: Path, **kw):
    args = dict(label="y", pred="p", sensitive=["g"], created_at=WHEN)
    args.update(kw)
    return compute_bias_audit(path, **args)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("", r"bad\.csv: empty file"),
        ("y,p,g\n", r"bad\.csv: no data rows"),
        ("y,p\n1,1\n0,0\n", r"bad\.csv: g: column 'g' not found"),
        ("y,p,g\n1,2,a\n0,0,b\n", r"bad\.csv: p: expected binary 0/1 or true/false, got '2' at data row 1"),
        ("y,p,g\n1,1,a\nyes,0,b\n", r"bad\.csv: y: expected binary .* got 'yes' at data row 2"),
        ("y,p,g\n1,1,a\n0,NaN,b\n", r"bad\.csv: p: missing value \(empty or NaN\) at data row 2"),
        ("y,p,g\n1,1,a\n0,,b\n", r"bad\.csv: p: missing value"),
        ("y,p,g\n1,1,a\n0,0,\n", r"bad\.csv: g: missing value .* data row 2"),
        ("y,p,g\n1,1,a\n0,0\n", r"bad\.csv: g: missing value"),
        ("y,p,g,g\n1,1,a,a\n", r"bad\.csv: g: column 'g' appears 2 times"),
        ("y,p,g\n1,1,a\n1,1,a\n", r"bad\.csv: g: attribute has a single group 'a'"),
        (b"y,p,g\n1,1,\x00\n", r"bad\.csv: binary data"),
        (b"y,p,g\n1,1,\xff\n", r"bad\.csv: not UTF-8"),
    ],
)
def test_bad_csv(tmp_path, text, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        run_bad(bad_csv(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        run_bad(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "kw, pattern",
    [
        ({"metric": "auc"}, r"metric: unknown metric 'auc'"),
        ({"n_min": -1}, r"n_min: expected a non-negative integer"),
        ({"confidence": 1.0}, r"confidence: expected a number strictly between 0 and 1"),
        ({"sensitive": []}, r"sensitive: at least one"),
        ({"sensitive": ["y"]}, r"must be different columns"),
        ({"subject_digest": "sha256:abc"}, r"subject_digest: expected a lower-case hex digest"),
    ],
)
def test_bad_parameters(tmp_path, kw, pattern):
    with pytest.raises(InputError, match=pattern):
        run_bad(bad_csv(tmp_path, "y,p,g\n1,1,a\n0,0,b\n"), **kw)


# --------------------------------------------------------------------------- reading


def test_reader_facts(record):
    data = canonical_json(record)
    facts = read_bias_audit(data, NAME)
    assert facts["valid"] and facts["errors"] == []
    assert (facts["present"], facts["authenticated"]) == (True, False)
    assert facts["path"] == NAME and facts["digest"] == sha256_hex(data)
    assert facts["created_at_ns"] == 1795946400000000000
    assert facts["subject_digest"] == SUBJECT and facts["metric"] == "recall" and facts["n_min"] == 30
    assert facts["groups"] == record["groups"] and facts["comparisons"] == record["comparisons"]
    assert read_bias_audit(data, NAME, path="p", digest="d")["path"] == "p"
    # The facts block goes into the input document: it must itself be canonical JSON.
    canonical_json(facts)


def test_schema_violation_names_file_and_path(record):
    doc = copy.deepcopy(record)
    doc["groups"][2]["positives"] = "120"
    facts = read_bias_audit(canonical_json(doc), NAME)
    assert not facts["valid"]
    assert facts["errors"] == ["evidence/bias_audit.json: groups[2].positives: expected integer, got string"]
    assert facts["groups"] == [] and facts["metric"] is None  # nothing ill-typed reaches the policy


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda d: d.pop("groups"), "$: 'groups' is required"),
        (lambda d: d.update(apiVersion="mlgate.dev/bias-audit/v2"), "apiVersion"),
        (lambda d: d.update(alpha=0.05), "$"),
        (lambda d: d["comparisons"][0].update(p_holm=1.5), "comparisons[0].p_holm"),
        (lambda d: d["comparisons"][3].update(p_holm=0.01), "comparisons[3].p_holm"),  # insufficient: must be null
        (lambda d: d["comparisons"][2].update(p_holm=None), "comparisons[2].p_holm"),
        (lambda d: d.update(created_at="2026-11-29 10:00"), "created_at"),
        (lambda d: d.update(metric="auc"), "metric"),
        (lambda d: d["groups"][0].update(tp=True), "groups[0].tp"),
    ],
)
def test_schema_violations(record, edit, where):
    doc = copy.deepcopy(record)
    edit(doc)
    facts = read_bias_audit(canonical_json(doc), NAME)
    assert not facts["valid"]
    assert any(e.startswith(f"{NAME}: {where}") for e in facts["errors"]), facts["errors"]


def _set(section, index, **values):
    def edit(doc):
        doc[section][index].update(values)
    return edit


# comparisons: [0] race A, [1] race B, [2] race C, [3] race D (insufficient), [4] sex F, [5] sex M
TAMPERING = [
    (_set("groups", 2, value=0.7), "groups[2].value"),
    (_set("groups", 2, tp=80), "groups[2].positives"),
    (_set("groups", 2, ci_low=0.7), "groups[2].value"),
    (_set("groups", 3, insufficient=False), "groups[3].insufficient"),
    (_set("groups", 0, n=401), "groups[0].n"),
    (_set("comparisons", 2, p_holm=1e-6), "comparisons[2].p_holm"),  # below p_value
    (_set("comparisons", 2, p_value=0.2), "comparisons[2].p_holm"),  # p_holm would fall below it
    (_set("comparisons", 2, gap=0.05), "comparisons[2].gap"),
    (_set("comparisons", 2, reference_successes=350), "comparisons[2].reference_successes"),
    (_set("comparisons", 3, insufficient=False, p_holm=0.5), "comparisons[3].insufficient"),
    (_set("comparisons", 2, value=0.8), "comparisons[2].value"),
    (_set("comparisons", 2, trials=119), "comparisons[2].successes"),
    (lambda d: d["comparisons"].pop(2), "comparisons"),
    (lambda d: d["groups"].reverse(), "groups"),
    (lambda d: d.update(row_count=981), "groups"),
    (lambda d: d.update(metric="specificity"), "groups[0].successes"),
    (lambda d: d.update(n_min=10), "groups[3].insufficient"),
    (lambda d: d.update(n_min=30.0), "n_min"),
    (lambda d: d.update(created_at="2026-13-29T10:00:00Z"), "created_at"),
]


@pytest.mark.parametrize("edit, where", TAMPERING)
def test_tampering_is_caught(record, edit, where):
    assert read_bias_audit(canonical_json(record), NAME)["valid"]
    doc = copy.deepcopy(record)
    edit(doc)
    facts = read_bias_audit(canonical_json(doc), NAME)
    assert not facts["valid"]
    assert any(e.startswith(f"{NAME}: {where}:") for e in facts["errors"]), facts["errors"]
    assert all("\n" not in e for e in facts["errors"])


def test_best_reference_must_be_the_best(record):
    rec = audit(reference="best", sensitive=["sex"])
    doc = copy.deepcopy(rec)
    c = doc["comparisons"][0]  # M vs F; pretend M was the reference
    f, m = by_key(doc["groups"])[("sex", "F")], by_key(doc["groups"])[("sex", "M")]
    c.update(group="F", reference_group="M", successes=f["successes"], trials=f["trials"],
             reference_successes=m["successes"], reference_trials=m["trials"])
    facts = read_bias_audit(canonical_json(doc), NAME)
    assert not facts["valid"]


def test_reader_unparseable_raises_input_error():
    with pytest.raises(InputError, match=r"evidence/bias_audit\.json: invalid JSON"):
        read_bias_audit(b"{not json", NAME)
    with pytest.raises(InputError, match="nesting too deep"):
        read_bias_audit(b"[" * 100_000 + b"]" * 100_000, NAME)


def test_reader_out_of_range_number(record):
    data = canonical_json(record).replace(b'"value":0.625', b'"value":1e999', 1)
    facts = read_bias_audit(data, NAME)
    assert not facts["valid"]
    # canonical JSON sorts keys: the first "value":0.625 is race C's comparison
    assert f"{NAME}: comparisons[2].value: number out of range" in facts["errors"]
    canonical_json(facts)  # no infinity reaches the input document


def test_reader_deep_but_parseable_document():
    depth = 900
    data = b'{"groups":' + b"[" * depth + b"]" * depth + b"}"
    try:
        facts = read_bias_audit(data, NAME)
    except InputError:
        return
    assert not facts["valid"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_reader_never_raises_on_bytes(data):
    try:
        facts = read_bias_audit(data, NAME)
    except InputError:
        return
    assert facts["valid"] is False


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_reader_never_raises_on_json(value):
    facts = read_bias_audit(json.dumps(value).encode(), NAME)
    assert facts["valid"] is False and facts["errors"]
    assert all(e.startswith(f"{NAME}: ") and "\n" not in e for e in facts["errors"])


_FIELDS = ["n", "positives", "tp", "fn", "successes", "trials", "value", "ci_low", "ci_high", "insufficient"]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_reader_never_raises_on_mutated_records(record, data):
    """Mutate one field of a real record to an arbitrary JSON value: never a crash, and never valid
    unless the field is an interval bound or p-value the reader does not re-derive (a number that
    still brackets the value passes; approvals bind the record's digest against such edits)."""
    doc = copy.deepcopy(record)
    section = data.draw(st.sampled_from(["groups", "comparisons"]))
    item = data.draw(st.sampled_from(doc[section]))
    field = data.draw(st.sampled_from(sorted(item)))
    new = data.draw(json_values)
    if new == item[field] and type(new) is type(item[field]):
        return
    item[field] = new
    facts = read_bias_audit(canonical_json(doc), NAME)
    not_rederived = {"ci_low", "ci_high", "gap_ci_low", "gap_ci_high", "p_value", "p_holm"}
    if field in not_rederived and isinstance(new, (int, float)) and not isinstance(new, bool):
        return
    assert facts["valid"] is False, (section, field, new)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    counts=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=2, max_size=4),
    metric=st.sampled_from(["recall", "specificity", "precision", "selection_rate"]),
    reference=st.sampled_from(["rest", "best", "g0"]),
    n_min=st.integers(0, 40),
    confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_every_produced_record_reads_back_valid(tmp_path, counts, metric, reference, n_min, confidence):
    """What the producer (statsmodels) writes, the reader accepts, on arbitrary small tables."""
    lines = ["label,pred,g"]
    for i, (tp, fn) in enumerate(counts):
        lines += [f"1,1,g{i}"] * tp + [f"1,0,g{i}"] * fn + [f"0,{i % 2},g{i}"] * (3 + i)
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines) + "\n")
    rec = compute_bias_audit(path, label="label", pred="pred", sensitive=["g"], metric=metric, reference=reference,
                             n_min=n_min, confidence=confidence, created_at=WHEN)
    facts = read_bias_audit(canonical_json(rec), NAME)
    assert facts["valid"], facts["errors"]


@pytest.mark.parametrize("reference", ["B", "best", "rest"])
def test_policy_does_not_flag_the_named_reference_as_an_unjudged_group(reference):
    """A real audit with a named or `best` reference lists the reference group with its counts but
    (rightly) compares it with nothing; MLG-BIAS-012 must not call it an unjudged group."""
    from test_rego_policies import decide, good_input

    rec = audit(sensitive=["race"], reference=reference)
    facts = read_bias_audit(canonical_json(rec), NAME)
    assert facts["valid"]
    doc = good_input()
    doc["evidence"]["bias_audit"] = {**facts, "path": NAME, "digest": doc["evidence"]["bias_audit"]["digest"]}
    ids = {v["id"] for v in decide(doc)["violations"]}
    assert "MLG-BIAS-012" not in ids
    # and a group that truly has no comparison still fires
    doc["evidence"]["bias_audit"]["groups"] = doc["evidence"]["bias_audit"]["groups"] + [
        {**doc["evidence"]["bias_audit"]["groups"][0], "group": "Z"}]
    assert "MLG-BIAS-012" in {v["id"] for v in decide(doc)["violations"]}
