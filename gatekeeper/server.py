"""uvicorn over TLS, with the serving certificate reloaded when the mounted files change.

Kubernetes rotates a Secret mounted as a volume by swapping a symlink; cert-manager renews
before expiry. :class:`CertReloader` polls the two files' bytes, checks that the new pair
loads (a half-written rotation keeps the old pair), then loads it into the *same* SSLContext
the listener uses: new handshakes get the new certificate, established connections keep
theirs and are not dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import uvicorn

log = logging.getLogger("mlgate.gatekeeper")


class CertReloader:
    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path):
        self.context, self.cert, self.key = context, Path(cert), Path(key)
        self.fingerprint = self._read_fingerprint()
        self.reloads = 0
        self.last_error: str | None = None

    def _read_fingerprint(self) -> str | None:
        try:
            return hashlib.sha256(self.cert.read_bytes() + b"\0" + self.key.read_bytes()).hexdigest()
        except OSError:
            return None

    def check(self) -> bool:
        """Reload when the files changed and the new pair is valid; True when reloaded."""
        fingerprint = self._read_fingerprint()
        if fingerprint is None or fingerprint == self.fingerprint:
            return False
        try:
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            probe.load_cert_chain(self.cert, self.key)
            self.context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            # Mid-rotation (certificate written, key not yet): keep serving the old pair, retry next tick.
            self.last_error = f"{self.cert}: new certificate not loaded yet: {exc}"
            log.warning("%s", self.last_error)
            return False
        self.fingerprint, self.last_error = fingerprint, None
        self.reloads += 1
        log.info("mlgate: reloaded the serving certificate from %s", self.cert)
        return True


class WebhookServer(uvicorn.Server):
    """uvicorn's server plus a task that keeps the certificate fresh."""

    def __init__(self, config: uvicorn.Config, *, cert: Path, key: Path, reload_s: float):
        super().__init__(config)
        self.cert, self.key, self.reload_s = cert, key, reload_s
        self.reloader: CertReloader | None = None
        self._task: asyncio.Task | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        ssl_context = self.config.ssl
        assert ssl_context is not None, "the webhook only serves TLS"
        ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.reloader = CertReloader(ssl_context, self.cert, self.key)
        await super().startup(sockets=sockets)
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.reload_s)
            try:
                self.reloader.check()
            except Exception:
                log.exception("certificate reload failed")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._task is not None:
            self._task.cancel()
        await super().shutdown(sockets=sockets)


def build_server(app: Any, *, host: str, port: int, cert: Path, key: Path, reload_s: float = 10.0,
                 log_level: str = "info", access_log: bool = False, log_format: str = "text") -> WebhookServer:
    from mlgate.gatekeeper.logs import log_config

    config = uvicorn.Config(
        app, host=host, port=port, ssl_certfile=str(cert), ssl_keyfile=str(key), lifespan="on",
        log_level=log_level, log_config=log_config(log_format, log_level), access_log=access_log, http="auto", loop="auto", proxy_headers=False,
        server_header=False, date_header=False, timeout_keep_alive=30, timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=64 * 1024,
    )
    config.load()
    return WebhookServer(config, cert=Path(cert), key=Path(key), reload_s=reload_s)
