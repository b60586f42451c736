"""Issue 15, part 4: what the cluster did is what the trail says. Every admission record names the
object; a decision finished after the request's deadline, or after the apiserver closed the
connection, is recorded ``late`` (never an allow the cluster acted on); the deadline path's answers
and requests still queued at their deadline each get a record. Over TLS to a real webhook."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from conftest import EXAMPLES
from mlgate.gatekeeper.config import Settings
from test_gatekeeper_support import RunningWebhook, admit, body, deployment, records


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("late")
    running = RunningWebhook(tmp, Settings(evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "audit.jsonl"), gate_threads=1))
    yield running
    running.stop()


class SlowStore:
    """The webhook's own file store, answering ``delay_s`` late (an overloaded volume, a slow remote)."""

    def __init__(self, inner, delay_s: float):
        self.inner, self.delay_s = inner, delay_s

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def load(self, *args, **kwargs):
        time.sleep(self.delay_s)
        return self.inner.load(*args, **kwargs)


@pytest.fixture
def slow(hook):
    gk = hook.gatekeeper
    original = gk.store

    def apply(delay_s: float) -> None:
        gk.store = SlowStore(original, delay_s)

    yield apply
    time.sleep(0.2)
    gk.store = original


def by_uid(hook, uid: str, *, count: int, timeout: float = 10.0) -> list[dict]:
    """The records about one AdmissionReview (some are written after the answer: poll)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for r in records(hook.tmp / "audit.jsonl") if (r.get("admission") or {}).get("uid") == uid]
        if len(recs) >= count or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def test_the_record_names_the_object_and_the_mode(hook):
    doc = body("kserve-create-v1")
    with hook.client() as c:
        resp = admit(c, doc).json()["response"]
    assert resp["allowed"] is True
    (rec,) = by_uid(hook, doc["request"]["uid"], count=1)
    assert rec["admission"]["object"] == {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService",
                                          "namespace": "clinical-ml", "name": "triage-acuity"}
    assert rec["admission"]["uid"] == doc["request"]["uid"] and rec["admission"]["operation"] == "CREATE"
    assert rec["admission"]["user"] == "kubernetes-admin" and rec["admission"]["mode"] == "enforce"
    assert rec["admission"]["delivery"] == "in-time" and rec["result"] == "allow"
    assert rec["admission"]["reference"] == {"field": "spec.predictor.model.storageUri", "kind": "storage_uri",
                                             "value": "s3://models.hospital.example/triage-acuity/2.1.0/"}


def test_a_decision_after_the_deadline_is_late_never_an_allow(hook, slow):
    slow(1.5)
    doc = deployment("readmission-risk@1.4.0")  # allowed in production, when judged in time
    with hook.client() as c:
        started = time.monotonic()
        r = admit(c, doc, timeout="1s")
        elapsed = time.monotonic() - started
    resp = r.json()["response"]
    assert resp["allowed"] is False and resp["status"]["code"] == 500 and "deadline" in resp["status"]["message"]
    assert elapsed < 1.0
    recs = by_uid(hook, doc["request"]["uid"], count=2)
    assert sorted(r["admission"]["delivery"] for r in recs) == ["deadline", "late"]
    answered = next(r for r in recs if r["admission"]["delivery"] == "deadline")
    assert answered["result"] == "error" and answered["admission"]["queued"] is False and "deadline" in answered["error"]
    late = next(r for r in recs if r["admission"]["delivery"] == "late")
    assert late["result"] == "late" and late["admission"]["decided"] == "allow" and late["admission"]["deny_admitted"] is False
    assert late["release"]["name"] == "readmission-risk"
    assert not [r for r in recs if r["result"] == "allow"]


def test_a_request_still_queued_at_its_deadline_is_recorded_and_never_judged(hook, slow):
    slow(1.5)
    first, second = deployment("readmission-risk@1.4.0"), deployment("triage-acuity@2.1.0")
    answers = {}

    def send(doc):
        with hook.client() as c:
            answers[doc["request"]["uid"]] = admit(c, doc, timeout="1s").json()["response"]

    threads = [threading.Thread(target=send, args=(first,))]
    threads[0].start()
    time.sleep(0.2)  # the only gate thread is busy with the first
    threads.append(threading.Thread(target=send, args=(second,)))
    threads[1].start()
    for t in threads:
        t.join()
    assert all(a["allowed"] is False and "deadline" in a["status"]["message"] for a in answers.values())
    (queued,) = by_uid(hook, second["request"]["uid"], count=1)
    assert queued["admission"]["delivery"] == "deadline" and queued["admission"]["queued"] is True
    assert "never judged" in queued["error"] and queued["release"] is None
    time.sleep(2.0)  # the first one finishes, late; the second is never judged after all
    assert len(by_uid(hook, second["request"]["uid"], count=1)) == 1
    assert sorted(r["result"] for r in by_uid(hook, first["request"]["uid"], count=2)) == ["error", "late"]


def test_a_decision_after_the_apiserver_left_is_late(hook, slow):
    slow(1.0)
    doc = deployment("readmission-risk@1.4.0")
    raw = json.dumps(doc).encode()
    with socket.create_connection(("127.0.0.1", hook.port)) as s, hook.ssl_context().wrap_socket(s, server_hostname="localhost") as tls:
        tls.sendall(b"POST /v1/admit/production?timeout=10s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        time.sleep(0.3)  # the apiserver gives up (its own timeout) and closes the connection
    recs = by_uid(hook, doc["request"]["uid"], count=2)
    assert sorted(r["admission"]["delivery"] for r in recs) == ["disconnected", "late"]
    assert next(r for r in recs if r["admission"]["delivery"] == "late")["admission"]["decided"] == "allow"
    assert not [r for r in recs if r["result"] == "allow"]


def test_the_chain_holds_every_record(hook):
    recs = records(hook.tmp / "audit.jsonl")
    assert recs and [r["sequence"] for r in recs] == list(range(1, len(recs) + 1))
    assert all(recs[i]["prev_hash"] == recs[i - 1]["hash"] for i in range(1, len(recs)))


def test_a_decision_recorded_in_time_but_answered_by_the_deadline_path_is_named_late(tmp_path):
    """The race: the gate records its decision in time, then the event loop gives up before the answer
    is handed over. The trail then holds a ``late`` record naming the decision the cluster never saw."""
    from conftest import EXAMPLES_NOW
    from mlgate.gatekeeper.review import parse_review
    from mlgate.gatekeeper.service import Delivery, Gatekeeper

    from mlgate.audit import AuditOptions, open_sink
    from mlgate.clock import FixedClock

    settings = Settings(evidence_store=f"file://{EXAMPLES}", audit=str(tmp_path / "audit.jsonl"))
    delivery = Delivery(deadline=None)

    class GiveUpAfterTheFirstRecord:
        """The real file sink; the event loop's deadline fires right after the first record is durable."""

        def __init__(self):
            self.inner = open_sink(settings.audit, AuditOptions())

        def append(self, record):
            receipt = self.inner.append(record)
            delivery.give_up("deadline")
            return receipt

    gk = Gatekeeper(settings, clock=FixedClock(EXAMPLES_NOW), sink=GiveUpAfterTheFirstRecord())
    gk.start()
    try:
        review = parse_review(deployment("readmission-risk@1.4.0"))
        outcome = gk.admit(review, "production", delivery=delivery)
    finally:
        gk.close()
    assert delivery.given_up == "deadline"  # so the event loop answers the deadline deny, not this outcome
    recs = records(tmp_path / "audit.jsonl")
    assert [r["result"] for r in recs] == ["allow", "late"]
    assert recs[0]["admission"]["delivery"] == "in-time" and outcome.decisions[0].decision_id == recs[0]["decision_id"]
    assert recs[1]["admission"]["supersedes"] == [recs[0]["decision_id"]] and recs[1]["admission"]["uid"] == review.uid
    assert "never received" in recs[1]["error"]
