"""``/metrics`` with ``mlgate serve --workers N``: whichever worker answers the scrape, the counts
are those of every worker (prometheus_client's multiprocess mode, set up by the parent)."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import EXAMPLES, REPO
from prometheus_client.parser import text_string_to_metric_families
from test_gatekeeper_support import body, write_certs


def _sample_sum(text: str, family: str, sample: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == family for s in f.samples if s.name == sample)


def _delete(uid: str) -> dict:
    doc = body("deployment-create-v1")
    doc["request"].update(uid=uid, operation="DELETE", oldObject=doc["request"]["object"], object=None)
    return doc


def _per_process_requests(metrics_dir) -> dict[str, float]:
    """Requests counted in each worker's own file (pid -> count)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    out = {}
    for path in sorted(metrics_dir.glob("counter_*.db")):
        families = MultiProcessCollector.merge([str(path)], accumulate=True)
        out[path.stem.split("_", 1)[1]] = sum(s.value for f in families if f.name == "mlgate_admission_requests"
                                              for s in f.samples if s.name == "mlgate_admission_requests_total")
    return out


@pytest.fixture
def served(tmp_path):
    """`mlgate serve --workers 2` as an operator runs it, with its temporary directory under tmp_path."""
    ca, cert, key, _ = write_certs(tmp_path)
    (tmp_path / "tmp").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp"), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "stale")}
    proc = subprocess.Popen([sys.executable, "-m", "mlgate", "serve", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert),
                             "--key", str(key), "--evidence-store", f"file://{EXAMPLES}", "--audit", f"file://{tmp_path / 'audit.jsonl'}",
                             "--log-level", "warning", "--workers", "2"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ctx = ssl.create_default_context(cafile=str(ca))
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with httpx.Client(base_url=url, verify=ctx, timeout=5) as c:
                if c.get("/readyz").status_code == 200:
                    break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the webhook did not start"
        time.sleep(0.1)
    yield proc, url, ctx, tmp_path
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_metrics_add_up_every_worker(served):
    proc, url, ctx, tmp_path = served
    (metrics_dir,) = list((tmp_path / "tmp").glob("mlgate-metrics-*"))  # a fresh directory, not the inherited one
    assert not (tmp_path / "stale").exists()

    def send(i: int) -> None:
        # A new connection each time, so the kernel hands requests to both workers.
        with httpx.Client(base_url=url, verify=ctx, timeout=10) as c:
            r = c.post("/v1/admit/production?timeout=5s", content=json.dumps(_delete(f"uid-{i}")).encode(),
                       headers={"Content-Type": "application/json"})
            assert r.status_code == 200 and r.json()["response"]["allowed"] is True

    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        while True:
            list(pool.map(send, range(sent, sent + 16)))
            sent += 16
            per_process = _per_process_requests(metrics_dir)
            if len([n for n in per_process.values() if n > 0]) >= 2 or sent >= 400:
                break
    assert len(per_process) == 2 and all(n > 0 for n in per_process.values()), per_process  # both workers answered some
    assert sum(per_process.values()) == sent

    for _ in range(10):  # each scrape on a new connection: any worker may answer it
        with httpx.Client(base_url=url, verify=ctx, timeout=5) as c:
            text = c.get("/metrics").text
        assert _sample_sum(text, "mlgate_admission_requests", "mlgate_admission_requests_total") == sent
        assert _sample_sum(text, "mlgate_admission_duration_seconds", "mlgate_admission_duration_seconds_count") == sent

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert not metrics_dir.exists()  # removed at shutdown
    assert sum(1 for _ in (tmp_path / "audit.jsonl").open()) == sent


def test_one_worker_keeps_its_own_registry(tmp_path, monkeypatch):
    """Without --workers, no multiprocess directory: the app's registry holds the metrics."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    from mlgate.gatekeeper.app import Metrics

    m = Metrics()
    assert m.multiprocess_dir is None
    m.requests.labels("production", "Deployment", "allow", "admitted").inc()
    text = m.render()[0].decode()
    assert _sample_sum(text, "mlgate_admission_requests", "mlgate_admission_requests_total") == 1
