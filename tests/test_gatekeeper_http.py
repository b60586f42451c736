"""Kubernetes-shaped answers, the apiserver's warning limits, the decision log and the metrics labels (issue 18)."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from conftest import EXAMPLES, REPO
from mlgate.gatekeeper.config import EnvironmentSettings, Settings
from mlgate.gatekeeper.review import clean_warnings, response
from prometheus_client.parser import text_string_to_metric_families
from test_gatekeeper_support import RunningWebhook, admit, deployment, records, write_certs


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    settings = Settings(evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "audit.jsonl"),
                        environments={"staging": EnvironmentSettings(mode="warn"), "production": EnvironmentSettings(mode="enforce")})
    running = RunningWebhook(tmp, settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(hook):
    with hook.client() as c:
        yield c


def _record(hook, decision_id):
    (rec,) = [r for r in records(hook.tmp / "audit.jsonl") if r["decision_id"] == decision_id]
    return rec


def _is_status(doc, code, reason):
    assert doc["kind"] == "Status" and doc["apiVersion"] == "v1" and doc["status"] == "Failure", doc
    assert doc["code"] == code and doc["reason"] == reason and doc["message"] and "\n" not in doc["message"], doc


# ------------------------------------------------------------------ answered as an AdmissionReview, recorded
@pytest.mark.parametrize("path_env", ["prod", "PROD_1", "x" * 300])
def test_unknown_environment_is_a_recorded_deny(hook, client, path_env):
    doc = deployment("readmission-risk@1.4.0")
    r = admit(client, doc, path_env)
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert resp["uid"] == doc["request"]["uid"] and resp["allowed"] is False
    assert resp["status"]["code"] == 403 and "unknown environment" in resp["status"]["message"]
    rec = _record(hook, resp["auditAnnotations"]["decision-id"])
    assert rec["result"] == "deny" and [v["id"] for v in rec["violations"]] == ["MLG-ADM-002"]
    assert rec["environment"] == path_env[:63]


def test_malformed_review_with_a_uid_is_a_recorded_deny(hook, client):
    doc = deployment("readmission-risk@1.4.0")
    doc["request"]["operation"] = "PATCH"
    r = admit(client, doc)
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert resp["uid"] == doc["request"]["uid"] and resp["allowed"] is False
    assert resp["status"]["code"] == 400 and resp["status"]["reason"] == "BadRequest" and "request.operation" in resp["status"]["message"]
    rec = _record(hook, resp["auditAnnotations"]["decision-id"])
    assert rec["result"] == "deny" and rec["violations"][0]["id"] == "MLG-ADM-003"


# ------------------------------------------------------------------ other HTTP errors: a Kubernetes Status
def test_http_errors_carry_a_status_object(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404
    _is_status(r.json(), 404, "NotFound")
    r = client.get("/v1/admit/production")
    assert r.status_code == 405
    _is_status(r.json(), 405, "MethodNotAllowed")
    r = client.post("/v1/admit/production", content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    _is_status(r.json(), 400, "BadRequest")
    r = client.post("/v1/admit/production", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    _is_status(r.json(), 415, "UnsupportedMediaType")
    r = client.post("/v1/admit/production", content=b" " * (5 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    _is_status(r.json(), 413, "RequestEntityTooLarge")


# ------------------------------------------------------------------ warnings: the apiserver's own limits
def test_warnings_are_whole_until_their_total_passes_4096_runes():
    long = "mlgate (warn mode, would deny) [MLG-SIG-001] " + "é" * 400 + " model digest is 6e73d59f"
    assert clean_warnings([long]) == [long]  # 447 runes, alone: not cut
    several = [f"{i:02d} " + "w" * 290 for i in range(13)]  # 3,809 runes in all
    assert clean_warnings(several) == several


def test_past_4096_runes_each_warning_is_cut_to_256_and_the_rest_dropped():
    many = [f"{i:02d} " + "w" * 400 for i in range(30)]  # 12,090 runes
    out = clean_warnings(many)
    assert all(len(w) <= 256 for w in out) and [w[:2] for w in out] == [f"{i:02d}" for i in range(16)]
    assert sum(map(len, out)) >= 4096 - 256  # the apiserver adds while its total is under 4,096


def test_control_characters_are_stripped_and_duplicates_dropped():
    out = clean_warnings(["a\x00b\tc\x1bd\u0085e", "a\x00b\tc\x1bd\u0085e", "\x07"])
    assert out == ["a b c d e"]
    resp = response("admission.k8s.io/v1", "u", allowed=True, warnings=["x\ny"])["response"]
    assert resp["warnings"] == ["x y"]


def test_warn_mode_keeps_a_long_warning_whole(client):
    """Staging (warn) admits a denied release; its warnings reach the apiserver uncut when they fit."""
    doc = deployment("triage-acuity@2.0.0")
    r = admit(client, doc, "staging")
    resp = r.json()["response"]
    assert resp["allowed"] is True and resp["warnings"]
    if sum(map(len, resp["warnings"])) <= 4096:
        assert not any(w.endswith("...") for w in resp["warnings"]), resp["warnings"]


# ------------------------------------------------------------------ metrics: admitted/refused apart from the verdict
def _samples(text, name):
    return [s for f in text_string_to_metric_families(text) if f.name == "mlgate_admission_requests" for s in f.samples if s.name == name]


def test_warn_mode_denials_count_as_admitted(client):
    before = _samples(client.get("/metrics").text, "mlgate_admission_requests_total")
    count = lambda samples, **labels: sum(s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items()))
    admit(client, deployment("triage-acuity@2.0.0"), "staging")
    admit(client, deployment("triage-acuity@2.0.0"), "production")
    after = _samples(client.get("/metrics").text, "mlgate_admission_requests_total")
    delta = lambda **labels: count(after, **labels) - count(before, **labels)
    assert delta(environment="staging", verdict="deny", admission="admitted") == 1
    assert delta(environment="staging", admission="refused") == 0
    assert delta(environment="production", verdict="deny", admission="refused") == 1


# ------------------------------------------------------------------ the decision log
def test_json_log_has_one_line_per_admission(tmp_path):
    ca, cert, key, _ = write_certs(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlgate", "serve", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert), "--key", str(key),
                             "--evidence-store", f"file://{EXAMPLES}", "--audit", f"file://{tmp_path / 'audit.jsonl'}", "--log-format", "json"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ctx, timeout=5) as c:
                    if c.get("/readyz").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ctx, timeout=10) as c:
            denied = deployment("triage-acuity@2.0.0")
            allowed = deployment("readmission-risk@1.4.0")
            r1 = admit(c, denied).json()["response"]
            r2 = admit(c, allowed).json()["response"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is JSON (uvicorn's too)
    admissions = [line for line in lines if line["logger"] == "mlgate.admission"]
    assert len(admissions) == 2, err
    first, second = admissions
    assert first["uid"] == denied["request"]["uid"] and first["admission"] == "refused" and first["result"] == "deny"
    assert first["decision_ids"] == r1["auditAnnotations"]["decision-id"].split(",") and first["rule_ids"]
    assert first["kind"] == "Deployment" and first["namespace"] == denied["request"]["namespace"] and first["name"] == denied["request"]["name"]
    assert first["environment"] == "production" and first["mode"] == "enforce" and isinstance(first["latency_ms"], float)
    assert first["time"].endswith("Z")
    assert second["admission"] == ("admitted" if r2["allowed"] else "refused") and second["uid"] == allowed["request"]["uid"]
