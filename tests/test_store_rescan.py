"""A ``file://`` store rescans off the request path, rate-limited (issue 15 part 5).

Before: every lookup of an unknown reference (once ``rescan_after_s`` had passed since the last
scan) walked the whole store and re-hashed every model on the request's own thread, and several
such requests did it several times at once; with the webhook's gate threads busy scanning,
admissions of known releases queued behind them and missed their deadlines. Now an unknown
reference is answered "not found" at once from the index as it is, and schedules one background
rescan (at most one per ``rescan_after_s``), which re-hashes only releases that changed.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES

from mlgate.store import FileStore, ModelRef, StoreError

N_RELEASES = 80


def make_release(src: Path, dst: Path, name: str, version: str) -> None:
    """A copy of ``src`` published as ``name@version`` (datasets and evaluation left out: the
    index needs only the manifest, the evidence it names and the model)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("data", "evaluation"))
    manifest = dst / "mlgate.yaml"
    text = manifest.read_text()
    text = re.sub(r"(?m)^  name: .*$", f"  name: {name}", text, count=1)
    text = re.sub(r'(?m)^  version: .*$', f'  version: "{version}"', text, count=1)
    text = text.replace("s3://models.hospital.example/readmission-risk/1.4.0/", f"s3://models.hospital.example/{name}/{version}/")
    manifest.write_text(text)
    # Each model differs, so each release has its own digest (and the cold scan hashes them all).
    (dst / "model" / "model.pkl").write_bytes((dst / "model" / "model.pkl").read_bytes() + name.encode())


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    shutil.copytree(EXAMPLES / "readmission-risk", root / "readmission-risk")
    for i in range(N_RELEASES):
        make_release(EXAMPLES / "readmission-risk", root / f"m{i:03d}", f"model-{i:03d}", "1.0.0")
    return root


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unknown_reference_answers_at_once_and_schedules_one_rescan(many):
    clock = Clock()
    store = FileStore(many, rescan_after_s=10, monotonic=clock)
    started = time.perf_counter()
    store.scan()
    cold = time.perf_counter() - started
    assert store.scans == 1 and len(store.index) == N_RELEASES + 1
    clock.now += 11  # the last scan is older than rescan_after_s: a miss may schedule one

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def unknown(i: int) -> None:
        t0 = time.perf_counter()
        try:
            store.lookup(ModelRef("release", f"nosuch-{i}@1.0", "t"))
        except StoreError as exc:
            with lock:
                errors.append(exc.message)
        with lock:
            latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=unknown, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(errors) == 16 and all("no release 'nosuch-" in e and "background rescan" in e for e in errors), errors[:2]
    # Each answer came from the index in memory, far faster than the one full scan it would have
    # cost before (and 16 of them at once, which is what happened before).
    assert max(latencies) < max(0.05, cold / 4), (max(latencies), cold)
    store.wait_for_rescan(60)
    assert store.scans == 2  # sixteen misses, one rescan
    # Within rescan_after_s of that rescan, no other starts, however many misses come.
    for i in range(5):
        with pytest.raises(StoreError):
            store.lookup(ModelRef("release", f"again-{i}@1.0", "t"))
    store.wait_for_rescan(60)
    assert store.scans == 2
    clock.now += 11
    with pytest.raises(StoreError):
        store.lookup(ModelRef("release", "later@1.0", "t"))
    store.wait_for_rescan(60)
    assert store.scans == 3


def test_a_release_published_after_the_scan_is_found_by_the_background_rescan(tmp_path):
    clock = Clock()
    make_release(EXAMPLES / "readmission-risk", tmp_path / "a", "model-a", "1.0.0")
    store = FileStore(tmp_path, rescan_after_s=10, monotonic=clock)
    store.scan()
    make_release(EXAMPLES / "readmission-risk", tmp_path / "b", "model-b", "1.0.0")
    clock.now += 11
    ref = ModelRef("release", "model-b@1.0.0", "t")
    with pytest.raises(StoreError, match="no release 'model-b@1.0.0'"):
        store.lookup(ref)  # not in the index yet: denied at once, not after a walk
    store.wait_for_rescan(60)
    assert store.lookup(ref).root == tmp_path / "b"


def test_rescan_hashes_only_what_changed(many, monkeypatch):
    """A background rescan of an unchanged store re-hashes no model: it costs stat calls."""
    from mlgate.evidence import model_digest

    store = FileStore(many)
    store.scan()
    calls = []
    real = model_digest.compute_model_digest
    monkeypatch.setattr(model_digest, "compute_model_digest", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    index = store.scan()
    assert calls == [] and len(index) == N_RELEASES + 1
    model = many / "m007" / "model" / "model.pkl"
    original = model.read_bytes()
    try:
        model.write_bytes(original + b"changed")
        index = store.scan()
        assert len(calls) == 1 and calls[0][0].parent == many / "m007"
        (entry,) = index.by_release["model-007@1.0.0"]
        assert entry.model_digest == model_digest.compute_model_digest(many / "m007" / "model").root
    finally:
        model.write_bytes(original)


def test_webhook_admissions_keep_their_deadline_while_unknown_models_are_asked_for(many, tmp_path):
    """Through `mlgate serve` (one gate thread, the test default): a burst of admissions naming
    unknown models, then one naming a known release with a 2 s deadline. Before, each unknown
    reference rescanned the whole store on the gate thread, and the known release's admission
    got the deadline answer; now it is judged in time, and each unknown one is denied at once."""
    from mlgate.gatekeeper.config import Settings
    from test_gatekeeper_support import RunningWebhook, admit, deployment

    (tmp_path / "hook").mkdir()
    settings = Settings(evidence_store=f"file://{many}", audit=str(tmp_path / "audit.jsonl"), trust_policy=EXAMPLES / "trust.yaml")
    hook = RunningWebhook(tmp_path / "hook", settings)
    try:
        hook.gatekeeper.store.rescan_after_s = 0  # every miss may rescan: the worst case for the old code
        with hook.client() as client:  # warm up (first evaluation, first reader imports)
            warm = admit(client, deployment("model-001@1.0.0")).json()["response"]
            assert warm["auditAnnotations"]["releases"] == "model-001@1.0.0", warm
        answers: dict[str, dict] = {}

        def send(key: str, release: str, timeout: str) -> None:
            with hook.client() as client:
                t0 = time.perf_counter()
                resp = admit(client, deployment(release), timeout=timeout).json()["response"]
                answers[key] = {**resp, "elapsed": time.perf_counter() - t0}

        burst = [threading.Thread(target=send, args=(f"unknown-{i}", f"nosuch-{i}@1.0", "10s")) for i in range(6)]
        for t in burst:
            t.start()
            time.sleep(0.02)
        known = threading.Thread(target=send, args=("known", "model-003@1.0.0", "2s"))
        known.start()
        for t in [*burst, known]:
            t.join(60)
    finally:
        hook.stop()
    judged = answers["known"]
    assert "no decision within the request's deadline" not in judged.get("status", {}).get("message", ""), judged
    assert judged["auditAnnotations"]["releases"] == "model-003@1.0.0", judged
    assert judged["elapsed"] < 2.0, judged
    for i in range(6):
        denied = answers[f"unknown-{i}"]
        assert denied["allowed"] is False and f"nosuch-{i}@1.0" in denied["status"]["message"], denied
