"""MLflow (issue 7 parts 1, 3 and 6) against a real ``mlflow server`` on 127.0.0.1.

The server runs from the installed ``mlflow`` package (the ``test`` extra) with a SQLite backend
and a local artifact root served through its artifact proxy; the tests log a run and register a
real scikit-learn model with MLflow's own client, then drive mlgate's REST client, `evidence
collect`, `publish` and `check models:/...` against it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli_helpers import check_json, resign_approvals, run
from conftest import EXAMPLES

mlflow = pytest.importorskip("mlflow", reason="the test extra installs mlflow")
requests = pytest.importorskip("requests")

QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, **QUIET}
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still starting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def registered(server, tmp_path_factory):
    """A run with params, metrics and a git commit tag, and a registered sklearn model (versions 1 and 2)."""
    import git
    from sklearn.linear_model import LogisticRegression

    os.environ.update(QUIET)
    repo_dir = tmp_path_factory.mktemp("training")
    repo = git.Repo.init(repo_dir, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "CI")
        cw.set_value("user", "email", "ci@hospital.example")
    (repo_dir / "train.py").write_text("print('train')\n")
    repo.git.add(A=True)
    commit = repo.index.commit("train").hexsha

    mlflow.set_tracking_uri(server)
    client = mlflow.MlflowClient(server)
    experiment = client.create_experiment("readmission-risk")
    versions = []
    for c in (1.0, 0.5):
        with mlflow.start_run(experiment_id=experiment) as active:
            mlflow.log_params({"C": c, "max_iter": 2000})
            mlflow.log_metrics({"auroc": 0.71, "recall": 0.75})
            mlflow.set_tag("mlflow.source.git.commit", commit)
            model = LogisticRegression(C=c).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
            info = mlflow.sklearn.log_model(model, name="model")
        mv = mlflow.register_model(info.model_uri, "readmission-risk")
        versions.append((mv.version, active.info.run_id))
    client.set_registered_model_alias("readmission-risk", "champion", versions[0][0])
    return {"uri": server, "client": client, "versions": versions, "commit": commit, "repo": repo_dir}


@pytest.fixture
def tracking(registered, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    return registered


def release_copy(tmp_path: Path) -> Path:
    release = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    return release


# --------------------------------------------------------------------------- REST client


def test_rest_client_reads_run_and_model_version(tracking):
    from mlgate.provenance.mlflow_rest import MlflowClient, model_version_facts, parse_model_uri, run_facts

    client = MlflowClient()
    version, run_id = tracking["versions"][0]
    mv = model_version_facts(client.get_model_version(parse_model_uri("models:/readmission-risk@champion")))
    assert mv["name"] == "readmission-risk" and mv["version"] == version and mv["aliases"] == ["champion"]
    assert mv["run_id"] == run_id and mv["status"] == "READY" and mv["source"]
    run_info = run_facts(client.get_run(run_id))
    assert run_info["params"] == {"C": "1.0", "max_iter": "2000"} and run_info["metrics"] == {"auroc": 0.71, "recall": 0.75}
    assert run_info["git_commit"] == tracking["commit"] and run_info["status"] == "FINISHED"


@pytest.mark.parametrize(
    ("uri", "message"),
    [("models:/readmission-risk/99", "model version models:/readmission-risk/99 not found"),
     ("models:/readmission-risk@nobody", "model alias models:/readmission-risk@nobody not found"),
     ("models:/no-such-model/1", "not found")],
)
def test_unknown_versions_are_clear_errors(tracking, uri, message):
    from mlgate.provenance.mlflow_rest import MlflowClient, MlflowError, parse_model_uri

    with pytest.raises(MlflowError, match=message.replace("@", "@")):
        MlflowClient().get_model_version(parse_model_uri(uri))


def test_unreachable_server_is_a_clear_error():
    from mlgate.provenance.mlflow_rest import MlflowClient, MlflowError

    with pytest.raises(MlflowError, match=r"MLflow tracking server http://127.0.0.1:9 unreachable \(run .*\): \[Errno 111\] Connection refused"):
        MlflowClient("http://user:secret@127.0.0.1:9").get_run("0" * 32)


# --------------------------------------------------------------------------- collect


def test_collect_records_the_run_and_model_version(tracking, tmp_path):
    release = release_copy(tmp_path)
    code, out, err = run(["evidence", "collect", release, "--repo", tracking["repo"], "--mlflow-model", "models:/readmission-risk@champion"])
    assert code == 0, err
    block = yaml.safe_load((release / "mlgate.yaml").read_text())["spec"]["provenance"]
    version, run_id = tracking["versions"][0]
    assert block["mlflow"]["present"] and block["mlflow"]["tracking_uri"] == tracking["uri"]
    assert block["mlflow"]["run"]["id"] == run_id and block["mlflow"]["run"]["params"]["C"] == "1.0"
    assert block["mlflow"]["model_version"] == {**block["mlflow"]["model_version"], "name": "readmission-risk", "version": version, "aliases": ["champion"]}
    # the training commit comes from the run's git tag and is checked against the repository
    assert block["git"]["training_commit"] == tracking["commit"]
    assert block["git"]["training_commit_source"] == "mlflow-run-tag" and block["git"]["training_commit_in_repo"] is True
    code, decision, _ = check_json(release, "staging", tmp_path / "a.jsonl")
    assert code == 1 and {v["id"] for v in decision["violations"]} == {"MLG-APPR-020"}  # collected after signing
    resign_approvals(release)  # the approvers sign the finished manifest
    code, decision, _ = check_json(release, "staging", tmp_path / "a.jsonl")
    assert code == 0, decision["violations"]


def test_collect_refuses_a_run_that_did_not_register_the_version(tracking, tmp_path):
    release = release_copy(tmp_path)
    other_run = tracking["versions"][1][1]
    code, _, err = run(["evidence", "collect", release, "--no-git", "--no-dvc", "--mlflow-model", "models:/readmission-risk/1", "--mlflow-run", other_run])
    assert code == 2 and f"not from --mlflow-run {other_run}" in err


# --------------------------------------------------------------------------- evidence store


def test_publish_then_check_by_version_and_alias(tracking, tmp_path):
    release = release_copy(tmp_path)
    version, run_id = tracking["versions"][0]
    code, out, err = run(["publish", release, "--mlflow", "--model", f"models:/readmission-risk/{version}"])
    assert code == 0, err
    assert f"to models:/readmission-risk/{version} (run {run_id}, artifacts mlgate-release/)" in out

    code, decision, err = check_json(f"models:/readmission-risk/{version}", "production", tmp_path / "a.jsonl")
    assert code == 0, (decision["violations"], err)
    local = check_json(release, "production", tmp_path / "b.jsonl")[1]
    assert decision["model_digest"] == local["model_digest"]
    assert decision["evidence_digests"] == local["evidence_digests"]

    code, decision, err = check_json("models:/readmission-risk@champion", "production", tmp_path / "a.jsonl")
    assert code == 0 and f"models:/readmission-risk@champion -> model version {version} (run {run_id})" in err

    tags = {t["key"]: t["value"] for t in requests.get(
        f"{tracking['uri']}/api/2.0/mlflow/model-versions/get", params={"name": "readmission-risk", "version": version}
    ).json()["model_version"]["tags"]}
    assert tags["mlgate.release.model_digest"] == decision["model_digest"]


def test_artifacts_changed_after_publish_are_rehashed(tracking, tmp_path):
    """MLflow keeps no content hash: a model file replaced in the artifact store is caught by re-hashing."""
    from mlgate.provenance.mlflow_rest import MlflowClient

    release = release_copy(tmp_path)
    version, run_id = tracking["versions"][1]
    assert run(["publish", release, "--mlflow", "--model", f"models:/readmission-risk/{version}"])[0] == 0
    client = MlflowClient()
    artifact_uri = client.get_run(run_id)["info"]["artifact_uri"]
    client.upload_artifact(artifact_uri, "mlgate-release/model/model.pkl", b"a different model")
    code, decision, _ = check_json(f"models:/readmission-risk/{version}", "production", tmp_path / "a.jsonl")
    assert code == 1
    assert {"MLG-SIG-005", "MLG-APPR-010"} <= {v["id"] for v in decision["violations"]}

    # and a manifest replaced after publishing is refused outright
    client.upload_artifact(artifact_uri, "mlgate-release/mlgate.yaml", (release / "mlgate.yaml").read_bytes() + b"# edited\n")
    code, out, err = run(["check", f"models:/readmission-risk/{version}", "--env", "production", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 2 and "the artifacts changed after publishing" in err


def test_alias_moves_and_the_gate_follows_the_resolution(tracking, tmp_path):
    client = tracking["client"]
    (v1, _), (v2, run2) = tracking["versions"]
    release = release_copy(tmp_path)
    assert run(["publish", release, "--mlflow", "--model", f"models:/readmission-risk/{v2}"])[0] == 0
    client.set_registered_model_alias("readmission-risk", "candidate", v2)
    code, _, err = run(["check", "models:/readmission-risk@candidate", "--env", "staging", "--audit-log", tmp_path / "a.jsonl"])
    assert f"-> model version {v2} (run {run2})" in err


def test_version_without_release_bundle_is_an_audited_error(tracking, tmp_path):
    from sklearn.dummy import DummyClassifier

    with mlflow.start_run():
        info = mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model")
    mv = mlflow.register_model(info.model_uri, "no-bundle")
    log = tmp_path / "a.jsonl"
    code, out, err = run(["check", f"models:/no-bundle/{mv.version}", "--env", "staging", "--audit-log", log])
    assert code == 2
    assert "has no release bundle under artifacts 'mlgate-release'" in err and "Traceback" not in err
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["result"] == "error" and "no release bundle" in record["error"]


def test_unreachable_server_on_check_is_an_audited_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    log = tmp_path / "a.jsonl"
    code, out, err = run(["check", "models:/readmission-risk/1", "--env", "production", "--audit-log", log])
    assert code == 2 and "unreachable" in err
    assert json.loads(log.read_text())["result"] == "error"


def test_publish_without_a_target_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    code, _, err = run(["publish", EXAMPLES / "readmission-risk", "--mlflow"])
    assert code == 2 and "pass --model models:/NAME/VERSION" in err
