"""A real OCI registry for tests: the CNCF Distribution registry (Debian's ``docker-registry``
package, ``/usr/bin/docker-registry serve CONFIG``) on a free 127.0.0.1 port, plain HTTP, no
auth, storage in a temporary directory (so a test can tamper with a stored blob)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def available() -> bool:
    return os.access(BINARY, os.X_OK)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalRegistry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    process: subprocess.Popen

    def blob_path(self, digest: str) -> Path:
        """Where the registry's filesystem driver keeps a blob's bytes."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(workdir: Path) -> LocalRegistry:
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n",
        encoding="utf-8",
    )
    log = open(workdir / "registry.log", "wb")
    process = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    registry = LocalRegistry(f"127.0.0.1:{port}", storage, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(workdir / 'registry.log').read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=1) as r:
                if r.status == 200:
                    return registry
        except OSError:
            time.sleep(0.1)
    registry.stop()
    raise RuntimeError("docker-registry did not answer on /v2/ within 20 s")
