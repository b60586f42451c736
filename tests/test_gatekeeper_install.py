"""`pip install '.[webhook]'` alone (as the README and deploy/Containerfile do) is enough to run the
webhook: a fresh virtual environment, then `mlgate serve` with a file:// and an https:// evidence
store answers /readyz and judges a review. (Before, an https:// store crashed at start-up:
mlgate/store/https.py imports httpx, which only the test extra installed.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import EXAMPLES, REPO
from test_gatekeeper_support import deployment, write_certs
from test_store_https import published  # noqa: F401 - the fixture: the examples behind a local HTTPS server


@pytest.fixture(scope="module")
def webhook_venv(tmp_path_factory):
    """A fresh venv with the package installed from a copy of the tree (as the Containerfile copies it)."""
    tmp = tmp_path_factory.mktemp("venv")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("mlgate", "cli", "gatekeeper", "policies"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{src}[webhook]"],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_and_admit(venv, tmp_path, store_args: list[str]) -> dict:
    (tmp_path / "serving").mkdir(parents=True)
    ca, cert, key, _ = write_certs(tmp_path / "serving")
    port = _port()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([str(venv / "bin" / "mlgate"), "serve", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert), "--key", str(key),
                             "--audit", f"file://{tmp_path / 'audit.jsonl'}", "--trust", str(EXAMPLES / "trust.yaml"), "--log-format", "json",
                             *store_args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"mlgate serve exited {proc.returncode}: {proc.communicate()[1][-3000:]}")
            assert time.monotonic() < deadline, "the webhook did not become ready"
            time.sleep(0.2)
        doc = deployment("readmission-risk@1.4.0")
        req = urllib.request.Request(f"https://127.0.0.1:{port}/v1/admit/production?timeout=10s", data=json.dumps(doc).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
            return json.loads(r.read())["response"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err[-3000:]


def test_the_webhook_extra_alone_runs_serve(webhook_venv, tmp_path, published):  # noqa: F811
    python = webhook_venv / "bin" / "python"
    # Nothing from the test extra leaked in: the venv is not this interpreter's.
    assert subprocess.run([str(python), "-c", "import sys; assert sys.prefix != sys.base_prefix; import pytest"],
                          capture_output=True).returncode != 0
    resp = _serve_and_admit(webhook_venv, tmp_path / "file", ["--evidence-store", f"file://{EXAMPLES}"])
    assert resp["allowed"] is True, resp
    server, _ = published
    resp = _serve_and_admit(webhook_venv, tmp_path / "https", ["--evidence-store", server.url, "--evidence-store-ca", str(server.ca),
                                                               "--evidence-cache-dir", str(tmp_path / "cache")])
    assert resp["allowed"] is True, resp
    # `mlgate webhook manifests` needs nothing more either.
    out = subprocess.run([str(webhook_venv / "bin" / "mlgate"), "webhook", "manifests", "--image", "x", "--cert-manager", "--trust-policy", str(EXAMPLES / "trust.yaml")],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": f"{webhook_venv / 'bin'}:/usr/bin:/bin"})
    assert out.returncode == 0 and "kind: ValidatingWebhookConfiguration" in out.stdout, out.stderr
