"""Red-team tests of the admission webhook (issue 15 as implemented): a cluster user who can create
and update workloads in a watched namespace (production, enforce mode), but cannot change the
webhook or its evidence store, tries to get a workload admitted that would load a denied or
unknown model, or to make the audit trail say something other than what the cluster did.

Every test asserts the SAFE outcome. Tests marked ``xfail(strict=True, reason="red team: ...")``
are attacks that currently SUCCEED (the webhook admits, or the trail is silent): they turn into
failures (XPASS) once the hole is closed, so the marker must then be removed. The others are
attacks that held, kept as regression tests. One real ``mlgate serve`` over TLS for the module.

Model locations in ``examples/`` (the evidence store):
readmission-risk@1.4.0 and triage-acuity@2.1.0 are allowed in production;
triage-acuity@2.0.0 and chest-xray@0.9.0 are denied."""

from __future__ import annotations

import copy
import json
import time

import pytest
from conftest import EXAMPLES, REPO
from mlgate.gatekeeper.config import Settings
from test_gatekeeper_support import RunningWebhook, admit, body, deployment, records

OK = "s3://models.hospital.example/readmission-risk/1.4.0/"  # allowed in production
OK2 = "s3://models.hospital.example/triage-acuity/2.1.0/"  # allowed in production
BAD = "s3://models.hospital.example/triage-acuity/2.0.0/"  # denied (MLG-BIAS-002)
BAD2 = "s3://models.hospital.example/chest-xray/0.9.0/"  # denied
EVIL_ENDPOINT = "http://minio.attacker.example:9000"


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    """No settings file: the defaults a bare ``mlgate serve`` runs with (production enforces)."""
    tmp = tmp_path_factory.mktemp("redteam")
    running = RunningWebhook(tmp, Settings(evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "audit.jsonl")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(hook):
    with hook.client() as c:
        yield c


def by_uid(hook, uid: str, *, at_least: int = 1, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for r in records(hook.tmp / "audit.jsonl") if (r.get("admission") or {}).get("uid") == uid]
        if len(recs) >= at_least or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def refused(hook, client, doc, env: str = "production") -> bool:
    """True when the webhook refuses ``doc`` AND the trail holds a non-allow record for it."""
    r = admit(client, doc, env)
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert resp["uid"] == doc["request"]["uid"]
    recs = by_uid(hook, doc["request"]["uid"])
    assert recs, "no audit record for the request"
    if resp["allowed"]:
        return False
    assert any(rec["result"] in ("deny", "error") for rec in recs), recs
    return True


# ------------------------------------------------------------------------------ object builders
def template_spec(doc: dict) -> dict:
    return doc["request"]["object"]["spec"]["template"]["spec"]


def approved_deployment(**container_changes) -> dict:
    """The Deployment review (template annotated readmission-risk@1.4.0, approved) with its model
    container changed: the annotation is the cover, the change loads another model."""
    doc = deployment("readmission-risk@1.4.0")
    template_spec(doc)["containers"][0].update(container_changes)
    return doc


def isvc(**spec) -> dict:
    doc = body("kserve-create-v1")
    doc["request"]["object"]["spec"] = spec
    return doc


def predictor(uri: str) -> dict:
    return {"minReplicas": 1, "model": {"modelFormat": {"name": "sklearn"}, "name": "", "resources": {}, "storageUri": uri}}


def seldon(mutate) -> dict:
    doc = body("seldon-create-v1")  # graph: combiner -> readmission (OK) -> triage (OK2), both approved
    mutate(doc["request"]["object"]["spec"]["predictors"][0])
    return doc


def seldon2_model(**spec) -> dict:
    doc = body("kserve-create-v1")
    req = doc["request"]
    gvk = {"group": "mlops.seldon.io", "version": "v1alpha1", "kind": "Model"}
    gvr = {"group": "mlops.seldon.io", "version": "v1alpha1", "resource": "models"}
    req.update(kind=gvk, requestKind=dict(gvk), resource=gvr, requestResource=dict(gvr), name="triage", object={
        "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
        "metadata": {"name": "triage", "namespace": "clinical-ml", "uid": "1b2c3d4e-0000-4000-8000-00000000cccc", "generation": 1},
        "spec": {"requirements": ["sklearn"], "memory": "100Ki", **spec}})
    return doc


def approved_pod(**spec_changes) -> dict:
    """A Pod as KServe's pod mutator leaves it: annotated with the approved source URI."""
    doc = body("pod-create-v1")
    obj = doc["request"]["object"]
    obj["metadata"]["annotations"] = {"internal.serving.kserve.io/storage-initializer-sourceuri": OK}
    obj["spec"].update(spec_changes)
    return doc


# ============================================================================== attacks that held
def test_baselines(hook, client):
    assert not refused(hook, client, deployment("readmission-risk@1.4.0"))
    assert refused(hook, client, deployment("triage-acuity@2.0.0"))


@pytest.mark.parametrize("uri", [
    "S3://models.hospital.example/chest-xray/0.9.0/",  # scheme case
    "s3://MODELS.hospital.example/chest-xray/0.9.0/",  # host case
    "s3://models.hospital.example//chest-xray/0.9.0/",  # doubled slash
    "s3://models.hospital.example/chest-xray/0.9.0/?versionId=3",  # query
    "s3://models.hospital.example/%63hest-xray/0.9.0/",  # percent-encoding
    "s3://models.hospital.example/readmission-risk/1.4.0/../../chest-xray/0.9.0/",  # traversal behind an approved prefix
    " s3://models.hospital.example/chest-xray/0.9.0/ ",  # whitespace
])
def test_uri_spellings_of_a_denied_model_are_not_admitted(hook, client, uri):
    assert refused(hook, client, isvc(predictor=predictor(uri)))


@pytest.mark.parametrize("value", ["readmission-risk@1.4.0, chest-xray@0.9.0", "readmission-risk@1.4.0 chest-xray@0.9.0",
                                   "readmission-risk@1.4.0\nchest-xray@0.9.0", "", "readmission-risk"])
def test_release_annotation_with_several_or_no_values_is_refused(hook, client, value):
    doc = deployment(None)
    template = doc["request"]["object"]["spec"]["template"]["metadata"]["annotations"]
    template["mlgate.dev/release"] = value
    assert refused(hook, client, doc)


def test_object_annotation_cannot_cover_a_denied_template_annotation(hook, client):
    doc = deployment("chest-xray@0.9.0")
    doc["request"]["object"]["metadata"]["annotations"]["mlgate.dev/release"] = "readmission-risk@1.4.0"
    assert refused(hook, client, doc)


def test_update_that_swaps_the_model_under_an_approved_old_object_is_judged(hook, client):
    doc = deployment("chest-xray@0.9.0", operation="UPDATE")
    doc["request"]["oldObject"] = deployment("readmission-risk@1.4.0")["request"]["object"]
    assert refused(hook, client, doc)


def test_update_that_changes_replicas_and_the_model_is_not_a_scale(hook, client):
    old = deployment("readmission-risk@1.4.0")["request"]["object"]
    doc = deployment("chest-xray@0.9.0", operation="UPDATE")
    doc["request"]["oldObject"] = old
    doc["request"]["object"]["spec"]["replicas"] = old["spec"].get("replicas", 1) + 3
    assert refused(hook, client, doc)


def test_update_that_hides_the_model_in_status_and_replicas_is_judged(hook, client):
    """is_scale_only ignores ``status``: a change elsewhere (here a new initContainer) is still judged."""
    old = deployment("readmission-risk@1.4.0")["request"]["object"]
    doc = deployment("readmission-risk@1.4.0", operation="UPDATE")
    doc["request"]["oldObject"] = old
    obj = doc["request"]["object"]
    obj["spec"]["replicas"] = 5
    obj["status"] = {"replicas": 5}
    template_spec(doc)["initContainers"] = [{"name": "storage-initializer", "image": "kserve/storage-initializer:v0.14.0",
                                             "args": [BAD2, "/mnt/models"]}]
    assert refused(hook, client, doc)


def test_kind_says_deployment_but_object_is_a_pod(hook, client):
    doc = deployment(None)
    pod = body("pod-create-v1")["request"]["object"]
    pod["metadata"]["annotations"] = {}
    pod["spec"]["containers"][0]["args"] = [f"--model_dir={BAD2}"]
    doc["request"]["object"] = pod
    assert refused(hook, client, doc)


def test_dry_run_allow_is_recorded_as_a_dry_run(hook, client):
    doc = deployment("readmission-risk@1.4.0", dryRun=True)
    r = admit(client, doc).json()["response"]
    assert r["allowed"] is True and r["auditAnnotations"]["dry-run"] == "true"
    (rec,) = by_uid(hook, doc["request"]["uid"])
    assert rec["dry_run"] is True and rec["result"] == "allow"


@pytest.mark.parametrize("arg", ["$MODEL", "$(MODEL)", "${MODEL}"])
def test_model_flag_from_an_env_var_is_refused(hook, client, arg):
    doc = approved_deployment(args=[f"--model_dir={arg}"], env=[{"name": "MODEL", "value": BAD}])
    assert refused(hook, client, doc)


def test_storage_uri_env_pointing_at_another_env_var_is_refused(hook, client):
    doc = approved_deployment(env=[{"name": "X", "value": BAD}, {"name": "STORAGE_URI", "value": "$(X)"}])
    assert refused(hook, client, doc)


def test_duplicate_storage_uri_env_both_judged(hook, client):
    doc = approved_deployment(env=[{"name": "STORAGE_URI", "value": OK}, {"name": "STORAGE_URI", "value": BAD}])
    assert refused(hook, client, doc)


def test_cronjob_job_template_annotation_is_judged(hook, client):
    doc = deployment(None)
    dep = doc["request"]["object"]
    gvk = {"group": "batch", "version": "v1", "kind": "CronJob"}
    doc["request"].update(kind=gvk, requestKind=dict(gvk), resource={"group": "batch", "version": "v1", "resource": "cronjobs"})
    doc["request"]["object"] = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "clinical-ml",
                                "annotations": {"mlgate.dev/release": "readmission-risk@1.4.0"}},
                                "spec": {"schedule": "0 2 * * *", "jobTemplate": {"metadata": {"annotations": {"mlgate.dev/release": "chest-xray@0.9.0"}},
                                                                                   "spec": {"template": dep["spec"]["template"]}}}}
    assert refused(hook, client, doc)


def test_too_many_containers_or_references_is_refused(hook, client):
    many = [{"name": f"c{i}", "image": "x", "env": [{"name": "STORAGE_URI", "value": f"{OK}v{i}"}]} for i in range(20)]
    doc = deployment("readmission-risk@1.4.0")
    template_spec(doc)["containers"] = many
    assert refused(hook, client, doc)
    doc = deployment("readmission-risk@1.4.0")
    template_spec(doc)["containers"] = [{"name": f"c{i}", "image": "x"} for i in range(65)]
    assert refused(hook, client, doc)


def test_seldon_graph_deeper_than_the_limit_is_refused(hook, client):
    def deep(predictor):
        node = {"name": "leaf", "type": "MODEL", "implementation": "SKLEARN_SERVER", "modelUri": BAD2, "children": []}
        for i in range(40):
            node = {"name": f"n{i}", "type": "MODEL", "implementation": "SKLEARN_SERVER", "modelUri": OK, "children": [node]}
        predictor["graph"]["children"][0]["children"][0]["children"] = [node]
    assert refused(hook, client, seldon(deep))


def test_seldon_core2_artifact_version_must_be_an_integer(hook, client):
    assert refused(hook, client, seldon2_model(storageUri="s3://models.hospital.example/readmission-risk/1.4.0", artifactVersion="../../chest-xray/0.9.0"))


# ============================================================================== attacks that succeeded at dd2f817
# (strict xfails until the fixes of issue 15's red-team follow-up closed them; now regression tests)
# --- 1. container command lines: the model a server loads is named where the webhook does not look
def test_model_flag_name_from_env_expansion(hook, client):
    doc = approved_deployment(args=["$(F)", BAD], env=[{"name": "F", "value": "--model_dir"}])
    assert refused(hook, client, doc)


def test_model_flag_abbreviated_as_argparse_allows(hook, client):
    assert refused(hook, client, approved_deployment(args=[f"--model_d={BAD}", "--http_port=8080"]))


@pytest.mark.parametrize("args", [
    [f"--model-repository={BAD2}"],  # Triton (tritonserver reads s3:// and gs:// repositories itself)
    ["--model-store", BAD2],  # Triton's alias
    [f"--model_base_path={BAD2}"],  # TensorFlow Serving (KServe's tensorflow runtime)
    ["--model_path", BAD2, "--model_name", "triage"],  # OpenVINO Model Server
    ["--models", "triage=https://models.attacker.example/chest-xray.mar"],  # TorchServe
])
def test_other_model_server_flags(hook, client, args):
    assert refused(hook, client, approved_deployment(args=args))


def test_model_flag_inside_a_shell_command(hook, client):
    doc = approved_deployment(command=["sh", "-c", f"exec python -m sklearnserver --model_dir={BAD} --model_name=triage"], args=[])
    assert refused(hook, client, doc)


def test_kserve_storage_initializer_image_under_another_name(hook, client):
    doc = deployment("readmission-risk@1.4.0")
    template_spec(doc)["initContainers"] = [{"name": "fetch-model", "image": "kserve/storage-initializer:v0.14.0",
                                             "args": [BAD2, "/mnt/models"]}]
    assert refused(hook, client, doc)


# --- 2. environment the webhook does not see
def test_storage_uri_from_env_from(hook, client):
    doc = approved_deployment(envFrom=[{"prefix": "STORAGE_", "configMapRef": {"name": "model-location"}}])  # key URI -> STORAGE_URI
    assert refused(hook, client, doc)


def test_seldon_parameters_env_in_a_plain_deployment(hook, client):
    params = json.dumps([{"name": "model_uri", "value": BAD2, "type": "STRING"}])
    doc = approved_deployment(image="seldonio/sklearnserver:1.18.0", args=[], env=[{"name": "PREDICTIVE_UNIT_PARAMETERS", "value": params}])
    assert refused(hook, client, doc)


# --- 3. the approved NAME with attacker BYTES: the URI is resolved through user-controlled endpoints
@pytest.mark.parametrize("case", ["kserve storage.parameters.endpoint_url", "kserve storage.key (Secret entry)", "pod AWS_ENDPOINT_URL",
                                  "seldon v1 envSecretRefName", "seldon core 2 secretName"])
def test_approved_uri_through_an_attacker_endpoint(hook, client, case):
    storage = {"path": "readmission-risk/1.4.0", "parameters": {"type": "s3", "bucket": "models.hospital.example"}}
    if case == "kserve storage.parameters.endpoint_url":
        storage["parameters"]["endpoint_url"] = EVIL_ENDPOINT  # KServe merges parameters over the Secret's entry
        doc = isvc(predictor={"model": {"modelFormat": {"name": "sklearn"}, "storage": storage}})
    elif case == "kserve storage.key (Secret entry)":
        storage["key"] = "attacker"  # the user's own storage-config entry, endpoint_url: the attacker's MinIO
        doc = isvc(predictor={"model": {"modelFormat": {"name": "sklearn"}, "storage": storage}})
    elif case == "pod AWS_ENDPOINT_URL":
        doc = approved_pod(initContainers=[{"name": "storage-initializer", "image": "kserve/storage-initializer:v0.14.0", "args": [OK, "/mnt/models"],
                                            "env": [{"name": "AWS_ENDPOINT_URL", "value": EVIL_ENDPOINT}, {"name": "S3_ENDPOINT", "value": "minio.attacker.example:9000"}]}])
    elif case == "seldon v1 envSecretRefName":
        doc = seldon(lambda p: p["graph"]["children"][0].update(envSecretRefName="attacker-rclone"))  # RCLONE_CONFIG_S3_ENDPOINT=...
    else:
        doc = seldon2_model(storageUri=OK, secretName="attacker-rclone")  # [s3] type = s3, endpoint = attacker
    assert refused(hook, client, doc)


# --- 4. model-loading fields of the supported kinds that are not read
def test_seldon_node_parameter_model_uri(hook, client):
    node = {"name": "shadow", "type": "MODEL", "implementation": "SKLEARN_SERVER", "children": [],
            "parameters": [{"name": "model_uri", "type": "STRING", "value": BAD2}]}
    assert refused(hook, client, seldon(lambda p: p["graph"]["children"][0]["children"].append(node)))


def test_seldon_user_chosen_storage_initializer_image(hook, client):
    doc = seldon(lambda p: p["graph"]["children"][0].update(storageInitializerImage="registry.attacker.example/fetch:latest"))
    assert refused(hook, client, doc)


def test_seldon_custom_image_node_beside_approved_nodes(hook, client):
    def add(p):
        p["graph"]["children"][0]["children"].append({"name": "xray", "type": "MODEL", "children": []})
        p["componentSpecs"].append({"spec": {"containers": [{"name": "xray", "image": "registry.attacker.example/chest-xray-server:0.9.0"}]}})
    assert refused(hook, client, seldon(add))


def test_kserve_custom_predictor_beside_an_approved_explainer(hook, client):
    doc = isvc(predictor={"containers": [{"name": "kserve-container", "image": "registry.attacker.example/chest-xray-server:0.9.0"}]},
               explainer={"art": {"type": "SquareAttack", "storageUri": OK}})
    assert refused(hook, client, doc)


def test_image_volume_model(hook, client):
    doc = approved_deployment(args=["--model_dir=/mnt/xray"], volumeMounts=[{"name": "xray", "mountPath": "/mnt/xray"}])
    template_spec(doc)["volumes"] = [{"name": "xray", "image": {"reference": "registry.attacker.example/models/chest-xray:0.9.0", "pullPolicy": "IfNotPresent"}}]
    assert refused(hook, client, doc)


# --- 5. paths around the webhook
def test_ephemeral_container_loading_a_denied_model(hook, client):
    from mlgate.gatekeeper.manifests import WORKLOAD_RULES

    doc = body("pod-create-v1", operation="UPDATE", subResource="ephemeralcontainers")
    pod = doc["request"]["object"]
    pod["metadata"]["annotations"] = {"mlgate.dev/release": "readmission-risk@1.4.0"}
    doc["request"]["oldObject"] = copy.deepcopy(pod)
    pod["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "kserve/sklearnserver:v0.14.0", "targetContainerName": "infer",
                                           "args": [f"--model_dir={BAD2}", "--http_port=8081"]}]
    assert refused(hook, client, doc)  # judged if it were sent: the ephemeral container's --model_dir is not read
    assert any("pods/ephemeralcontainers" in resources for _, resources in WORKLOAD_RULES)  # and it is never sent


def test_exempt_object_label_is_not_a_user_controlled_bypass():
    from kubernetes import client as k
    from mlgate.gatekeeper.manifests import ManifestOptions, build

    try:
        objects = build(ManifestOptions(namespace="mlgate", image="x", environments=["production"], cert_manager=True,
                                         trust_policy=(REPO / "deploy" / "kustomize" / "base" / "trust.yaml").read_text(),
                                         exempt_object_labels=["mlgate.dev/no-model=true"]))
    except Exception:  # noqa: BLE001 - refusing the option is a safe outcome
        return
    (config,) = [o for o in objects if isinstance(o, k.V1ValidatingWebhookConfiguration)]
    # Safe: nothing the object's author controls keeps it from the webhook (the settings file's
    # objectSelector exemptions are judged and recorded; the ValidatingWebhook's are never seen).
    assert all(w.object_selector is None for w in config.webhooks)


# --- 6. the trail
def test_deeply_nested_review_is_recorded(hook, client):
    doc = isvc(predictor=predictor(OK2))
    doc["request"]["object"]["spec"]["predictor"]["model"]["runtimeVersion"] = "__DEEP__"
    text = json.dumps(doc).replace('"__DEEP__"', "[" * 5000 + "]" * 5000)
    r = client.post("/v1/admit/production?timeout=10s", content=text.encode(), headers={"Content-Type": "application/json"})
    allowed = r.status_code == 200 and r.json().get("response", {}).get("allowed") is True
    assert not allowed  # the cluster refuses it (failurePolicy: Fail) ...
    assert by_uid(hook, doc["request"]["uid"], timeout=1.0)  # ... and the trail should say so
