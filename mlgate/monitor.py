"""``mlgate monitor``: a window of production predictions with outcomes, judged like a release.

For one release and one window (CSV or Parquet: labels, predictions, sensitive attributes and the
model's input features) it

* recomputes the bias audit on the window with :func:`mlgate.evidence.bias.compute_bias_audit`,
  with the environment's own ``bias.n_min`` and metric, and judges it with the release gate's bias
  rule (same delta, alpha, non-inferiority);
* computes the data drift of every input feature against the training reference (the release's
  training dataset, or ``reference``): the population stability index over ten reference-quantile
  bins (categories for text columns) and, for numeric features, the two-sample
  Kolmogorov-Smirnov statistic and p-value (scipy);
* evaluates ``data.mlgate.monitoring.decision`` (policies/mlgate/monitoring.rego), which only a
  literal ``allow: true`` passes (:func:`mlgate.gate.decide`), and returns a monitoring record.

pandas, numpy and scipy are imported here only.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mlgate import safeio
from mlgate.canonical import sha256_hex
from mlgate.clock import epoch_ns, rfc3339
from mlgate.errors import InputError, PolicyError

API_VERSION = "mlgate.dev/monitoring/v1"
KIND = "MonitoringRecord"
PREDICATE_TYPE = "https://mlgate.dev/attestation/monitoring/v1"
DECISION_QUERY = "data.mlgate.monitoring.decision"
PSI_BINS = 10
#: Empty bins get this share, so the PSI stays finite (a common convention, recorded in the record).
PSI_EPSILON = 1e-4
MAX_WINDOW_BYTES = 512 * 1024 * 1024
#: Columns that are identifiers, not model inputs, are left out of the default feature set.
ID_SUFFIXES = ("_id", "id")


@dataclass(frozen=True)
class MonitorResult:
    record: dict[str, Any]
    allowed: bool
    violations: tuple[Any, ...]
    warnings: tuple[Any, ...]
    input_document: dict[str, Any]
    evidence_digests: dict[str, str]


def _round(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.6g}") + 0.0 if math.isfinite(x) else None


def load_table(path: Path):
    """A CSV or Parquet file as a pandas DataFrame; every failure is an InputError naming the file."""
    import pandas as pd

    name = safeio.display(path)
    data = safeio.read_bytes(path, limit=MAX_WINDOW_BYTES)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError("reading Parquet needs pyarrow (pip install 'mlgate[monitor]')", file=name) from None
        try:
            return pd.read_parquet(io.BytesIO(data)), data
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a corrupt file
            raise InputError(f"not a readable Parquet file: {' '.join(str(exc).split())[:160]}", file=name) from None
    text = safeio.decode_text(data, name)
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"invalid CSV: {' '.join(str(exc).split())[:160]}", file=name) from None
    if len(frame) == 0:
        raise InputError("no data rows after the header", file=name)
    return frame, data


def psi_numeric(reference, window, bins: int = PSI_BINS) -> float | None:
    import numpy as np

    ref, win = np.asarray(reference, dtype=float), np.asarray(window, dtype=float)
    if len(ref) == 0 or len(win) == 0:
        return None
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate(([-np.inf], edges, [np.inf]))
    ref_share = np.histogram(ref, edges)[0] / len(ref)
    win_share = np.histogram(win, edges)[0] / len(win)
    return _psi(ref_share, win_share)


def psi_categorical(reference, window) -> float | None:
    import numpy as np

    if len(reference) == 0 or len(window) == 0:
        return None
    cats = sorted(set(map(str, reference)) | set(map(str, window)))
    ref = np.array([sum(1 for x in reference if str(x) == c) for c in cats]) / len(reference)
    win = np.array([sum(1 for x in window if str(x) == c) for c in cats]) / len(window)
    return _psi(ref, win)


def _psi(ref_share, win_share) -> float:
    import numpy as np

    ref = np.clip(ref_share, PSI_EPSILON, None)
    win = np.clip(win_share, PSI_EPSILON, None)
    return float(np.sum((win - ref) * np.log(win / ref)))


def drift_statistics(reference, window, features: Sequence[str]) -> list[dict[str, Any]]:
    import pandas as pd
    from scipy.stats import ks_2samp

    out = []
    for feature in features:
        ref, win = reference[feature].dropna(), window[feature].dropna()
        numeric = pd.api.types.is_numeric_dtype(ref) and pd.api.types.is_numeric_dtype(win) and not pd.api.types.is_bool_dtype(ref)
        entry: dict[str, Any] = {"feature": feature, "kind": "numeric" if numeric else "categorical",
                                 "n_reference": int(len(ref)), "n_window": int(len(win)),
                                 "psi": None, "ks_statistic": None, "ks_p_value": None}
        if numeric:
            entry["psi"] = _round(psi_numeric(ref.to_numpy(), win.to_numpy()))
            if len(ref) and len(win):
                result = ks_2samp(ref.to_numpy(dtype=float), win.to_numpy(dtype=float))
                entry["ks_statistic"], entry["ks_p_value"] = _round(result.statistic), _round(result.pvalue)
        else:
            entry["psi"] = _round(psi_categorical(ref.tolist(), win.tolist()))
        out.append(entry)
    return out


def default_features(reference, window, exclude: set[str]) -> list[str]:
    common = [c for c in window.columns if c in reference.columns and c not in exclude]
    return [c for c in common if not (c.lower() == "id" or c.lower().endswith(ID_SUFFIXES[0]))]


def _training_reference(release) -> tuple[Path, str]:
    from mlgate.provenance import dataset_role

    for ds in release.datasets:
        if dataset_role(ds.name) == "train" and ds.local_path is not None:
            return ds.local_path, ds.name
    raise InputError("the release ships no local training dataset to compare the window with; pass --reference",
                     file=safeio.display(release.manifest_path), field="spec.datasets")


def run_monitor(
    release: Any, *, window: Path, label: str, pred: str, sensitive: Sequence[str], environment: str,
    prepared: Any, now: dt.datetime, features: Sequence[str] | None = None, reference: Path | None = None,
    request: Any = None,
) -> MonitorResult:
    from mlgate.evidence.bias import compute_bias_audit, read_bias_audit
    from mlgate.evidence.model_digest import compute_model_digest
    from mlgate.gate import decide

    env = prepared.policy.data.get("mlgate", {}).get("environments", {}).get(environment)
    if not isinstance(env, dict):
        raise PolicyError(f"environment {environment} has no thresholds in the policy library")
    bias_t = env.get("bias", {})
    metrics = bias_t.get("metrics") or ["recall"]
    n_min = bias_t.get("n_min")
    if not isinstance(n_min, int) or isinstance(n_min, bool):
        raise PolicyError(f"environment {environment} threshold bias.n_min is {n_min!r}; expected an integer")

    model_digest = compute_model_digest(release.model_path).root
    window_frame, window_bytes = load_table(Path(window))
    if reference is None:
        reference, ref_name = _training_reference(release)
    else:
        ref_name = None
    reference_frame, reference_bytes = load_table(Path(reference))

    # The bias audit reads a CSV: a Parquet window is handed over as the CSV of the columns it needs.
    needed = [label, pred, *sensitive]
    missing = [c for c in needed if c not in window_frame.columns]
    if missing:
        raise InputError(f"column(s) {', '.join(map(repr, missing))} not found", file=safeio.display(window))
    if Path(window).suffix.lower() in (".parquet", ".pq"):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mlgate-monitor-") as tmp:
            csv_path = Path(tmp) / "window.csv"
            window_frame[needed].to_csv(csv_path, index=False)
            audit = compute_bias_audit(csv_path, label=label, pred=pred, sensitive=sensitive, metric=metrics[0],
                                       n_min=n_min, subject_digest=model_digest, created_at=now)
        audit["predictions_digest"] = sha256_hex(window_bytes)
    else:
        audit = compute_bias_audit(Path(window), label=label, pred=pred, sensitive=sensitive, metric=metrics[0],
                                   n_min=n_min, subject_digest=model_digest, created_at=now)

    exclude = {label, pred, *sensitive}
    chosen = list(features) if features else default_features(reference_frame, window_frame, exclude)
    for f in chosen:
        for frame, path in ((window_frame, window), (reference_frame, reference)):
            if f not in frame.columns:
                raise InputError(f"feature column {f!r} not found", file=safeio.display(path))
    drift = drift_statistics(reference_frame, window_frame, chosen)

    from mlgate.canonical import canonical_json

    audit_bytes = canonical_json(audit)
    bias_facts = read_bias_audit(audit_bytes, "monitoring window bias audit")
    input_doc = {
        "apiVersion": "mlgate.dev/input/v1",
        "environment": environment,
        "evaluated_at": rfc3339(now),
        "evaluated_at_ns": epoch_ns(now),
        "request": request.as_dict() if request is not None else None,
        "release": {"name": release.name, "version": release.version, "owner": release.owner,
                    "manifest_digest": release.manifest_digest},
        "model": {"digest": model_digest, "path": release.model_rel},
        "evidence": {"bias_audit": bias_facts},
        "monitoring": {
            "window": {"path": safeio.display(window), "digest": sha256_hex(window_bytes), "rows": int(len(window_frame))},
            "reference": {"path": safeio.display(reference), "dataset": ref_name, "digest": sha256_hex(reference_bytes),
                          "rows": int(len(reference_frame))},
            "drift": drift,
        },
    }
    eval_json = getattr(prepared.engine, "eval_json", None)
    if eval_json is None:
        raise PolicyError(f"mlgate monitor evaluates {DECISION_QUERY} in-process; the {prepared.engine.name} engine cannot")
    raw = eval_json(DECISION_QUERY, input_doc)
    allowed, violations, warnings = decide(raw)
    record = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "created_at": rfc3339(now),
        "environment": environment,
        "release": input_doc["release"],
        "model_digest": model_digest,
        "result": "pass" if allowed else "fail",
        "window": input_doc["monitoring"]["window"],
        "reference": input_doc["monitoring"]["reference"],
        "thresholds": {"bias": bias_t, "monitoring": env.get("monitoring")},
        "drift_method": {"psi_bins": PSI_BINS, "psi_bin_edges": "reference quantiles", "psi_epsilon": PSI_EPSILON,
                         "ks": "scipy.stats.ks_2samp, two-sided"},
        "drift": drift,
        "bias_audit": audit,
        "violations": [v.as_dict() for v in violations],
        "warnings": [w.as_dict() for w in warnings],
        "policy_revision": prepared.revision,
    }
    digests = {input_doc["monitoring"]["window"]["path"]: input_doc["monitoring"]["window"]["digest"],
               input_doc["monitoring"]["reference"]["path"]: input_doc["monitoring"]["reference"]["digest"]}
    return MonitorResult(record, allowed, violations, warnings, input_doc, digests)
