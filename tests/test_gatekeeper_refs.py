"""Issue 15, parts 1-3: the webhook judges every model a workload would load, the references on one
workload must agree, and with no settings file every object must name its model. Real
AdmissionReviews (the shapes kube-apiserver sends: ``kubectl create --dry-run=server -o json``
objects, full KServe and Seldon resources) over TLS to a real webhook on 127.0.0.1."""

from __future__ import annotations

import copy

import pytest
from cli_helpers import check_json
from conftest import EXAMPLES
from mlgate.gatekeeper.config import Settings, load_config
from test_gatekeeper_support import RunningWebhook, admit, body, deployment, records

from mlgate.errors import InputError

URI = {
    "readmission-risk@1.4.0": "s3://models.hospital.example/readmission-risk/1.4.0/",  # allowed in production
    "triage-acuity@2.1.0": "s3://models.hospital.example/triage-acuity/2.1.0/",  # allowed in production
    "triage-acuity@2.0.0": "s3://models.hospital.example/triage-acuity/2.0.0/",  # denied: MLG-BIAS-002
    "chest-xray@0.9.0": "s3://models.hospital.example/chest-xray/0.9.0/",  # denied
}


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    """No settings file: the defaults a bare ``mlgate serve`` runs with."""
    tmp = tmp_path_factory.mktemp("refs")
    running = RunningWebhook(tmp, Settings(evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "audit.jsonl")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(hook):
    with hook.client() as c:
        yield c


def judged(hook, client, doc, env="production"):
    r = admit(client, doc, env)
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert resp["uid"] == doc["request"]["uid"]
    ids = set(resp["auditAnnotations"]["decision-id"].split(","))
    recs = [rec for rec in records(hook.tmp / "audit.jsonl") if rec["decision_id"] in ids]
    assert len(recs) == len(ids)
    return resp, recs


def isvc(**spec) -> dict:
    """The KServe InferenceService review with ``spec`` replaced (components as KServe's defaulter leaves them)."""
    doc = body("kserve-create-v1")
    doc["request"]["object"]["spec"] = spec
    return doc


def predictor(release: str) -> dict:
    return {"minReplicas": 1, "model": {"modelFormat": {"name": "sklearn"}, "name": "", "resources": {}, "storageUri": URI[release]}}


def container(name: str, **fields) -> dict:
    return {"name": name, "image": f"registry.hospital.example/ml/{name}:1.0", "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            **fields}


def custom_kind(group: str, version: str, kind: str, resource: str, obj: dict) -> dict:
    doc = body("kserve-create-v1")
    req = doc["request"]
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": resource}
    req.update(kind=gvk, requestKind=dict(gvk), resource=gvr, requestResource=dict(gvr), name=obj["metadata"]["name"], object=obj)
    return doc


def trained_model(release: str) -> dict:
    return custom_kind("serving.kserve.io", "v1alpha1", "TrainedModel", "trainedmodels", {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "TrainedModel",
        "metadata": {"name": "triage-tm", "namespace": "clinical-ml", "uid": "1b2c3d4e-0000-4000-8000-00000000aaaa", "generation": 1,
                     "creationTimestamp": "2026-11-29T01:53:00Z"},
        "spec": {"inferenceService": "triage-acuity", "model": {"framework": "sklearn", "memory": "256Mi", "storageUri": URI[release]}}})


def seldon_model(release: str, **extra) -> dict:
    return custom_kind("mlops.seldon.io", "v1alpha1", "Model", "models", {
        "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
        "metadata": {"name": "triage", "namespace": "clinical-ml", "uid": "1b2c3d4e-0000-4000-8000-00000000bbbb", "generation": 1,
                     "creationTimestamp": "2026-11-29T01:54:00Z"},
        "spec": {"storageUri": URI[release], "requirements": ["sklearn"], "memory": "100Ki", **extra}})


def with_init_container(doc: dict, init: dict) -> dict:
    doc["request"]["object"]["spec"]["template"]["spec"]["initContainers"] = [init]
    return doc


# ------------------------------------------------------------------ part 1: every model-loading field is judged
PART1 = {
    # An approved predictor cannot carry a denied explainer, transformer or custom container past the webhook.
    "kserve explainer.alibi.storageUri": (lambda: isvc(
        predictor=predictor("triage-acuity@2.1.0"),
        explainer={"alibi": {"type": "AnchorTabular", "storageUri": URI["triage-acuity@2.0.0"], "resources": {}}}),
        False, "spec.explainer.alibi.storageUri", "triage-acuity@2.0.0"),
    "kserve explainer.art.storageUri": (lambda: isvc(
        predictor=predictor("triage-acuity@2.1.0"),
        explainer={"art": {"type": "SquareAttack", "storageUri": URI["chest-xray@0.9.0"], "config": {"nb_classes": "10"}}}),
        False, "spec.explainer.art.storageUri", "chest-xray@0.9.0"),
    "kserve transformer container env STORAGE_URI": (lambda: isvc(
        predictor=predictor("triage-acuity@2.1.0"),
        transformer={"containers": [container("kserve-container", args=["--model_name", "triage"],
                                              env=[{"name": "STORAGE_URI", "value": URI["chest-xray@0.9.0"]}])]}),
        False, "spec.transformer.containers[0].env[0].value", "chest-xray@0.9.0"),
    "kserve custom predictor --model_dir": (lambda: isvc(
        predictor={"containers": [container("kserve-container", args=[f"--model_dir={URI['triage-acuity@2.0.0']}", "--http_port=8080"])]}),
        False, "spec.predictor.containers[0].args[--model_dir]", "triage-acuity@2.0.0"),
    "kserve storageUris": (lambda: isvc(
        predictor={**predictor("triage-acuity@2.1.0"),
                   "storageUris": [{"uri": URI["triage-acuity@2.0.0"], "mountPath": "/mnt/models/triage-old"}]}),
        False, "spec.predictor.storageUris[0].uri", "triage-acuity@2.0.0"),
    "kserve legacy sklearn.storageUri": (lambda: isvc(
        predictor={"sklearn": {"storageUri": URI["chest-xray@0.9.0"], "protocolVersion": "v2", "resources": {}}}),
        False, "spec.predictor.sklearn.storageUri", "chest-xray@0.9.0"),
    # storage {key, path}: the bucket lies in a Secret the webhook does not read: a deny, never "no model".
    "kserve model.storage without bucket": (lambda: isvc(
        predictor={"model": {"modelFormat": {"name": "sklearn"}, "storage": {"key": "localMinIO", "path": "triage-acuity/2.1.0"}}}),
        False, "spec.predictor.model.storage", "storage-config Secret"),
    "kserve model.storage with type and bucket": (lambda: isvc(
        predictor={"model": {"modelFormat": {"name": "sklearn"}, "storage": {
            "path": "readmission-risk/1.4.0", "parameters": {"type": "s3", "bucket": "models.hospital.example"}}}}),
        True, "spec.predictor.model.storage", "readmission-risk@1.4.0"),
    # A storage-config entry sets the endpoint the approved path is fetched from: trusted only when the settings name it.
    "kserve model.storage with an untrusted key": (lambda: isvc(
        predictor={"model": {"modelFormat": {"name": "sklearn"}, "storage": {
            "key": "hospital-s3", "path": "readmission-risk/1.4.0", "parameters": {"type": "s3", "bucket": "models.hospital.example"}}}}),
        False, "spec.predictor.model.storage.key", "trustedStorageCredentials.storageKeys"),
    "kserve env STORAGE_URI from a ConfigMap": (lambda: isvc(
        predictor={"containers": [container("kserve-container", env=[
            {"name": "STORAGE_URI", "valueFrom": {"configMapKeyRef": {"name": "model-location", "key": "uri"}}}])]}),
        False, "spec.predictor.containers[0].env[0]", "configMapKeyRef"),
    "kserve TrainedModel": (lambda: trained_model("triage-acuity@2.0.0"), False, "spec.model.storageUri", "triage-acuity@2.0.0"),
    "seldon explainer.modelUri": (lambda: _seldon_with_explainer(URI["chest-xray@0.9.0"]),
                                  False, "spec.predictors[0].explainer.modelUri", "chest-xray@0.9.0"),
    "seldon core 2 Model": (lambda: seldon_model("chest-xray@0.9.0"), False, "spec.storageUri", "chest-xray@0.9.0"),
    "seldon core 2 Model approved": (lambda: seldon_model("readmission-risk@1.4.0"), True, "spec.storageUri", "readmission-risk@1.4.0"),
    # A Deployment annotated with an approved release whose initContainer downloads another model.
    "deployment initContainer env STORAGE_URI": (lambda: with_init_container(deployment(None), container(
        "fetch-model", env=[{"name": "STORAGE_URI", "value": URI["triage-acuity@2.0.0"]}])),
        False, "spec.template.spec.initContainers[0].env[0].value", "triage-acuity@2.0.0"),
    "deployment KServe storage-initializer": (lambda: with_init_container(deployment(None), container(
        "storage-initializer", args=[URI["chest-xray@0.9.0"], "/mnt/models"])),
        False, "spec.template.spec.initContainers[0].args[0]", "chest-xray@0.9.0"),
}


def _seldon_with_explainer(uri: str) -> dict:
    doc = body("seldon-create-v1")
    doc["request"]["object"]["spec"]["predictors"][0]["explainer"] = {
        "type": "AnchorTabular", "modelUri": uri, "containerSpec": {"name": "", "resources": {}}}
    return doc


@pytest.mark.parametrize("case", sorted(PART1))
def test_every_model_loading_field_is_judged(hook, client, case):
    make, allowed, field, needle = PART1[case]
    resp, recs = judged(hook, client, make())
    assert resp["allowed"] is allowed, (case, resp)
    by_field = {(rec["admission"].get("reference") or {}).get("field"): rec for rec in recs}
    assert field in by_field, (case, sorted(filter(None, by_field)))
    rec = by_field[field]
    assert rec["result"] in (("allow",) if allowed else ("deny", "error"))
    if allowed:
        assert needle in resp["auditAnnotations"]["releases"]
    else:
        assert needle in resp["status"]["message"], (case, resp["status"]["message"])


def test_the_original_model_is_judged_alongside(hook, client):
    """The approved predictor is still judged (one record each): the explainer's deny is the object's deny."""
    resp, recs = judged(hook, client, PART1["kserve explainer.alibi.storageUri"][0]())
    results = {rec["admission"]["reference"]["field"]: rec["result"] for rec in recs}
    assert results == {"spec.predictor.model.storageUri": "allow", "spec.explainer.alibi.storageUri": "deny"}
    assert resp["auditAnnotations"]["result"] == "deny"


# ------------------------------------------------------------------ part 2: references agree; several models, each judged
def _digest(release_dir: str, tmp_path) -> str:
    _, decision, _ = check_json(EXAMPLES / release_dir, "production", tmp_path / f"{release_dir}.jsonl")
    return f"sha256:{decision['model_digest']}"


def test_release_and_digest_annotations_must_agree(hook, client, tmp_path):
    # Both models are approved in production; only the disagreement can deny.
    doc = deployment("readmission-risk@1.4.0", digest=_digest("triage-acuity-v2", tmp_path))
    resp, recs = judged(hook, client, doc)
    assert resp["allowed"] is False and "MLG-ADM-004" in resp["status"]["message"]
    refused = [rec for rec in recs if any(v["id"] == "MLG-ADM-004" for v in rec["violations"])]
    assert len(refused) == 1 and len(refused[0]["admission"]["references"]) == 2
    # The same digest as the release: they agree.
    doc = deployment("readmission-risk@1.4.0", digest=_digest("readmission-risk", tmp_path))
    assert judged(hook, client, doc)[0]["allowed"] is True


def test_a_uri_must_be_one_the_annotated_release_declares(hook, client):
    doc = deployment("readmission-risk@1.4.0")
    doc["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "STORAGE_URI", "value": URI["triage-acuity@2.1.0"]})
    resp, _ = judged(hook, client, doc)
    assert resp["allowed"] is False and "MLG-ADM-004" in resp["status"]["message"]
    doc = deployment("readmission-risk@1.4.0")
    doc["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "STORAGE_URI", "value": URI["readmission-risk@1.4.0"]})
    assert judged(hook, client, doc)[0]["allowed"] is True


def test_several_models_each_judged_and_the_status_names_the_denied_one(hook, client):
    ok = isvc(predictor=predictor("triage-acuity@2.1.0"), explainer={"art": {"type": "SquareAttack", "storageUri": URI["readmission-risk@1.4.0"]}})
    resp, recs = judged(hook, client, ok)
    assert resp["allowed"] is True and len(recs) == 2
    assert sorted(resp["auditAnnotations"]["releases"].split(",")) == ["readmission-risk@1.4.0", "triage-acuity@2.1.0"]
    bad = copy.deepcopy(ok)
    bad["request"]["object"]["spec"]["explainer"]["art"]["storageUri"] = URI["triage-acuity@2.0.0"]
    resp, _ = judged(hook, client, bad)
    assert resp["allowed"] is False
    assert "triage-acuity@2.0.0 denied" in resp["status"]["message"] and "triage-acuity@2.1.0" not in resp["status"]["message"]


# ------------------------------------------------------------------ part 3: safe defaults, explicit and recorded exemptions
@pytest.mark.parametrize("env", ["production", "staging"])
def test_no_settings_file_requires_a_model_reference(hook, client, env):
    resp, recs = judged(hook, client, deployment(None), env)
    assert resp["allowed"] is False and "MLG-ADM-001" in resp["status"]["message"]
    assert recs[0]["result"] == "deny"
    plain = body("pod-create-v1")
    plain["request"]["object"]["metadata"].pop("annotations", None)
    resp, _ = judged(hook, client, plain, env)
    assert resp["allowed"] is False and "MLG-ADM-001" in resp["status"]["message"]


SETTINGS = """
environments:
  production:
    mode: enforce
    exemptions:
      - rule: batch-feature-jobs
        objectSelector:
          matchLabels: {mlgate.dev/no-model: "true"}
      - rule: tools-namespace
        namespaceSelector:
          matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [clinical-tools]}]
"""


@pytest.fixture(scope="module")
def exempting(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exempt")
    (tmp / "webhook.yaml").write_text(SETTINGS)
    settings = load_config(tmp / "webhook.yaml", evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "audit.jsonl"))
    running = RunningWebhook(tmp, settings)
    yield running
    running.stop()


def test_exemptions_are_explicit_and_recorded_with_their_rule(exempting):
    with exempting.client() as c:
        plain = deployment(None)
        resp, _ = judged(exempting, c, plain)
        assert resp["allowed"] is False and "MLG-ADM-001" in resp["status"]["message"]  # no rule matches

        labelled = deployment(None)
        labelled["request"]["object"]["metadata"].setdefault("labels", {})["mlgate.dev/no-model"] = "true"
        resp, (rec,) = judged(exempting, c, labelled)
        assert resp["allowed"] is True and rec["exempt"]
        assert rec["admission"]["exemption"] == {"rule": "batch-feature-jobs", "source": "settings",
                                                 "objectSelector": {"matchLabels": {"mlgate.dev/no-model": "true"}}}

        elsewhere = deployment(None, namespace="clinical-tools")
        elsewhere["request"]["object"]["metadata"]["namespace"] = "clinical-tools"
        resp, (rec,) = judged(exempting, c, elsewhere)
        assert resp["allowed"] is True and rec["admission"]["exemption"]["rule"] == "tools-namespace"
        assert rec["admission"]["object"]["namespace"] == "clinical-tools"

        # An exemption waives only the requirement to name a model: a named model is judged all the same.
        denied = deployment("triage-acuity@2.0.0")
        denied["request"]["object"]["metadata"].setdefault("labels", {})["mlgate.dev/no-model"] = "true"
        resp, _ = judged(exempting, c, denied)
        assert resp["allowed"] is False and "MLG-BIAS-002" in resp["status"]["message"]


@pytest.mark.parametrize("text, needle", [
    ("environments: {production: {exemptions: [{rule: x, namespaceSelector: {matchLabels: {team: ml}}}]}}", "namespace's name"),
    ("environments: {production: {exemptions: [{rule: x}]}}", "needs a namespaceSelector or an objectSelector"),
    ("environments: {production: {exemptions: [{rule: x, objectSelector: {matchExpressions: [{key: a, operator: Near}]}}]}}", "operator"),
    ("environments: {production: {exemptions: [{rule: x, objectSelector: {matchLabels: {a: true}}}]}}", "label value"),
    ("environments: {production: {requireModelReference: 'no'}}", "true or false"),
])
def test_bad_exemptions_are_one_line_errors(tmp_path, text, needle):
    (tmp_path / "webhook.yaml").write_text(text)
    with pytest.raises(InputError) as err:
        load_config(tmp_path / "webhook.yaml", evidence_store=f"file://{EXAMPLES}", audit=str(tmp_path / "a.jsonl"))
    message = err.value.diagnostics()
    assert needle in message and "\n" not in message and "webhook.yaml" in message

