"""Fuzzed request bodies: never a 5xx, never a hang; always a valid AdmissionReview or a 4xx JSON error.
And ``mlgate serve`` itself, as an operator starts it."""

from __future__ import annotations

import itertools
import json
import os
import signal
import ssl
import subprocess
import sys
import time

import pytest
from conftest import EXAMPLES, REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlgate.gatekeeper.config import Settings
from test_gatekeeper_support import RunningWebhook, deployment, write_certs

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def fuzz_hook(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    running = RunningWebhook(tmp, Settings(evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "audit.jsonl")))
    with running.client(timeout=10) as client:
        yield running, client
    running.stop()


def _mutate(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


PATHS = [("request",), ("request", "uid"), ("request", "kind"), ("request", "operation"), ("request", "object"),
         ("request", "dryRun"), ("request", "userInfo"), ("request", "object", "metadata"), ("request", "object", "spec", "template"),
         ("request", "object", "spec", "template", "metadata", "annotations"), ("apiVersion",), ("kind",), ("request", "namespace")]


def _check(client, content: bytes):
    r = client.post("/v1/admit/production?timeout=5s", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text
    out = r.json()
    if r.status_code == 200:
        assert out["kind"] == "AdmissionReview" and isinstance(out["response"]["allowed"], bool) and out["response"]["uid"]
    else:
        assert r.status_code in (400, 404, 413, 415) and out["kind"] == "Status" and isinstance(out["message"], str) and "\n" not in out["message"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=json_values)
def test_fuzzed_fields(fuzz_hook, path, value):
    _, client = fuzz_hook
    doc = _mutate(deployment("readmission-risk@1.4.0"), path, value)
    _check(client, json.dumps(doc).encode())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzzed_bodies(fuzz_hook, raw):
    _, client = fuzz_hook
    _check(client, raw)


@pytest.mark.parametrize("workers", [1, 2])
def test_mlgate_serve_starts_answers_and_stops(tmp_path, workers):
    """The real command, as an operator runs it; DELETE needs no evidence dated to the test clock.
    With several worker processes, the audit trail is still one chain."""
    import httpx

    ca, cert, key, _ = write_certs(tmp_path)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = [sys.executable, "-m", "mlgate", "serve", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert), "--key", str(key),
           "--evidence-store", f"file://{EXAMPLES}", "--audit", f"file://{tmp_path / 'audit.jsonl'}", "--log-level", "warning", "--workers", str(workers)]
    proc = subprocess.Popen(exe, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=str(ca)), timeout=5) as client:
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
            doc = deployment("readmission-risk@1.4.0", operation="DELETE")
            doc["request"]["oldObject"], doc["request"]["object"] = doc["request"]["object"], None
            for i in range(6):
                doc["request"]["uid"] = f"uid-{i}"
                r = client.post("/v1/admit/production?timeout=5s", json=doc)
                assert r.json()["response"]["allowed"] is True and r.json()["response"]["uid"] == f"uid-{i}"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says SIGTERM.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    recs = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["action"] for r in recs] == ["DELETE"] * 6 and [r["sequence"] for r in recs] == list(range(1, 7))
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(recs))


def test_mlgate_serve_bad_store_is_one_line(tmp_path):
    _, cert, key, _ = write_certs(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "mlgate", "serve", "--host", "127.0.0.1", "--port", "18443", "--cert", str(cert), "--key", str(key),
                           "--evidence-store", "s3://nope", "--audit", str(tmp_path / "a.jsonl")], cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode != 0
    assert "unsupported evidence store scheme 's3'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
