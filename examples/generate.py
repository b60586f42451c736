"""Regenerate the example model releases, deterministically.

    pip install -e '.[examples]'      # scikit-learn and Great Expectations 1.24.1
    python examples/generate.py

Everything here is synthetic (no patient data): tables are drawn from seeded generators,
models are tiny scikit-learn estimators, data validation is a real Great Expectations run,
bias audits, approvals and keys come from mlgate's own commands (`mlgate keygen`,
`mlgate evidence bias`, `mlgate approve`), and the model signatures from OpenSSF
model-signing in key mode. The clock is fixed per step, seeds are fixed, and ECDSA/Ed25519
signatures are deterministic, so a rerun with the same library versions rewrites the same
bytes. Two things a rerun keeps rather than remakes, because their tools are not
deterministic: existing keys under examples/keys/ and a model.sig that still verifies the
model it signs (model-signing's ECDSA signatures are randomised). Great Expectations ids and
load times are pinned through its run id and a seeded uuid4 (see `_gx_deterministic`).

Scenarios (all under a fictional hospital, hospital.example):
- readmission-risk 1.4.0: diabetic 30-day readmission risk on a de-identified EHR-like table;
  complete evidence; allowed in staging and production.
- chest-xray 0.9.0: pneumonia classifier for staging; the clinical safety officer approved the
  model, then it was retrained: the approval names the old model digest, and the bias audit
  changed after approval. Denied.
- triage-acuity 2.0.0: ED high-acuity (ESI 1-2) classifier trained on historical triage labels
  with under-documented pain scores for Black patients; its recall for ethnicity=Black is
  materially and significantly lower. Denied in production.
- triage-acuity-v2 2.1.0: the remediated retrain (chart-reviewed labels, no subjectively
  documented pain score); allowed in production.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import pickle
import random
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent
REPO = EXAMPLES.parent
KEYS = EXAMPLES / "keys"
UTC = dt.timezone.utc

PEOPLE = {
    "jane.roe": {"id": "jane.roe@hospital.example", "name": "Dr. Jane Roe", "roles": ["clinical-safety-officer"],
                 "meanings": ["approval", "responsibility"], "type": "ed25519"},
    "sam.patel": {"id": "sam.patel@hospital.example", "name": "Sam Patel", "roles": ["quality-assurance"],
                  "meanings": ["review"], "type": "ecdsa-p256"},
    "ana.lima": {"id": "ana.lima@hospital.example", "name": "Dr. Ana Lima", "roles": ["clinical-safety-officer", "quality-assurance"],
                 "meanings": ["review", "approval"], "type": "ed25519"},
}
MODEL_SIGNER = {"key": "ml-platform-ci", "id": "ml-platform-ci@hospital.example", "name": "ML platform CI (model signing)"}
# Signs audit-trail checkpoints (the README's `mlgate audit checkpoint --key examples/keys/audit-checkpointer.key`).
CHECKPOINT_SIGNER = {"key": "audit-checkpointer", "id": "audit-checkpointer@hospital.example", "name": "Audit checkpoint service"}
# Releases that declare a waivers directory (spec.evidence.waivers), empty until someone signs a waiver (README).
WAIVER_EXAMPLES = {"triage-acuity"}
OWNER = "ml-platform@hospital.example"


# The anchor every example date hangs from: evidence is dated in the anchor's month, approvals
# expire a year later. Evidence ages (evidence.max_age_days: 365) and approvals expire, so the
# examples allow only for about a year after the anchor; tests/test_examples_fresh.py fails 180
# days before that. Then move the anchor forward and regenerate (python examples/generate.py).
ANCHOR = dt.datetime(2026, 11, 1, tzinfo=UTC)


def at(day: int, hour: int = 9) -> dt.datetime:
    return ANCHOR.replace(day=day, hour=hour)


def expiry(day: int) -> str:
    """An approval's expiry: the ``day`` of the anchor's month, a year later."""
    return f"{ANCHOR.year + 1}-{ANCHOR.month:02d}-{day:02d}T00:00:00Z"


# --------------------------------------------------------------------------- mlgate's own commands

def mlgate(args: list[str], when: dt.datetime) -> None:
    from mlgate.cli import cli
    from mlgate.clock import FixedClock

    try:
        cli.main(args=[str(a) for a in args], prog_name="mlgate", obj={"clock": FixedClock(when)}, standalone_mode=False)
    except SystemExit as exc:  # commands exit non-zero on error
        if exc.code:
            raise RuntimeError(f"mlgate {' '.join(map(str, args))} exited {exc.code}") from None


def ensure_keys() -> None:
    KEYS.mkdir(exist_ok=True)
    for key, person in PEOPLE.items():
        if not (KEYS / f"{key}.key").exists():
            mlgate(["keygen", "--type", person["type"], "-o", KEYS / key], at(1))
    if not (KEYS / f"{MODEL_SIGNER['key']}.key").exists():
        mlgate(["keygen", "--type", "ecdsa-p256", "-o", KEYS / MODEL_SIGNER["key"]], at(1))
    if not (KEYS / f"{CHECKPOINT_SIGNER['key']}.key").exists():
        mlgate(["keygen", "--type", "ed25519", "-o", KEYS / CHECKPOINT_SIGNER["key"]], at(1))


def write_trust_policy() -> None:
    lines = [
        "# Trust policy of the fictional hospital.example used by the examples; found through .mlgate.yaml at the",
        "# repository root. Its private keys are published in examples/keys/: never trust it for real releases.",
        "# Regenerated by examples/generate.py. A key id is the sha256 of the public key's PEM (model-signing's hint).",
        "apiVersion: mlgate.dev/v1",
        "kind: TrustPolicy",
        f"metadata: {{name: hospital-example-trust, version: \"{ANCHOR:%Y.%m}\"}}",
        "approvers:",
    ]
    for key, person in PEOPLE.items():
        pem = (KEYS / f"{key}.pub").read_text().strip().splitlines()
        lines += [
            f"  - id: {person['id']}",
            f"    name: {person['name']}",
            f"    roles: [{', '.join(person['roles'])}]",
            f"    meanings: [{', '.join(person['meanings'])}]",
            "    keys:",
            "      - pem: |",
            *[f"          {line}" for line in pem],
        ]
    pem = (KEYS / f"{MODEL_SIGNER['key']}.pub").read_text().strip().splitlines()
    lines += [
        "modelSigners:",
        f"  - id: {MODEL_SIGNER['id']}",
        f"    name: {MODEL_SIGNER['name']}",
        "    keys:",
        "      - pem: |",
        *[f"          {line}" for line in pem],
    ]
    pem = (KEYS / f"{CHECKPOINT_SIGNER['key']}.pub").read_text().strip().splitlines()
    lines += [
        "checkpointSigners:",
        f"  - id: {CHECKPOINT_SIGNER['id']}",
        f"    name: {CHECKPOINT_SIGNER['name']}",
        "    keys:",
        "      - pem: |",
        *[f"          {line}" for line in pem],
    ]
    (REPO / "examples" / "trust.yaml").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- files

def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    rows = zip(*(columns[n].tolist() for n in names))
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([f"{v:.4g}" if isinstance(v, float) else v for v in row])


def save_model(model_dir: Path, estimator, config: dict) -> None:
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    # A pickle is what scikit-learn users ship; mlgate never loads it, it only hashes it.
    (model_dir / "model.pkl").write_bytes(pickle.dumps(estimator, protocol=5))
    (model_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def sign_model(release: Path) -> None:
    """OpenSSF model-signing, key mode; keep an existing signature that still verifies."""
    from model_signing import signing, verifying

    sig = release / "model.sig"
    if sig.exists():
        try:
            verifying.Config().use_elliptic_key_verifier(public_key=KEYS / f"{MODEL_SIGNER['key']}.pub").verify(release / "model", sig)
            return
        except Exception:  # noqa: BLE001 - any verification failure: sign again
            pass
    signing.Config().use_elliptic_key_signer(private_key=KEYS / f"{MODEL_SIGNER['key']}.key").sign(release / "model", sig)


# --------------------------------------------------------------------------- Great Expectations

def _gx_deterministic(seed: int) -> None:
    rnd = random.Random(seed)
    uuid.uuid4 = lambda: uuid.UUID(int=rnd.getrandbits(128), version=4)  # type: ignore[assignment]


def gx_validate(frame, *, asset: str, suite_name: str, expectations: list, when: dt.datetime, run_name: str) -> dict:
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = gx.get_context(mode="ephemeral")
    batch = context.data_sources.add_pandas("pd").add_dataframe_asset(asset).add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=f"{asset}-validation", data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name=f"{asset}-checkpoint", validation_definitions=[definition]))
    result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=run_name, run_time=when))
    doc = next(iter(result.run_results.values())).to_json_dict()
    # GX stamps the wall clock as the batch load time; the run time is the validation time.
    doc["meta"]["batch_markers"]["ge_load_time"] = when.strftime("%Y%m%dT%H%M%S.%fZ")
    return doc


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


# --------------------------------------------------------------------------- scenarios

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def threshold_for_recall(scores: np.ndarray, y: np.ndarray, recall: float) -> float:
    positives = np.sort(scores[y == 1])
    return float(positives[int((1 - recall) * len(positives))])


def readmission_frame(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    race = rng.choice(["White", "Black", "Hispanic", "Asian"], p=[0.4, 0.25, 0.2, 0.15], size=n)
    sex = rng.choice(["Female", "Male"], size=n)
    age = rng.integers(18, 96, n)
    time_in_hospital = rng.integers(1, 15, n)
    num_lab_procedures = rng.poisson(43, n)
    num_medications = rng.poisson(16, n)
    number_inpatient = rng.poisson(0.7, n)
    number_emergency = rng.poisson(0.25, n)
    a1c = rng.choice(["None", "Norm", ">7", ">8"], p=[0.6, 0.15, 0.1, 0.15], size=n)
    insulin = rng.choice(["No", "Steady", "Up", "Down"], p=[0.45, 0.3, 0.12, 0.13], size=n)
    logit = (-1.55 + 0.6 * number_inpatient + 0.4 * number_emergency + 0.07 * (time_in_hospital - 4)
             + 0.015 * (age - 60) + 0.03 * (num_medications - 16) + 0.55 * (a1c == ">8") + 0.35 * (insulin == "Up")
             + rng.normal(0, 0.5, n))
    readmitted = (rng.random(n) < sigmoid(logit)).astype(int)
    return {"encounter_id": np.arange(1, n + 1), "age": age, "sex": sex, "race": race, "time_in_hospital": time_in_hospital,
            "num_lab_procedures": num_lab_procedures, "num_medications": num_medications,
            "number_inpatient": number_inpatient, "number_emergency": number_emergency,
            "a1c_result": a1c, "insulin": insulin, "readmitted_30d": readmitted}


def readmission_features(cols):
    return np.column_stack([
        cols["age"], cols["time_in_hospital"], cols["num_lab_procedures"], cols["num_medications"],
        cols["number_inpatient"], cols["number_emergency"], cols["a1c_result"] == ">8", cols["a1c_result"] == ">7",
        cols["insulin"] == "Up", cols["insulin"] == "Down",
    ]).astype(float)


def triage_frame(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    ethnicity = rng.choice(["White", "Black", "Hispanic", "Asian"], p=[0.4, 0.27, 0.2, 0.13], size=n)
    sex = rng.choice(["Female", "Male"], size=n)
    age = rng.integers(18, 95, n)
    heart_rate = np.clip(rng.normal(88, 18, n), 35, 190).round()
    resp_rate = np.clip(rng.normal(18, 4, n), 6, 45).round()
    spo2 = np.clip(rng.normal(96, 3, n), 70, 100).round()
    sbp = np.clip(rng.normal(132, 24, n), 60, 230).round()
    temp_c = np.clip(rng.normal(37.0, 0.7, n), 34.0, 41.5).round(1)
    ambulance = (rng.random(n) < 0.3).astype(int)
    true_pain = np.clip(rng.normal(5, 2.6, n), 0, 10)
    logit = (-1.3 + 0.045 * (heart_rate - 88) + 0.16 * (resp_rate - 18) - 0.22 * (spo2 - 96) - 0.02 * (sbp - 132)
             + 0.5 * (temp_c - 37.0) + 0.9 * ambulance + 0.3 * (true_pain - 5) + 0.01 * (age - 55) + rng.normal(0, 0.4, n))
    high_acuity = (rng.random(n) < sigmoid(logit)).astype(int)
    # Pain is under-documented for Black patients at triage (recorded score 2.5 points lower on average).
    recorded_pain = np.clip(np.round(true_pain - 2.5 * (ethnicity == "Black") + rng.normal(0, 0.5, n)), 0, 10).astype(int)
    # Historical triage labels inherit that: a third of truly high-acuity Black patients were recorded as lower acuity.
    historical = high_acuity.copy()
    missed = (ethnicity == "Black") & (high_acuity == 1) & (rng.random(n) < 0.35)
    historical[missed] = 0
    return {"visit_id": np.arange(1, n + 1), "age": age, "sex": sex, "ethnicity": ethnicity, "heart_rate": heart_rate.astype(int),
            "resp_rate": resp_rate.astype(int), "spo2": spo2.astype(int), "sbp": sbp.astype(int), "temp_c": temp_c,
            "arrival_ambulance": ambulance, "pain_score": recorded_pain, "high_acuity": high_acuity,
            "historical_high_acuity": historical}


def triage_features(cols, *, with_pain: bool):
    columns = [cols["age"], cols["heart_rate"], cols["resp_rate"], cols["spo2"], cols["sbp"], cols["temp_c"], cols["arrival_ambulance"]]
    if with_pain:
        columns.append(cols["pain_score"])
    return np.column_stack(columns).astype(float)


def xray_frame(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    sex = rng.choice(["Female", "Male"], size=n)
    age = rng.integers(18, 92, n)
    view = rng.choice(["PA", "AP"], p=[0.7, 0.3], size=n)
    pneumonia = (rng.random(n) < 0.45).astype(int)
    images = rng.normal(110, 18, (n, 8, 8))
    yy, xx = np.mgrid[0:8, 0:8]
    for i in np.flatnonzero(pneumonia):
        cy, cx = rng.integers(2, 6, 2)
        images[i] += 38 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
    images[view == "AP"] += 8  # portable films are brighter
    pixels = np.clip(images, 0, 255).round().astype(int).reshape(n, 64)
    cols = {"image_id": np.array([f"CXR-{i:05d}" for i in range(1, n + 1)]), "patient_age": age, "sex": sex,
            "view_position": view, "pneumonia": pneumonia}
    for j in range(64):
        cols[f"px{j:02d}"] = pixels[:, j]
    return cols


def age_band(age: np.ndarray) -> np.ndarray:
    return np.where(age < 40, "18-39", np.where(age < 65, "40-64", "65+"))


# --------------------------------------------------------------------------- the release writer

def write_release(
    release: Path, *, name: str, manifest_name: str, version: str, description: str, frames: dict, estimator, config: dict,
    suite: tuple[str, list], predictions: dict, sensitive: str, card: str, approvals: list[tuple], dates: dict,
    storage: str, sign: bool = True, lineage: list[str] | None = None,
) -> None:
    import pandas as pd

    evidence = release / "evidence"
    if evidence.exists():
        shutil.rmtree(evidence)
    (evidence / "approvals").mkdir(parents=True)
    if release.name in WAIVER_EXAMPLES:
        (evidence / "waivers").mkdir()
        (evidence / "waivers" / ".gitkeep").write_text("")  # git keeps no empty directory; dot files are not evidence
    for ds, cols in frames.items():
        write_csv(release / "data" / f"{ds}.csv", cols)
    save_model(release / "model", estimator, config)
    if sign:
        sign_model(release)

    suite_name, expectations = suite
    for i, (ds, cols) in enumerate(frames.items()):
        _gx_deterministic(hash_seed(f"{name}/{ds}"))
        frame = pd.read_csv(release / "data" / f"{ds}.csv")
        doc = gx_validate(frame, asset=ds, suite_name=suite_name, expectations=expectations(), when=dates["validated"] + dt.timedelta(minutes=i),
                          run_name=f"{name}-{version}")
        write_json(evidence / f"validation_{ds}.json", doc)

    write_csv(release / "evaluation" / "predictions_eval.csv", predictions)
    mlgate(["evidence", "bias", "--predictions", release / "evaluation" / "predictions_eval.csv", "--label", "y_true", "--pred", "y_pred",
            "--sensitive", sensitive, "--metric", "recall", "--reference", "rest", "--n-min", "30", "--model", release / "model",
            "-o", evidence / "bias_audit.json"], dates["bias"])
    (evidence / "model_card.md").write_text(card)
    manifest(release, name=manifest_name, version=version, description=description, datasets=list(frames), storage=storage,
             lineage=lineage)

    # Provenance first: approvals sign the finished manifest (its provenance block included), so
    # anything written into it after signing would make them not count (MLG-APPR-020).
    record_provenance(release, name=name, version=version, datasets=list(frames), when=dates["bias"])
    for person, env, meaning, role, when, expires, comment in approvals:
        mlgate(["approve", release, "--key", KEYS / f"{person}.key", "--name", PEOPLE[person]["name"], "--id", PEOPLE[person]["id"],
                "--role", role, "--meaning", meaning, "--env", env, "--expires", expires, "--comment", comment], when)


# Issue 5: every example declares its lineage (GMLP 10 / PCCP) and how its data were de-identified (HIPAA).
INITIAL = ["  lineage: {kind: initial}"]
PRIVACY = [
    "  privacy:",
    "    deidentification:",
    "      method: safe-harbor",
    '      statement: "Synthetic records generated by examples/generate.py; none of the 18 HIPAA identifiers are present."',
]


def manifest(release: Path, *, name: str, version: str, description: str, datasets: list[str], storage: str,
             lineage: list[str] | None = None) -> None:
    lines = [
        "apiVersion: mlgate.dev/v1",
        "kind: ModelRelease",
        "metadata:",
        f"  name: {name}",
        f'  version: "{version}"',
        f"  owner: {OWNER}",
        f"  description: {json.dumps(description)}",
        "spec:",
        "  model:",
        "    path: model/",
        "    signature: model.sig",
        f"    storageUri: {storage}",
        "  datasets:",
    ]
    for ds in datasets:
        lines.append(f"    - {{name: {ds}, uri: data/{ds}.csv, digest: {{sha256: \"{sha256_file(release / 'data' / f'{ds}.csv')}\"}}}}")
    lines += [
        "  evidence:",
        "    modelCard: evidence/model_card.md",
        "    dataValidation:",
        *[f"      - {{path: evidence/validation_{ds}.json, dataset: {ds}}}" for ds in datasets],
        "    biasAudit: evidence/bias_audit.json",
        "    approvals: [evidence/approvals/]",
        *(["    waivers: [evidence/waivers/]"] if release.name in WAIVER_EXAMPLES else []),
        *(lineage if lineage is not None else INITIAL),
        *PRIVACY,
    ]
    (release / "mlgate.yaml").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- provenance (issue 7)

def _dvc_md5_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _dvc_md5_dir(path: Path) -> tuple[str, int, int]:
    """DVC's directory hash: md5 of the JSON list of {md5, relpath} of its files, with a .dir suffix."""
    entries = [{"md5": _dvc_md5_file(f), "relpath": f.relative_to(path).as_posix()} for f in sorted(path.rglob("*")) if f.is_file()]
    listing = json.dumps(entries, sort_keys=True).encode()
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return hashlib.md5(listing, usedforsecurity=False).hexdigest() + ".dir", size, len(entries)


def record_provenance(release: Path, *, name: str, version: str, datasets: list[str], when: dt.datetime) -> None:
    """Build the release's training repository (git + DVC, deterministic) and run `mlgate evidence collect` on it.

    The repository is what a team would have: the training script, dvc.yaml, the datasets as
    `dvc add` tracks them (.dvc files, data ignored by git), and dvc.lock for the train stage
    that produced model/. DVC itself is not needed: its files are written in DVC 3's format
    (plain md5, `hash: md5`). The commit has fixed author, committer and dates, so its id is
    the same on every run. mlgate then records the git, DVC and sha256 facts into mlgate.yaml.
    """
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"mlgate-{name}-training-") as tmp:
        repo = Path(tmp)
        (repo / "data").mkdir()
        (repo / "train.py").write_text(
            f'"""Training entry point of {name} {version} (examples/generate.py builds the model)."""\n'
            "import sys\n\nif __name__ == '__main__':\n    sys.exit('see examples/generate.py in the mlgate repository')\n"
        )
        (repo / "params.yaml").write_text(f"model: {name}\nversion: '{version}'\n")
        deps = []
        for ds in datasets:
            src = release / "data" / f"{ds}.csv"
            shutil.copyfile(src, repo / "data" / f"{ds}.csv")
            md5, size = _dvc_md5_file(src), src.stat().st_size
            (repo / "data" / f"{ds}.csv.dvc").write_text(f"outs:\n- md5: {md5}\n  size: {size}\n  hash: md5\n  path: {ds}.csv\n")
            deps.append(f"    - path: data/{ds}.csv\n      hash: md5\n      md5: {md5}\n      size: {size}\n")
        (repo / "data" / ".gitignore").write_text("".join(f"/{ds}.csv\n" for ds in datasets))
        shutil.copytree(release / "model", repo / "model")
        (repo / ".gitignore").write_text("/model\n")
        model_md5, model_size, model_files = _dvc_md5_dir(repo / "model")
        script_md5 = _dvc_md5_file(repo / "train.py")
        (repo / "dvc.yaml").write_text(
            "stages:\n  train:\n    cmd: python train.py\n    deps:\n"
            + "".join(f"    - data/{ds}.csv\n" for ds in datasets)
            + "    - train.py\n    params:\n    - model\n    outs:\n    - model\n"
        )
        (repo / "dvc.lock").write_text(
            "schema: '2.0'\nstages:\n  train:\n    cmd: python train.py\n    deps:\n" + "".join(deps)
            + f"    - path: train.py\n      hash: md5\n      md5: {script_md5}\n      size: {(repo / 'train.py').stat().st_size}\n"
            + f"    params:\n      params.yaml:\n        model: {name}\n"
            + f"    outs:\n    - path: model\n      hash: md5\n      md5: {model_md5}\n      size: {model_size}\n      nfiles: {model_files}\n"
        )
        stamp = (when - dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        env = {**os.environ, "GIT_AUTHOR_NAME": "ML Platform CI", "GIT_AUTHOR_EMAIL": "ml-platform@hospital.example",
               "GIT_COMMITTER_NAME": "ML Platform CI", "GIT_COMMITTER_EMAIL": "ml-platform@hospital.example",
               "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

        def git(*args: str) -> None:
            subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env=env, check=True, capture_output=True)

        git("init", "-q", "-b", "main")
        git("remote", "add", "origin", f"https://git.hospital.example/ml-platform/{name}.git")
        git("add", "-A")
        git("commit", "-q", "-m", f"Train {name} {version}")
        mlgate(["evidence", "collect", release, "--repo", repo], when)


def hash_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def recall_by_group(y, pred, groups) -> dict[str, float]:
    return {g: round(float(pred[(groups == g) & (y == 1)].mean()), 3) for g in sorted(set(groups.tolist()))}


def card_text(*, name: str, title: str, summary: str, direct_use: str, out_of_scope: str, training: str, testing: str,
              results: dict, limitations: str, recommendations: str, metric_rows: list[tuple[str, float]],
              factors: tuple[str, ...]) -> str:
    model_index = "\n".join(
        f"        - type: {kind}\n          name: {label}\n          value: {value}" for kind, label, value in
        [(k.lower().replace(" ", "_"), k, v) for k, v in metric_rows]
    )
    results_lines = "\n".join(f"| {k} | {v} |" for k, v in results.items())
    factor_list = " and ".join(f"`{f}`" for f in factors)  # in backticks: the gate reads them (MLG-BIAS-014)
    return f"""---
language: en
license: other
library_name: sklearn
tags: [tabular-classification, healthcare, synthetic-data]
model-index:
  - name: {name}
    results:
      - task: {{type: tabular-classification}}
        dataset: {{name: {name} held-out evaluation set (synthetic), type: tabular}}
        metrics:
{model_index}
---

# Model Card for {title}

{summary}

## Model Details

### Model Description

{summary} Trained with scikit-learn on synthetic, de-identified data generated for the mlgate examples.

- **Developed by:** ML Platform team, hospital.example
- **Model type:** binary classifier (scikit-learn logistic regression)
- **License:** internal use only

## Uses

### Direct Use

{direct_use}

### Out-of-Scope Use

{out_of_scope}

## Bias, Risks, and Limitations

{limitations}

### Recommendations

{recommendations}

## Training Details

### Training Data

{training}

## Evaluation

### Testing Data, Factors & Metrics

#### Testing Data

{testing}

#### Factors

Subgroups by {factor_list}, the sensitive attributes the bias audit (evidence/bias_audit.json) covers.

#### Metrics

Recall (sensitivity) overall and per subgroup; AUROC.

### Results

| metric | value |
|---|---|
{results_lines}

## How to Get Started with the Model

Served through the hospital's model gateway only after `mlgate check` allows the release.
"""


def build_readmission() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    import great_expectations.expectations as gxe

    release = EXAMPLES / "readmission-risk"
    rng = np.random.default_rng(14)
    train, evalset = readmission_frame(rng, 8000), readmission_frame(rng, 14000)
    x_train, x_eval = readmission_features(train), readmission_features(evalset)
    model = LogisticRegression(max_iter=2000, C=1.0).fit(x_train, train["readmitted_30d"])
    scores = model.predict_proba(x_eval)[:, 1]
    threshold = threshold_for_recall(model.predict_proba(x_train)[:, 1], train["readmitted_30d"], 0.75)
    y_pred = (scores >= threshold).astype(int)
    y = evalset["readmitted_30d"]
    auroc = round(float(roc_auc_score(y, scores)), 3)
    recall = round(float(y_pred[y == 1].mean()), 3)

    def expectations():
        return [
            gxe.ExpectTableRowCountToBeBetween(min_value=1000, max_value=1_000_000),
            gxe.ExpectColumnValuesToNotBeNull(column="age"),
            gxe.ExpectColumnValuesToBeBetween(column="age", min_value=18, max_value=110),
            gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=["Female", "Male"]),
            gxe.ExpectColumnValuesToBeInSet(column="a1c_result", value_set=["None", "Norm", ">7", ">8"]),
            gxe.ExpectColumnValuesToBeInSet(column="insulin", value_set=["No", "Steady", "Up", "Down"]),
            gxe.ExpectColumnValuesToBeBetween(column="time_in_hospital", min_value=1, max_value=14),
            gxe.ExpectColumnValuesToBeInSet(column="readmitted_30d", value_set=[0, 1]),
            gxe.ExpectColumnValuesToBeUnique(column="encounter_id"),
        ]

    card = card_text(
        name="readmission-risk", title="Diabetic 30-day readmission risk (1.4.0)",
        summary="Estimates the risk that an adult inpatient with diabetes is readmitted within 30 days of discharge.",
        direct_use="Ranking discharged adult diabetic inpatients for follow-up calls by the transitional-care nursing team. A nurse reviews every flagged patient; the score never triggers an action on its own.",
        out_of_scope="Not for paediatric patients, not for denying or prioritising admission, not for insurance or billing decisions, and not for use outside the inpatient discharge workflow it was validated in.",
        training="8,000 synthetic encounters shaped like a de-identified EHR extract (demographics, utilisation, A1C result, insulin changes); identifiers removed under the HIPAA Safe Harbor method.",
        testing="A held-out set of 14,000 synthetic encounters (data/eval.csv), disjoint from training.",
        results={"AUROC": auroc, "recall at operating threshold": recall, "operating threshold": round(threshold, 4)},
        limitations="Trained on synthetic data; calibration drifts with discharge practice and coding changes. Race and sex are not model inputs; they are used only to audit subgroup recall.",
        recommendations="Monitor recall per subgroup monthly; re-run the bias audit after any retraining.",
        metric_rows=[("AUROC", auroc), ("Recall", recall)], factors=("race", "sex"),
    )
    predictions = {"y_true": y, "y_pred": y_pred, "race": evalset["race"], "sex": evalset["sex"]}
    write_release(
        release, name="readmission-risk", manifest_name="readmission-risk", version="1.4.0", description="Diabetic 30-day readmission risk",
        frames={"train": train, "eval": evalset}, estimator=model,
        config={"estimator": "LogisticRegression", "threshold": round(threshold, 6), "features": 10, "sklearn": __import__("sklearn").__version__},
        suite=("readmission_input_suite", expectations), predictions=predictions, sensitive="race,sex", card=card,
        approvals=[
            ("sam.patel", "production", "review", "quality-assurance", at(15), expiry(15), "Validation, bias audit and model card reviewed against SOP-ML-004."),
            ("jane.roe", "production", "approval", "clinical-safety-officer", at(16), expiry(16), "Approved for production discharge follow-up workflow."),
            ("jane.roe", "staging", "approval", "clinical-safety-officer", at(16, 10), expiry(16), "Approved for staging shadow mode."),
        ],
        dates={"validated": at(10), "bias": at(12)}, storage="s3://models.hospital.example/readmission-risk/1.4.0/",
    )
    print(f"readmission-risk: AUROC {auroc}, recall {recall}, by race {recall_by_group(y, y_pred, evalset['race'])}")


def build_triage(remediated: bool) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    import great_expectations.expectations as gxe

    name = "triage-acuity-v2" if remediated else "triage-acuity"
    version = "2.1.0" if remediated else "2.0.0"
    release = EXAMPLES / name
    rng = np.random.default_rng(21)  # the same population for both versions
    train, evalset = triage_frame(rng, 9000), triage_frame(rng, 14000)
    label = "high_acuity" if remediated else "historical_high_acuity"
    x_train, x_eval = triage_features(train, with_pain=not remediated), triage_features(evalset, with_pain=not remediated)
    model = LogisticRegression(max_iter=3000).fit(x_train, train[label])
    threshold = threshold_for_recall(model.predict_proba(x_train)[:, 1], train[label], 0.85)
    scores = model.predict_proba(x_eval)[:, 1]
    y_pred = (scores >= threshold).astype(int)
    y = evalset["high_acuity"]  # evaluated against chart-reviewed acuity
    auroc = round(float(roc_auc_score(y, scores)), 3)
    recall = round(float(y_pred[y == 1].mean()), 3)

    def expectations():
        return [
            gxe.ExpectTableRowCountToBeBetween(min_value=1000, max_value=1_000_000),
            gxe.ExpectColumnValuesToBeBetween(column="heart_rate", min_value=20, max_value=250),
            gxe.ExpectColumnValuesToBeBetween(column="spo2", min_value=50, max_value=100),
            gxe.ExpectColumnValuesToBeBetween(column="pain_score", min_value=0, max_value=10),
            gxe.ExpectColumnValuesToNotBeNull(column="ethnicity"),
            gxe.ExpectColumnValuesToBeInSet(column="high_acuity", value_set=[0, 1]),
            gxe.ExpectColumnValuesToBeUnique(column="visit_id"),
        ]

    story = ("Retrained on chart-reviewed acuity labels without the triage-documented pain score, after the 2.0.0 bias audit "
             "found under-triage of Black patients." if remediated else
             "Trained on historical triage labels and the pain score as documented at triage.")
    card = card_text(
        name=name, title=f"ED triage acuity ({version})",
        summary=f"Flags adult emergency-department arrivals likely to need ESI level 1-2 care. {story}",
        direct_use="Decision support for triage nurses: a flagged patient is re-assessed by a second nurse within 10 minutes. The triage nurse keeps full authority over the ESI level.",
        out_of_scope="Not for paediatric or obstetric triage, not to lower a nurse-assigned acuity, not for use outside the emergency department, and not as a replacement for ESI assessment.",
        training=f"9,000 synthetic ED visits (vitals, arrival mode, demographics) labelled with {'chart-reviewed acuity' if remediated else 'the historical triage acuity'}.",
        testing="A held-out set of 14,000 synthetic visits with chart-reviewed acuity (data/eval.csv).",
        results={"AUROC": auroc, "recall at operating threshold": recall},
        limitations=("Recall per ethnicity group is monitored because triage documentation differs between groups; "
                     "vital-sign-only inputs reduce sensitivity to documentation bias but not to measurement bias (e.g. pulse oximetry on darker skin)."),
        recommendations="Audit subgroup recall on every retrain and quarterly in production; escalate any gap above 5 points.",
        metric_rows=[("AUROC", auroc), ("Recall", recall)], factors=("ethnicity", "sex"),
    )
    predictions = {"y_true": y, "y_pred": y_pred, "ethnicity": evalset["ethnicity"], "sex": evalset["sex"]}
    frames = {"train": {k: v for k, v in train.items() if k != "historical_high_acuity"} if remediated else train,
              "eval": {k: v for k, v in evalset.items() if k != "historical_high_acuity"}}
    day = 20 if remediated else 12
    lineage = None
    if remediated:  # 2.1.0 re-trains 2.0.0 under the triage PCCP (policies/mlgate/environments/*/data.json)
        from mlgate.evidence.model_digest import compute_model_digest

        lineage = [
            "  lineage:",
            "    kind: retrain",
            f"    predecessor: {{version: \"2.0.0\", modelDigest: {compute_model_digest(EXAMPLES / 'triage-acuity' / 'model').root}}}",
            "    pccpModification: PCCP-TRIAGE-001",
        ]
    write_release(
        release, name=name, manifest_name="triage-acuity", version=version, description="ED high-acuity triage support",
        frames=frames, estimator=model,
        config={"estimator": "LogisticRegression", "threshold": round(threshold, 6), "uses_pain_score": not remediated,
                "labels": label, "sklearn": __import__("sklearn").__version__},
        suite=("triage_input_suite", expectations), predictions=predictions, sensitive="ethnicity,sex", card=card,
        approvals=[
            ("sam.patel", "production", "review", "quality-assurance", at(day + 3), expiry(15), "Reviewed evidence package."),
            ("jane.roe", "production", "approval", "clinical-safety-officer", at(day + 4), expiry(16), "Approved for ED decision support."),
        ],
        dates={"validated": at(day - 2), "bias": at(day)}, storage=f"s3://models.hospital.example/triage-acuity/{version}/",
        lineage=lineage,
    )
    print(f"{name}: AUROC {auroc}, recall {recall}, by ethnicity {recall_by_group(y, y_pred, evalset['ethnicity'])}")


def build_chest_xray() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    import great_expectations.expectations as gxe

    release = EXAMPLES / "chest-xray"
    rng = np.random.default_rng(9)
    train, evalset = xray_frame(rng, 1600), xray_frame(rng, 900)
    pixels = [f"px{j:02d}" for j in range(64)]

    def features(cols):
        return np.column_stack([cols[p] for p in pixels]).astype(float) / 255.0

    def expectations():
        return [
            gxe.ExpectTableRowCountToBeBetween(min_value=500, max_value=1_000_000),
            gxe.ExpectColumnValuesToBeUnique(column="image_id"),
            gxe.ExpectColumnValuesToBeInSet(column="view_position", value_set=["PA", "AP"]),
            gxe.ExpectColumnValuesToBeBetween(column="patient_age", min_value=18, max_value=110),
            gxe.ExpectColumnValuesToBeBetween(column="px00", min_value=0, max_value=255),
            gxe.ExpectColumnValuesToBeInSet(column="pneumonia", value_set=[0, 1]),
        ]

    # 0.9.0 as first trained and approved (C=1.0) ...
    first = LogisticRegression(max_iter=3000, C=1.0).fit(features(train), train["pneumonia"])
    # ... and as retrained a week later with stronger regularisation, after the approval was signed.
    retrained = LogisticRegression(max_iter=3000, C=0.05).fit(features(train), train["pneumonia"])

    def evidence_for(model):
        scores = model.predict_proba(features(evalset))[:, 1]
        y_pred = (scores >= 0.5).astype(int)
        y = evalset["pneumonia"]
        return scores, y_pred, y

    card_kwargs = dict(
        name="chest-xray", title="Chest X-ray pneumonia classifier (0.9.0)",
        summary="Flags frontal chest radiographs with findings suggestive of pneumonia for prioritised radiologist reading.",
        direct_use="Worklist prioritisation in staging (shadow mode): radiologists read every study; the flag only reorders the queue.",
        out_of_scope="Not for diagnosis without a radiologist, not for paediatric or lateral films, not for CT, and not for findings other than pneumonia.",
        training="1,600 synthetic 8x8 frontal radiograph thumbnails with view position and demographics (data/train.csv).",
        testing="900 held-out synthetic radiographs (data/eval.csv).",
        limitations="Synthetic low-resolution images; AP (portable) films are brighter and may shift scores. Not validated on real studies.",
        recommendations="Keep in shadow mode until a reader study on real studies is complete.", factors=("sex", "age_band"),
    )

    def card_for(model):
        scores, y_pred, y = evidence_for(model)
        auroc, recall = round(float(roc_auc_score(y, scores)), 3), round(float(y_pred[y == 1].mean()), 3)
        return card_text(**card_kwargs, results={"AUROC": auroc, "recall at 0.5": recall}, metric_rows=[("AUROC", auroc), ("Recall", recall)]), y_pred, y

    config = {"estimator": "LogisticRegression", "input": "8x8 grayscale", "threshold": 0.5, "sklearn": __import__("sklearn").__version__}
    card, y_pred, y = card_for(first)
    predictions = {"y_true": y, "y_pred": y_pred, "sex": evalset["sex"], "age_band": age_band(evalset["patient_age"])}
    write_release(
        release, name="chest-xray", manifest_name="chest-xray", version="0.9.0", description="Chest X-ray pneumonia worklist prioritisation",
        frames={"train": train, "eval": evalset}, estimator=first, config={**config, "C": 1.0},
        suite=("cxr_metadata_suite", expectations), predictions=predictions, sensitive="sex,age_band", card=card,
        approvals=[("jane.roe", "staging", "approval", "clinical-safety-officer", at(6), expiry(6), "Approved for staging shadow mode.")],
        dates={"validated": at(3), "bias": at(4)}, storage="s3://models.hospital.example/chest-xray/0.9.0/",
        sign=False,  # the released (retrained) model is signed below
    )
    # The retrain: new weights, new model signature, bias audit and card re-run; the approval is left as it was.
    save_model(release / "model", retrained, {**config, "C": 0.05})
    sign_model(release)
    card, y_pred, y = card_for(retrained)
    (release / "evidence" / "model_card.md").write_text(card)
    write_csv(release / "evaluation" / "predictions_eval.csv", {"y_true": y, "y_pred": y_pred, "sex": evalset["sex"], "age_band": age_band(evalset["patient_age"])})
    mlgate(["evidence", "bias", "--predictions", release / "evaluation" / "predictions_eval.csv", "--label", "y_true", "--pred", "y_pred",
            "--sensitive", "sex,age_band", "--metric", "recall", "--reference", "rest", "--n-min", "30", "--model", release / "model",
            "-o", release / "evidence" / "bias_audit.json"], at(13))
    record_provenance(release, name="chest-xray", version="0.9.0", datasets=["train", "eval"], when=at(13))  # the retrained model
    print(f"chest-xray: retrained; recall by sex {recall_by_group(y, y_pred, evalset['sex'])}")


# --------------------------------------------------------------------------- monitoring windows (issue 7)

def build_triage_monitoring() -> None:
    """Production windows of triage-acuity-v2 for `mlgate monitor`, written beside the release.

    - window_2026-12.csv: the population the model was validated on (14,000 visits); passes.
    - window_2027-03.csv: new pulse oximeters that over-read SpO2 on darker skin (occult hypoxaemia:
      recorded SpO2 about 4 points above the true value for Black patients) and an older winter
      population with more respiratory illness. The chart-reviewed outcome follows the true
      physiology, the model sees the recorded vitals: recall for ethnicity=Black falls again and
      age, respiratory rate and SpO2 drift from the training data.
    """
    from sklearn.linear_model import LogisticRegression

    release = EXAMPLES / "triage-acuity-v2"
    rng = np.random.default_rng(21)  # the v2 model exactly as build_triage(remediated=True) trains it
    train = triage_frame(rng, 9000)
    x_train = triage_features(train, with_pain=False)
    model = LogisticRegression(max_iter=3000).fit(x_train, train["high_acuity"])
    threshold = threshold_for_recall(model.predict_proba(x_train)[:, 1], train["high_acuity"], 0.85)

    def window(seed: int, shifted: bool, n: int) -> dict:
        if shifted:
            cols = triage_frame_shifted(np.random.default_rng(seed), n)
        else:
            cols = triage_frame(np.random.default_rng(seed), n)
            cols.pop("historical_high_acuity")
        y_pred = (model.predict_proba(triage_features(cols, with_pain=False))[:, 1] >= threshold).astype(int)
        out = {k: v for k, v in cols.items() if k not in ("high_acuity", "historical_high_acuity")}
        out["y_true"], out["y_pred"] = cols["high_acuity"], y_pred
        return out

    # a quarter of ED visits each: enough positives per group to show non-inferiority within delta
    for name, seed, shifted in (("window_2026-12.csv", 2612, False), ("window_2027-03.csv", 2703, True)):
        cols = window(seed, shifted, 14000)
        write_csv(release / "monitoring" / name, cols)
        print(f"triage-acuity-v2 monitoring {name}: recall by ethnicity {recall_by_group(cols['y_true'], cols['y_pred'], cols['ethnicity'])}")


def triage_frame_shifted(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """triage_frame for the March 2027 window: older, more tachypnoeic patients, outcomes from the true
    vitals, and SpO2 recorded 4 points high (at most 100) for Black patients."""
    cols = triage_frame(rng, n)
    cols.pop("historical_high_acuity")
    true = {k: v.copy() for k, v in cols.items()}
    true["age"] = np.clip(true["age"] + 8, 18, 100)
    true["resp_rate"] = np.clip(true["resp_rate"] + 3, 6, 45)
    true["spo2"] = np.clip(true["spo2"] - 1, 70, 100)
    logit = (-1.3 + 0.045 * (true["heart_rate"] - 88) + 0.16 * (true["resp_rate"] - 18) - 0.22 * (true["spo2"] - 96)
             - 0.02 * (true["sbp"] - 132) + 0.5 * (true["temp_c"] - 37.0) + 0.9 * true["arrival_ambulance"]
             + 0.01 * (true["age"] - 55) + rng.normal(0, 0.4, n))
    true["high_acuity"] = (rng.random(n) < sigmoid(logit)).astype(int)
    recorded = dict(true)
    recorded["spo2"] = np.where(true["ethnicity"] == "Black", np.clip(true["spo2"] + 4, 70, 100), true["spo2"]).astype(int)
    return recorded


def main() -> int:
    ensure_keys()
    write_trust_policy()
    build_readmission()
    build_chest_xray()
    build_triage(remediated=False)
    build_triage(remediated=True)
    build_triage_monitoring()
    return 0


if __name__ == "__main__":
    sys.exit(main())
