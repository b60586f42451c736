"""The red team's fixes (issue 15 follow-up), beyond the attacks in test_redteam_webhook.py: what an
environment's ``trustedStorageCredentials`` lets through (and only that), what the command-line reader
must not mistake for a model (the pod's own address, a non-model flag's URL), and the raw-uid reader
of a review the JSON parser refuses. Real AdmissionReviews over TLS to a real webhook."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES
from mlgate.gatekeeper.config import TrustedStorage, load_config
from mlgate.gatekeeper.refs import find_refs
from mlgate.gatekeeper.review import peek_raw_uid_and_version
from test_gatekeeper_support import RunningWebhook, admit, body, deployment, records

from mlgate.errors import InputError

OK = "s3://models.hospital.example/readmission-risk/1.4.0/"  # allowed in production
BAD = "s3://models.hospital.example/triage-acuity/2.0.0/"  # denied

SETTINGS = """
environments:
  production:
    trustedStorageCredentials:
      secrets: [models-rclone]
      storageKeys: [hospital-s3]
      serviceAccounts: [models-reader]
      env: ["S3_ENDPOINT=s3.eu-west-1.amazonaws.com"]
      initializerImages: [seldonio/rclone-storage-initializer:1.18.0]
"""


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trusted")
    (tmp / "webhook.yaml").write_text(SETTINGS)
    running = RunningWebhook(tmp, load_config(tmp / "webhook.yaml", evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "audit.jsonl")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(hook):
    with hook.client() as c:
        yield c


def answer(client, doc, env="production") -> dict:
    r = admit(client, doc, env)
    assert r.status_code == 200, r.text
    return r.json()["response"]


def isvc(**spec) -> dict:
    doc = body("kserve-create-v1")
    doc["request"]["object"]["spec"] = spec
    return doc


def storage(key: str, **params) -> dict:
    return {"model": {"modelFormat": {"name": "sklearn"}, "storage": {
        "key": key, "path": "readmission-risk/1.4.0", "parameters": {"type": "s3", "bucket": "models.hospital.example", **params}}}}


def seldon(**node_fields) -> dict:
    doc = body("seldon-create-v1")
    doc["request"]["object"]["spec"]["predictors"][0]["graph"]["children"][0].update(node_fields)
    return doc


def approved(**container) -> dict:
    doc = deployment("readmission-risk@1.4.0")
    doc["request"]["object"]["spec"]["template"]["spec"]["containers"][0].update(container)
    return doc


# ------------------------------------------------------------------ the allow-list admits what it names, and nothing else
@pytest.mark.parametrize("make, allowed", [
    (lambda: isvc(predictor=storage("hospital-s3")), True),
    (lambda: isvc(predictor=storage("someone-elses")), False),
    (lambda: isvc(predictor=storage("hospital-s3", endpoint_url="http://minio.attacker.example:9000")), False),  # never trusted
    (lambda: isvc(predictor={**storage("hospital-s3"), "serviceAccountName": "models-reader"}), True),
    (lambda: isvc(predictor={**storage("hospital-s3"), "serviceAccountName": "mine"}), False),
    (lambda: seldon(envSecretRefName="models-rclone"), True),
    (lambda: seldon(envSecretRefName="attacker-rclone"), False),
    (lambda: seldon(storageInitializerImage="seldonio/rclone-storage-initializer:1.18.0"), True),
    (lambda: seldon(storageInitializerImage="seldonio/rclone-storage-initializer:latest"), False),
    (lambda: approved(env=[{"name": "S3_ENDPOINT", "value": "s3.eu-west-1.amazonaws.com"}]), True),
    (lambda: approved(env=[{"name": "S3_ENDPOINT", "value": "minio.attacker.example:9000"}]), False),
    (lambda: approved(env=[{"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "models-rclone", "key": "k"}}}]), True),
    (lambda: approved(envFrom=[{"secretRef": {"name": "models-rclone"}}], env=[{"name": "STORAGE_URI", "value": OK}]), True),
    (lambda: approved(envFrom=[{"secretRef": {"name": "models-rclone"}}]), False),  # STORAGE_URI may come from it
    (lambda: approved(envFrom=[{"configMapRef": {"name": "app-settings"}, "prefix": "APP_"}]), False),  # not trusted
])
def test_trusted_storage_credentials(hook, client, make, allowed):
    doc = make()
    resp = answer(client, doc)
    assert resp["allowed"] is allowed, resp
    if not allowed:
        assert "cannot" in resp["status"]["message"]
        recs = [r for r in records(hook.tmp / "audit.jsonl") if (r.get("admission") or {}).get("uid") == doc["request"]["uid"]]
        assert any(r["result"] in ("deny", "error") for r in recs)


def test_a_secret_looking_env_value_is_not_copied_into_the_trail(hook, client):
    doc = approved(env=[{"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}])
    assert answer(client, doc)["allowed"] is False
    text = (hook.tmp / "audit.jsonl").read_text()
    assert "wJalrXUtnFEMI" not in text and "AWS_SECRET_ACCESS_KEY=<40 characters>" in text


# ------------------------------------------------------------------ what is not a model
@pytest.mark.parametrize("container", [
    # The pod's own address and name from the downward API, a port, a log collector's URL given to a non-model flag.
    {"args": ["--model_dir=/models", "--host=$(POD_IP)", "--name", "$(POD_NAME)", "--log-url", "http://logger.clinical-ml.svc/",
              "--otel-endpoint=http://otel-collector:4317"],
     "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
             {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector:4317"}]},
    # A shell script that names only the approved model and local paths.
    {"command": ["sh", "-c"], "args": [f"aws s3 cp --recursive {OK} /models && exec server --model_dir=/models --model_name=readmission"]},
    {"args": ["--model_name=readmission", "--mode=fast", "--http_port=8080"]},  # --mode is a prefix of --model, not a Hub id
])
def test_an_approved_workload_stays_admitted(client, container):
    assert answer(client, approved(**container))["allowed"] is True


def test_kubelet_expansion_and_shell_words():
    def uris(container: dict) -> set[str]:
        doc = deployment("readmission-risk@1.4.0")["request"]["object"]
        doc["spec"]["template"]["spec"]["containers"] = [{"name": "c", "image": "x", **container}]
        found = find_refs("apps", "Deployment", doc, TrustedStorage())
        return {r.value for r in found.refs if r.kind == "storage_uri"} | {f"?{u.source}" for u in found.unresolved}

    assert uris({"args": ["$(F)=$(U)"], "env": [{"name": "F", "value": "--model_dir"}, {"name": "U", "value": BAD}]}) == {BAD}
    secret = [{"name": "F", "valueFrom": {"secretKeyRef": {"name": "s", "key": "f"}}}]
    assert uris({"args": ["$(F)", "--model_dir=/m"], "env": secret}) == {"?spec.template.spec.containers[0].args[0]"}  # may be any flag
    assert uris({"args": ["$$(F)", "--model_dir=/m"], "env": secret}) == set()  # $$ is a literal $: the program gets "$(F)"
    assert uris({"args": ["--model_dir", "$(U)"], "env": [{"name": "U", "valueFrom": {"secretKeyRef": {"name": "s", "key": "u"}}}]}) == {
        "?spec.template.spec.containers[0].args[--model_dir]"}
    assert uris({"command": ["bash", "-lc", f'M="{BAD}"; exec server --model-repository "$M"'],
                 "env": []}) == {BAD, "?spec.template.spec.containers[0].command[2].args[--model-repository]"}
    assert uris({"command": ["sh", "-c", "exec server --model_dir=$M"], "env": [{"name": "M", "value": BAD}]}) == {BAD}
    assert uris({"args": ["--models", f"a=https://models.example/a.mar,b={BAD}"]}) == {"https://models.example/a.mar", BAD}


@pytest.mark.parametrize("text, needle", [
    ("environments: {production: {trustedStorageCredentials: [a]}}", "must be a mapping"),
    ("environments: {production: {trustedStorageCredentials: {secret: [a]}}}", "unknown key 'secret'"),
    ("environments: {production: {trustedStorageCredentials: {secrets: [Bad_Name]}}}", "not a Kubernetes object name"),
    ("environments: {production: {trustedStorageCredentials: {env: [S3_ENDPOINT]}}}", "expected NAME=VALUE"),
    ("environments: {production: {trustedStorageCredentials: {storageKeys: [1]}}}", "must be a string"),
    ("environments: {production: {trustedStorageCredentials: {initializerImages: ['a b']}}}", "not an image reference"),
])
def test_bad_trusted_storage_settings_are_one_line_errors(tmp_path, text, needle):
    (tmp_path / "webhook.yaml").write_text(text)
    with pytest.raises(InputError) as err:
        load_config(tmp_path / "webhook.yaml", evidence_store=f"file://{EXAMPLES}", audit=str(tmp_path / "a.jsonl"))
    message = err.value.diagnostics()
    assert needle in message and "\n" not in message and "trustedStorageCredentials" in message


# ------------------------------------------------------------------ a review the JSON parser refuses
def test_raw_uid_is_request_uid_not_the_objects():
    doc = body("kserve-create-v1")
    doc["request"] = {"object": {"metadata": {"uid": "not-this-one"}, "spec": "__DEEP__"}, **doc["request"]}
    doc["request"]["object"] = {"metadata": {"uid": "not-this-one"}, "spec": "__DEEP__"}
    text = json.dumps({"request": doc["request"], "apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"})
    text = text.replace('"__DEEP__"', "[" * 3000 + "]" * 3000)
    assert peek_raw_uid_and_version(text.encode()) == (doc["request"]["uid"], "admission.k8s.io/v1beta1")
    assert peek_raw_uid_and_version(b'{"request": {"uid": 5}}') == (None, "admission.k8s.io/v1")
    assert peek_raw_uid_and_version(b'{"x": {"request": {"uid": "nested"}}}')[0] is None


def test_unparseable_body_without_a_uid_is_a_plain_status(client):
    r = client.post("/v1/admit/production", content=b"[" * 5000, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["kind"] == "Status"


@pytest.mark.parametrize("args", [["a://b " * 500_000], ["s3://a " * 500_000], ["-c", "echo " * 700_000], ["x" * 3_000_000 + f" {BAD}"]])
def test_the_work_per_review_is_bounded(args):
    """Megabytes of command line (within the body limit) are read in bounded time: refused past the
    word, URI and reference bounds; shlex only for the first 64 KiB of shell strings."""
    import time

    from mlgate.store import StoreError

    obj = deployment("readmission-risk@1.4.0")["request"]["object"]
    obj["spec"]["template"]["spec"]["containers"] = [{"name": "c", "image": "x", "args": args, "env": [{"name": "E", "value": args[-1]}]}]
    started = time.perf_counter()
    try:
        found = find_refs("apps", "Deployment", obj, TrustedStorage())
        assert BAD in {r.value for r in found.refs}
    except StoreError as exc:
        assert "refusing to read further" in str(exc)
    assert time.perf_counter() - started < 2.0
