"""A real uvicorn webhook on 127.0.0.1 over TLS, with certificates generated here (kopf's habit)."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import logging
import socket
import ssl
import threading
import time
from pathlib import Path

from conftest import ASSETS, EXAMPLES_NOW

ADMISSION = ASSETS / "admission"
_uids = itertools.count(1)


def body(name: str, **request_changes) -> dict:
    doc = json.loads((ADMISSION / f"{name}.json").read_text())
    doc["request"]["uid"] = f"00000000-0000-4000-8000-{next(_uids):012d}"
    doc["request"].update(request_changes)
    return doc


def deployment(release: str | None = None, *, digest: str | None = None, **request_changes) -> dict:
    doc = body("deployment-create-v1", **request_changes)
    annotations = doc["request"]["object"]["spec"]["template"]["metadata"]["annotations"]
    annotations.pop("mlgate.dev/release", None)
    if release:
        annotations["mlgate.dev/release"] = release
    if digest:
        annotations["mlgate.dev/model-digest"] = digest
    return doc


def write_certs(directory: Path, *, now: dt.datetime | None = None, ca=None) -> tuple[Path, Path, Path, object]:
    from cryptography.hazmat.primitives import serialization
    from mlgate.gatekeeper.certs import _pem_key, issue, make_ca

    now = now or dt.datetime.now(dt.UTC)
    if ca is None:
        ca = make_ca("mlgate test CA", now)
    ca_cert, ca_key = ca
    cert, key = issue(ca_cert, ca_key, ["localhost", "mlgate.mlgate.svc"], now, ips=["127.0.0.1"])
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    # Write the key first and the certificate last, as a rotation does: the reloader waits for a matching pair.
    tmp_key, tmp_cert = directory / ".tls.key.new", directory / ".tls.crt.new"
    tmp_key.write_bytes(_pem_key(key))
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp_key.replace(paths[2])
    tmp_cert.replace(paths[1])
    return (*paths, ca)


class RunningWebhook:
    def __init__(self, tmp: Path, settings, *, reload_s: float = 0.1, clock=None, ids=None):
        from mlgate.gatekeeper.app import WebhookApp
        from mlgate.gatekeeper.server import build_server
        from mlgate.gatekeeper.service import Gatekeeper

        from mlgate.clock import FixedClock

        self.tmp = tmp
        self.ca_path, self.cert, self.key, self.ca = write_certs(tmp)
        clock = clock or FixedClock(EXAMPLES_NOW)
        self.app = WebhookApp(settings, gatekeeper_factory=lambda on_cache: Gatekeeper(settings, clock=clock, ids=ids, on_cache=on_cache))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        # build_server applies the webhook's logging config (mlgate's loggers to stderr, not propagated):
        # put back what the other tests of this process see once it stops (caplog listens on the root logger)
        self._logging = {name: (lg.handlers[:], lg.level, lg.propagate) for name in _CONFIGURED_LOGGERS
                         for lg in [logging.getLogger(name)]}
        self.server = build_server(self.app, host="127.0.0.1", port=self.port, cert=self.cert, key=self.key, reload_s=reload_s, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("webhook did not start")
            time.sleep(0.02)
        self.url = f"https://127.0.0.1:{self.port}"

    @property
    def gatekeeper(self):
        return self.app.gatekeeper

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        return ctx

    def client(self, **kw):
        import httpx

        return httpx.Client(base_url=self.url, verify=self.ssl_context(), timeout=kw.pop("timeout", 30), **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        for name, (handlers, level, propagate) in self._logging.items():
            lg = logging.getLogger(name)
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


#: the loggers gatekeeper/logs.py log_config configures
_CONFIGURED_LOGGERS = ("mlgate", "uvicorn", "uvicorn.error", "uvicorn.access")


def admit(client, doc, env: str = "production", *, timeout: str = "10s"):
    r = client.post(f"/v1/admit/{env}?timeout={timeout}", content=json.dumps(doc).encode(),
                    headers={"Content-Type": "application/json", "User-Agent": "kube-apiserver-admission", "Accept-Encoding": "gzip"})
    return r


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def deepcopy(doc):
    return copy.deepcopy(doc)
