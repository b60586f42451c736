"""The admission webhook over real TLS: a uvicorn server on 127.0.0.1, bodies as kube-apiserver sends them."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import re
import socket
import time

import pytest
from cli_helpers import check_json
from conftest import EXAMPLES
from mlgate.gatekeeper.config import EnvironmentSettings, Settings
from mlgate.gatekeeper.review import ANNOTATION_KEY
from test_gatekeeper_support import (
    RunningWebhook,
    admit,
    body,
    deployment,
    records,
    write_certs,
)

EXAMPLE_RELEASES = {
    "readmission-risk": "readmission-risk@1.4.0",
    "chest-xray": "chest-xray@0.9.0",
    "triage-acuity": "triage-acuity@2.0.0",
    "triage-acuity-v2": "triage-acuity@2.1.0",
}


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webhook")
    settings = Settings(evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "audit.jsonl"))
    running = RunningWebhook(tmp, settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(hook):
    with hook.client() as c:
        yield c


@pytest.fixture
def settings_override(hook):
    gk = hook.gatekeeper
    original = gk.settings

    def apply(**envs):
        gk.settings = dataclasses.replace(original, environments={k: EnvironmentSettings(**v) for k, v in envs.items()})

    yield apply
    gk.settings = original


def audit_record(hook, decision_id):
    for rec in records(hook.tmp / "audit.jsonl"):
        if rec["decision_id"] == decision_id:
            return rec
    raise AssertionError(f"no audit record {decision_id}")


def answer(r, doc):
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["apiVersion"] == doc["apiVersion"] and out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == doc["request"]["uid"]
    assert "patch" not in resp and "patchType" not in resp
    for key in resp.get("auditAnnotations", {}):
        assert len(key) <= 63 and ANNOTATION_KEY.match(key), key
    for w in resp.get("warnings", []):
        assert not re.search(r"[\x00-\x1f\x7f]", w), w
    return resp


# ------------------------------------------------------------------ health, readiness, metrics
def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    admit(client, deployment("readmission-risk@1.4.0"))
    text = client.get("/metrics").text
    assert "mlgate_admission_requests_total{" in text
    assert "mlgate_admission_duration_seconds_bucket" in text
    assert 'mlgate_evidence_cache_total{result="hit"}' in text


# ------------------------------------------------------------------ part 6: same decision as the CLI
@pytest.mark.parametrize("env", ["staging", "production"])
@pytest.mark.parametrize("example", sorted(EXAMPLE_RELEASES))
def test_same_decision_as_the_cli(hook, client, tmp_path, example, env):
    code, cli_decision, _ = check_json(EXAMPLES / example, env, tmp_path / "cli.jsonl")
    doc = deployment(EXAMPLE_RELEASES[example])
    resp = answer(admit(client, doc, env), doc)
    assert resp["allowed"] is (code == 0)
    rec = audit_record(hook, resp["auditAnnotations"]["decision-id"])
    assert rec["result"] == cli_decision["result"]
    assert {v["id"] for v in rec["violations"]} == {v["id"] for v in cli_decision["violations"]}
    assert rec["subject_digest"] == cli_decision["model_digest"]
    assert rec["source"] == "admission" and rec["actor"] == "kubernetes-admin" and rec["namespace"] == "clinical-ml"
    if not resp["allowed"]:
        status = resp["status"]
        assert status["code"] == 403 and status["reason"] == "Forbidden"
        assert EXAMPLE_RELEASES[example] in status["message"] and env in status["message"]
        for v in cli_decision["violations"][:1]:
            assert v["id"] in status["message"]


# ------------------------------------------------------------------ the contract
def test_v1beta1_is_answered_in_v1beta1(client):
    doc = deployment("triage-acuity@2.0.0")
    doc["apiVersion"] = "admission.k8s.io/v1beta1"
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is False and "MLG-BIAS-002" in resp["status"]["message"]


def test_deny_message_is_bounded_and_most_severe_first(client):
    doc = deployment("chest-xray@0.9.0")
    message = answer(admit(client, doc, "production"), doc)["status"]["message"]
    assert len(message) <= 1024 and "\n" not in message
    assert message.startswith("mlgate: chest-xray@0.9.0 denied for production (decision ")


def test_update_is_judged_like_a_create_of_the_new_object(client):
    doc = deployment("triage-acuity@2.0.0", operation="UPDATE")
    old = deployment("triage-acuity@2.1.0")["request"]["object"]
    doc["request"]["oldObject"] = old
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is False and "MLG-BIAS-002" in resp["status"]["message"]


def test_delete_is_allowed_and_recorded(hook, client):
    doc = deployment("triage-acuity@2.0.0", operation="DELETE")
    doc["request"]["oldObject"], doc["request"]["object"] = doc["request"]["object"], None
    doc["request"]["options"] = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"}
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is True and "warnings" not in resp
    rec = audit_record(hook, resp["auditAnnotations"]["decision-id"])
    assert rec["action"] == "DELETE" and rec["result"] == "allow"


def test_scale_subresource_is_allowed_and_recorded(hook, client):
    doc = body("deployment-scale-v1")
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is True
    rec = audit_record(hook, resp["auditAnnotations"]["decision-id"])
    assert rec["action"] == "UPDATE" and rec["actor"].startswith("system:serviceaccount:argocd:")


def test_replicas_only_update_is_a_scale(client):
    doc = deployment("triage-acuity@2.0.0", operation="UPDATE")
    old = json.loads(json.dumps(doc["request"]["object"]))
    old["spec"]["replicas"] = 7
    doc["request"]["oldObject"] = old
    assert answer(admit(client, doc), doc)["allowed"] is True


def test_dry_run_is_evaluated_and_recorded_as_dry_run(hook, client):
    doc = deployment("triage-acuity@2.0.0", dryRun=True)
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is False
    assert resp["auditAnnotations"]["dry-run"] == "true"
    assert audit_record(hook, resp["auditAnnotations"]["decision-id"])["dry_run"] is True


def test_equivalent_conversion_reads_kind_and_object(client):
    doc = deployment("triage-acuity@2.0.0")
    doc["request"]["requestKind"] = {"group": "extensions", "version": "v1beta1", "kind": "Deployment"}
    doc["request"]["requestResource"] = {"group": "extensions", "version": "v1beta1", "resource": "deployments"}
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is False and "MLG-BIAS-002" in resp["status"]["message"]


@pytest.mark.parametrize("name, env, allowed, release", [
    ("kserve-create-v1", "production", True, "triage-acuity@2.1.0"),
    ("kserve-legacy-create-v1", "production", False, "triage-acuity@2.0.0"),
    ("seldon-create-v1", "production", True, "readmission-risk@1.4.0,triage-acuity@2.1.0"),
    ("pod-create-v1", "staging", False, "chest-xray@0.9.0"),
])
def test_model_references_in_custom_resources_and_pods(hook, client, name, env, allowed, release):
    doc = body(name)
    resp = answer(admit(client, doc, env), doc)
    assert resp["allowed"] is allowed, resp
    assert sorted(resp["auditAnnotations"]["releases"].split(",")) == sorted(release.split(","))


def test_seldon_nested_child_that_fails_denies_the_graph(client):
    doc = body("seldon-create-v1")
    child = doc["request"]["object"]["spec"]["predictors"][0]["graph"]["children"][0]["children"][0]
    child["modelUri"] = "s3://models.hospital.example/triage-acuity/2.0.0/"
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is False and "triage-acuity@2.0.0" in resp["status"]["message"]


def test_digest_annotation_resolves_and_must_agree(client, tmp_path):
    _, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", tmp_path / "a.jsonl")
    doc = deployment(None, digest=f"sha256:{decision['model_digest']}")
    assert answer(admit(client, doc), doc)["allowed"] is True
    doc = deployment("triage-acuity@2.0.0", digest=f"sha256:{decision['model_digest']}")
    assert answer(admit(client, doc), doc)["allowed"] is False


def test_unknown_release_is_denied_naming_the_store(client):
    doc = deployment("no-such-model@9.9.9")
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is False and resp["status"]["code"] == 403
    assert "no-such-model@9.9.9" in resp["status"]["message"] and "evidence store" in resp["status"]["message"]


def test_malformed_annotation_is_a_recorded_deny(hook, client):
    doc = deployment("not a release")
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is False and "NAME@VERSION" in resp["status"]["message"]
    assert audit_record(hook, resp["auditAnnotations"]["decision-id"])["result"] == "error"


def test_object_without_model_is_denied_unless_not_required(client, settings_override):
    doc = deployment(None)  # no settings file: production requires a model reference (issue 15)
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is False and "MLG-ADM-001" in resp["status"]["message"]
    settings_override(production={"mode": "enforce", "require_model_reference": False})
    doc = deployment(None)
    assert answer(admit(client, doc), doc)["allowed"] is True


def test_warn_and_audit_modes(hook, client, settings_override):
    settings_override(production={"mode": "warn"})
    doc = deployment("triage-acuity@2.0.0")
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is True and any("MLG-BIAS-002" in w for w in resp["warnings"])
    rec = audit_record(hook, resp["auditAnnotations"]["decision-id"])
    assert rec["result"] == "deny" and rec["admission"]["mode"] == "warn" and rec["admission"]["deny_admitted"] is True
    settings_override(production={"mode": "audit"})
    doc = deployment("triage-acuity@2.0.0")
    resp = answer(admit(client, doc), doc)
    assert resp["allowed"] is True and "warnings" not in resp and resp["auditAnnotations"]["mode"] == "audit"
    groups = ["kubeadm:cluster-admins", "system:authenticated"]
    rec = audit_record(hook, resp["auditAnnotations"]["decision-id"])
    subset = ("mode", "deny_admitted", "actor_groups")
    assert {k: rec["admission"][k] for k in subset} == {"mode": "audit", "deny_admitted": True, "actor_groups": groups}
    settings_override(production={"mode": "enforce"})
    doc = deployment("triage-acuity@2.0.0")
    resp = answer(admit(client, doc), doc)
    rec = audit_record(hook, resp["auditAnnotations"]["decision-id"])
    assert resp["allowed"] is False
    assert {k: rec["admission"][k] for k in subset} == {"mode": "enforce", "deny_admitted": False, "actor_groups": groups}


def test_unknown_environment_is_a_recorded_deny(hook, client):
    """Answered as an AdmissionReview (the user reads why), recorded (tests/test_gatekeeper_http.py has more)."""
    doc = deployment("readmission-risk@1.4.0")
    r = admit(client, doc, "nowhere")
    resp = answer(r, doc)
    assert resp["allowed"] is False and "unknown environment 'nowhere'" in resp["status"]["message"]
    assert audit_record(hook, resp["auditAnnotations"]["decision-id"])["result"] == "deny"


# ------------------------------------------------------------------ part 5: two error channels
@pytest.mark.parametrize("content, status, needle", [
    (b"not json", 400, "not JSON"),
    (b'{"apiVersion": "v1", "kind": "Pod"}', 400, "apiVersion"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}', 400, "uid"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nested"),
    (b'{"a": "\xff\xfe"}', 400, "UTF-8"),
    (b"", 400, "not JSON"),
])
def test_bad_bodies_are_400(client, content, status, needle):
    r = client.post("/v1/admit/production", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == status and r.json()["kind"] == "Status" and needle in r.json()["message"], r.text


def test_lone_surrogate_uid_is_400(client):
    raw = json.dumps(deployment("readmission-risk@1.4.0")).replace('"uid": "00000000', '"uid": "\\ud800', 1)
    r = client.post("/v1/admit/production", content=raw.encode())
    assert r.status_code == 400 and "Unicode" in r.json()["message"]


def test_huge_body_is_413_without_reading_it(hook):
    # A raw socket: announce 50 MB and send only the headers; the answer must come at once.
    with socket.create_connection(("127.0.0.1", hook.port)) as raw, hook.ssl_context().wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"POST /v1/admit/production HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 52428800\r\n\r\n" + b"{" * 65536)
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 413")


def test_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(80):
            yield b" " * 65536

    r = client.post("/v1/admit/production", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_gzip_bomb_is_413_quickly(client):
    bomb = gzip.compress(b" " * (200 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 300_000
    started = time.monotonic()
    r = client.post("/v1/admit/production", content=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 413 and time.monotonic() - started < 2


def test_gzip_body_is_accepted(client):
    doc = deployment("readmission-risk@1.4.0")
    r = client.post("/v1/admit/production", content=gzip.compress(json.dumps(doc).encode()),
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert answer(r, doc)["allowed"] is True


def test_audit_write_failure_is_allowed_false_500(hook, client, tmp_path):
    from mlgate.audit import FileAuditSink

    gk = hook.gatekeeper
    original = gk.sink
    blocker = tmp_path / "audit"
    blocker.mkdir()
    gk.sink = FileAuditSink(blocker)  # a directory: the write fails
    try:
        doc = deployment("readmission-risk@1.4.0")
        resp = answer(admit(client, doc), doc)
    finally:
        gk.sink = original
    assert resp["allowed"] is False and resp["status"]["code"] == 500 and "audit record not written" in resp["status"]["message"]
    assert "Traceback" not in resp["status"]["message"]


def test_slow_store_is_denied_within_the_deadline(hook, client):
    gk = hook.gatekeeper
    original = gk.store

    class Slow:
        def __getattr__(self, name):
            return getattr(original, name)

        def load(self, *a, **kw):
            time.sleep(2.0)
            return original.load(*a, **kw)

    gk.store = Slow()
    try:
        doc = deployment("readmission-risk@1.4.0")
        started = time.monotonic()
        resp = answer(admit(client, doc, timeout="1s"), doc)
        elapsed = time.monotonic() - started
    finally:
        time.sleep(1.5)  # let the gate thread finish the slow call before restoring
        gk.store = original
    assert resp["allowed"] is False and resp["status"]["code"] == 500 and "deadline" in resp["status"]["message"]
    assert elapsed < 1.0


# ------------------------------------------------------------------ certificate rotation
def _peer_serial(hook) -> int:
    from cryptography import x509

    with socket.create_connection(("127.0.0.1", hook.port)) as raw, hook.ssl_context().wrap_socket(raw, server_hostname="localhost") as s:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


def test_certificate_is_reloaded_without_dropping_connections(hook, client):
    before = _peer_serial(hook)
    assert client.get("/healthz").status_code == 200  # a kept-alive connection, opened before the rotation
    write_certs(hook.tmp, ca=hook.ca)
    deadline = time.monotonic() + 5
    while _peer_serial(hook) == before:
        assert time.monotonic() < deadline, "certificate not reloaded"
        time.sleep(0.05)
    assert client.get("/healthz").status_code == 200
    doc = deployment("readmission-risk@1.4.0")
    assert answer(admit(client, doc), doc)["allowed"] is True


def test_plain_http_is_refused(hook):
    with socket.create_connection(("127.0.0.1", hook.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        data = s.recv(100)
        assert not data.startswith(b"HTTP/1.1 200")


def test_every_admitted_review_is_in_the_chain(hook):
    recs = records(hook.tmp / "audit.jsonl")
    assert recs and [r["sequence"] for r in recs] == list(range(1, len(recs) + 1))
    assert all(recs[i]["prev_hash"] == recs[i - 1]["hash"] for i in range(1, len(recs)))


# ------------------------------------------------------------------ part 9: several gate threads
def test_several_gate_threads_each_with_its_own_engine(tmp_path):
    """Each gate thread builds its own engine; they share the store and the sink (one chain, one record per request)."""
    import threading

    settings = Settings(evidence_store=f"file://{EXAMPLES}", audit=str(tmp_path / "audit.jsonl"), gate_threads=3)
    hook = RunningWebhook(tmp_path, settings)
    try:
        gks = hook.app.gatekeepers
        assert len(gks) == 3 and len({id(g.prepared.engine) for g in gks}) == 3
        assert len({id(g.store) for g in gks}) == 1 and len({id(g.sink) for g in gks}) == 1
        results: dict[str, dict] = {}

        def send(name):
            with hook.client() as c:
                for _ in range(4):
                    doc = deployment(name)
                    results[doc["request"]["uid"]] = answer(admit(c, doc), doc)

        threads = [threading.Thread(target=send, args=(r,)) for r in ("triage-acuity@2.0.0", "readmission-risk@1.4.0", "chest-xray@0.9.0")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 12
        recs = records(tmp_path / "audit.jsonl")
        assert [r["sequence"] for r in recs] == list(range(1, 13))
        assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(recs))
        by_id = {r["decision_id"]: r for r in recs}
        for resp in results.values():
            rec = by_id[resp["auditAnnotations"]["decision-id"]]
            assert resp["allowed"] is (rec["result"] == "allow")
        # The same release gets the same decision whichever thread judged it.
        triage = {by_id[r["auditAnnotations"]["decision-id"]]["result"] for r in results.values() if r["auditAnnotations"].get("releases") == "triage-acuity@2.0.0"}
        assert triage == {"deny"}
    finally:
        hook.stop()
