"""An HTTP server that answers like OPA's REST data API, evaluating with real OPA, for tests and benchmarks.

No OPA server binary can be installed on the machines that run mlgate's tests, so the remote
engine is tested against this server: OPA itself (v1.20, in-process from the
``opa-golib-python-bindings`` wheel, :mod:`mlgate.policy.engine.opa_inprocess`) evaluates every
request, and this module is only its HTTP front. It follows OPA's documented REST API (docs/content/rest-api.md,
"Get a Document (with Input)", "Errors", "Authentication"), exactly where mlgate depends on it:

- ``POST /v1/data/{path}`` with a JSON body ``{"input": ...}``; the path's ``/`` become ``.``
  (``/v1/data/mlgate/decision`` is ``data.mlgate.decision``);
- 200 ``{"result": value}`` when the document is defined, 200 ``{}`` (no ``result`` key) when it
  is undefined; ``decision_id`` in both when decision logging is on (a UUID per decision);
- ``?provenance=true`` adds ``provenance`` with ``version`` and, when serving a bundle (by
  default the policy's own, as ``mlgate policy bundle`` builds it), ``bundles: {name: {"revision": ...}}``;
- errors are ``{"code": ..., "message": ...}``: 400 ``invalid_parameter`` for a body that is not
  a JSON object, 401 ``unauthorized`` when a bearer token is configured and not presented,
  404 ``resource_not_found`` for an unknown endpoint, 500 ``internal_error`` for an evaluation
  error (OPA's strict-builtin-errors answer);
- HTTP/1.1 keep-alive, so a client's connection pool is exercised; optional TLS and mTLS.

Policy evaluation is done on one dedicated thread by real OPA (``engine="opa"``, the default; a
missing wheel skips the test outside CI and fails it under ``CI``), or by regorus where a test or
benchmark asks for it (``engine="regorus"``: a regorus engine cannot move between threads).
Provenance reports the evaluating engine's version. ``fault`` injects misbehaviour a real network or server can show: ``slow`` (answer
after ``delay_s``), ``drip`` (send the status line, then a header byte at a time), ``not-json``,
``json-array``, ``html-500``, ``redirect``.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OPA_VERSION = "1.4.2"  # what the server reports in provenance when regorus evaluates


class FakeOpa:
    def __init__(self, policy: Any, *, include_tests: bool = False, token: str | None = None, decision_logging: bool = True,
                 bundle_revision: str | None = None, tls: ssl.SSLContext | None = None, engine: str = "opa", serve_bundle: bool = True):
        from mlgate.policy.engine.regorus_engine import RegorusEngine

        self.token = token
        self.decision_logging = decision_logging
        # As if serving `mlgate policy bundle` of ``policy`` (its .manifest revision) unless told
        # another revision; serve_bundle=False: loose policy files, so provenance names no bundle.
        self.bundle_revision = (bundle_revision or getattr(policy, "bundle_revision", None)) if serve_bundle else None
        self.fault: str | None = None
        self.delay_s = 0.0
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fake-opa-eval")
        if engine == "opa":
            from opa_reference import require_opa

            require_opa()
            from mlgate.policy.engine.opa_inprocess import OpaInProcessEngine

            self._engine = self._worker.submit(lambda: OpaInProcessEngine(policy, include_tests=include_tests)).result()
        elif engine == "regorus":
            self._engine = self._worker.submit(lambda: RegorusEngine(policy, timeout_s=0, include_tests=include_tests)).result()
        else:
            raise ValueError(f"engine must be 'opa' or 'regorus', not {engine!r}")
        self.engine = engine
        self.version = self._engine.version if engine == "opa" else OPA_VERSION
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # OPA (Go's net/http) sets TCP_NODELAY on every connection; without it the
                # header and body writes meet delayed ACKs and each answer waits ~40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                fake.connections += 1

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._send(self, 405, {"code": "method_not_allowed", "message": "use POST for documents with input"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpa:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

        def drop() -> None:  # a regorus engine must be dropped on the thread that made it
            self._engine = None

        self._worker.submit(drop).result()
        self._worker.shutdown(wait=False)

    # --- OPA's behaviour ---------------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, doc: Any, *, raw: bytes | None = None, ctype: str = "application/json") -> None:
        body = raw if raw is not None else json.dumps(doc).encode("utf-8")
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        params = parse_qs(parts.query)
        self.requests.append({"path": parts.path, "params": params, "headers": dict(h.headers), "body": raw})
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, {"code": "unauthorized", "message": "missing or invalid bearer token"})
        if not parts.path.startswith("/v1/data/"):
            return self._send(h, 404, {"code": "resource_not_found", "message": f"{parts.path} not found"})
        if self.fault == "slow":
            time.sleep(self.delay_s)
        elif self.fault == "drip":
            h.wfile.write(b"HTTP/1.1 200 OK\r\n")
            h.wfile.flush()
            for byte in b"Content-Type: application/json\r\n" * 100:
                time.sleep(self.delay_s)
                try:
                    h.wfile.write(bytes([byte]))
                    h.wfile.flush()
                except OSError:
                    return
            return
        elif self.fault == "not-json":
            return self._send(h, 200, None, raw=b"<html>proxy error</html>", ctype="text/html")
        elif self.fault == "json-array":
            return self._send(h, 200, [{"result": {"allow": True}}])
        elif self.fault == "html-500":
            return self._send(h, 500, None, raw=b"<html>upstream down</html>", ctype="text/html")
        elif self.fault == "redirect":
            h.send_response(302)
            h.send_header("Location", "http://127.0.0.1:1/v1/data/mlgate/decision")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            return self._send(h, 400, {"code": "invalid_parameter", "message": f"body contains malformed input document: {exc}"})
        if not isinstance(body, dict):
            return self._send(h, 400, {"code": "invalid_parameter", "message": "body must be an object"})
        query = "data." + ".".join(p for p in parts.path[len("/v1/data/"):].split("/") if p)
        out: dict[str, Any] = {}
        if self.decision_logging:
            out["decision_id"] = str(uuid.uuid4())
        if params.get("provenance") == ["true"]:
            out["provenance"] = {"version": self.version, "build_commit": self.engine, "build_timestamp": "", "build_hostname": ""}
            if self.bundle_revision is not None:
                out["provenance"]["bundles"] = {"mlgate": {"revision": self.bundle_revision}}
        from mlgate.errors import EngineError, UndefinedDecision

        def evaluate() -> Any:
            if "input" in body:
                return self._engine.eval_json(query, body["input"])
            return self._engine.eval_json(query, None if self.engine == "opa" else {})  # OPA: no input at all

        try:
            out["result"] = self._worker.submit(evaluate).result()
        except UndefinedDecision:
            pass  # OPA: 200 and no `result` key
        except EngineError as exc:
            return self._send(h, 500, {"code": "internal_error", "message": exc.message, **({"decision_id": out["decision_id"]} if "decision_id" in out else {})})
        return self._send(h, 200, out)
