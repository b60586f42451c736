"""The ASGI app (raw ASGI, no framework): read a bounded body, parse it, hand it to the gate thread.

Routes: ``POST /v1/admit/{environment}``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

Two error channels (kopf's habit): a body that is not an AdmissionReview is an HTTP 4xx with a
JSON error (the apiserver then fails the call, and ``failurePolicy: Fail`` rejects the user's
request); a failure while judging a valid review is a normal 200 AdmissionReview with
``allowed: false`` and ``status.code: 500``. Never a stack trace in a response.

The event loop never evaluates: reviews are judged on a pool of ``Settings.gate_threads`` gate
threads, each with its own :class:`Gatekeeper` and policy engine (a regorus ``Engine`` may not
move between threads), all sharing one evidence store (and facts cache) and one audit sink. The
engine holds the GIL while it evaluates, so the threads do not evaluate in parallel; what they
buy is overlap: while one thread waits for the audit fsync (the file sink's group commit then
makes one fsync for every record queued meanwhile) or for a remote store, another evaluates.
Every await carries the request's deadline (``?timeout=Ns`` from the apiserver, minus a
margin); past it the webhook answers ``allowed: false`` itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlgate.gatekeeper.config import ENVIRONMENT_NAME, Settings
from mlgate.gatekeeper.review import WebhookError, parse_review, response
from mlgate.gatekeeper.service import Gatekeeper, UnknownEnvironment

from mlgate.errors import MlgateError

log = logging.getLogger("mlgate.gatekeeper")
_ADMIT = re.compile(r"^/v1/admit/([^/]+)$")
_TIMEOUT = re.compile(r"(?:^|&)timeout=(\d{1,3})s(?:&|$)")
JSON = [(b"content-type", b"application/json")]


class Metrics:
    """The webhook's Prometheus metrics.

    One process (``--workers 1``): a registry of its own. Several (``mlgate serve --workers N``):
    the parent points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before forking, so every
    worker's counters and histograms live in files there, and ``/metrics`` on any worker adds up
    all of them (prometheus_client's multiprocess mode; the directory is the parent's to remove).
    """

    def __init__(self) -> None:
        import os

        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        # In multiprocess mode the values are in the shared files; the scrape registry reads those,
        # so the metric objects themselves are registered nowhere (else each would count twice).
        self.registry = CollectorRegistry()
        home = None if self.multiprocess_dir else self.registry
        self.requests = Counter("mlgate_admission_requests", "Admission reviews answered, by environment, object kind and decision",
                                ["environment", "kind", "decision"], registry=home)
        self.latency = Histogram("mlgate_admission_duration_seconds", "Time from the last body byte to the answer",
                                 ["environment"], registry=home,
                                 buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.cache = Counter("mlgate_evidence_cache", "Evidence cache lookups", ["result"], registry=home)
        self.errors = Counter("mlgate_admission_errors", "Requests answered with an error, by reason", ["reason"], registry=home)
        for result in ("hit", "miss"):
            self.cache.labels(result)
        if self.multiprocess_dir:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(self.registry, path=self.multiprocess_dir)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class WebhookApp:
    def __init__(self, settings: Settings, *, gatekeeper_factory: Callable[..., Gatekeeper] | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.metrics = Metrics()
        self._factory = gatekeeper_factory or (lambda on_cache: Gatekeeper(settings, on_cache=on_cache))
        self._now = monotonic
        self.gatekeeper: Gatekeeper | None = None  # the first gate thread's: readiness, environments, settings
        self.executor: ThreadPoolExecutor | None = None
        self.startup_error: str | None = None
        self._local = threading.local()  # each gate thread's own Gatekeeper (its own engine)
        self.gatekeepers: list[Gatekeeper] = []  # one per gate thread (for inspection; each is used only on its thread)

    @property
    def gate_threads(self) -> int:
        return max(1, self.settings.gate_threads or 1)

    # ------------------------------------------------------------------ lifecycle
    async def _on_every_gate_thread(self, work: Callable[[int], Any]) -> list[Any]:
        """Run ``work(i)`` once on each of the pool's threads (a barrier keeps them all busy at once)."""
        n = self.gate_threads
        barrier = threading.Barrier(n, timeout=120)
        ids = iter(range(n))
        lock = threading.Lock()

        def step() -> Any:
            with lock:
                i = next(ids)
            try:
                return work(i)
            finally:
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    pass

        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(self.executor, step) for _ in range(n)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def startup(self) -> None:
        """Build one gatekeeper (engine included) on each gate thread that will use it."""
        n = self.gate_threads
        self.executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix="mlgate-gate")
        loop = asyncio.get_running_loop()

        def build_first() -> Gatekeeper:
            gk = self._factory(on_cache=lambda result: self.metrics.cache.labels(result).inc())
            gk.start()
            self._local.gk = gk
            self.gatekeepers.append(gk)
            return gk

        def build_sibling(_: int) -> None:
            if getattr(self._local, "gk", None) is None:
                self._local.gk = first.sibling()
                self.gatekeepers.append(self._local.gk)

        try:
            # The first builds the store index and the audit sink; the others share them and build their own engine.
            first = await loop.run_in_executor(self.executor, build_first)
            self.gatekeeper = first
            await self._on_every_gate_thread(build_sibling)
        except MlgateError as exc:
            self.startup_error = exc.diagnostics()
            raise

    def _admit_here(self, review: Any, environment: str, deadline: float):
        gk = getattr(self._local, "gk", None)
        if gk is None:  # pragma: no cover - every pool thread was given one at start-up
            raise MlgateError("this gate thread has no policy engine; denied")
        return gk.admit(review, environment, deadline=deadline)

    async def shutdown(self) -> None:
        if self.executor is not None:
            sink = self.gatekeeper.sink if self.gatekeeper is not None else None

            def release(_: int) -> None:
                # Each engine is dropped on the thread that built it (regorus Engine is unsendable).
                gk = getattr(self._local, "gk", None)
                if gk is not None:
                    gk.close()
                    self._local.gk = None

            try:
                await self._on_every_gate_thread(release)
            finally:
                for close in (getattr(sink, "close", None), getattr(getattr(self.gatekeeper, "store", None), "close", None)):
                    if close is not None:
                        await asyncio.get_running_loop().run_in_executor(self.executor, close)
                self.executor.shutdown(wait=True)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except MlgateError as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"mlgate: error: {exc.diagnostics()}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ http
    async def _http(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        path, method = scope["path"], scope["method"]
        match = _ADMIT.match(path)
        if match:
            if method != "POST":
                return await _send_json(send, 405, {"error": "use POST for admission reviews"})
            return await self._admit(match.group(1), scope, receive, send)
        if path == "/healthz" and method in ("GET", "HEAD"):
            return await _send_json(send, 200, {"status": "ok"})
        if path == "/readyz" and method in ("GET", "HEAD"):
            problems = self.gatekeeper.ready() if self.gatekeeper else [self.startup_error or "starting"]
            return await _send_json(send, 503 if problems else 200, {"status": "not ready" if problems else "ready", "problems": problems})
        if path == "/metrics" and method == "GET":
            body, ctype = self.metrics.render()
            return await _send(send, 200, body, [(b"content-type", ctype.encode())])
        return await _send_json(send, 404, {"error": f"no route for {method} {path[:100]}"})

    async def _admit(self, environment: str, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        env_label = environment if self.gatekeeper and environment in self.gatekeeper.environments else "unknown"
        if not ENVIRONMENT_NAME.match(environment):
            self.metrics.errors.labels("not_found").inc()
            return await _send_json(send, 404, {"error": "unknown environment in the path"})
        try:
            body = await self._read_body(scope, receive)
            started = self._now()
            try:
                doc = json.loads(body.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise WebhookError(f"body is not UTF-8 (invalid byte at offset {exc.start})") from None
            except RecursionError:
                raise WebhookError("body is nested too deeply") from None
            except ValueError as exc:
                raise WebhookError(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                                   if isinstance(exc, json.JSONDecodeError) else "body is not JSON") from None
            review = parse_review(doc)
        except WebhookError as exc:
            self.metrics.errors.labels("too_large" if exc.status == 413 else "bad_request").inc()
            return await _send_json(send, exc.status, {"error": exc.message})

        deadline = started + self._timeout(scope.get("query_string", b"")) - self.settings.deadline_margin_s
        if self.gatekeeper is None or self.executor is None:
            self.metrics.errors.labels("not_ready").inc()
            return await _send_json(send, 200, response(review.api_version, review.uid, allowed=False, code=500,
                                                       message="mlgate: the webhook is not ready (policy or store not loaded)"))
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._admit_here, review, environment, deadline)
        try:
            outcome = await asyncio.wait_for(future, timeout=max(deadline - self._now(), 0.001))
        except TimeoutError:
            self.metrics.errors.labels("deadline").inc()
            answer = response(review.api_version, review.uid, allowed=False, code=500,
                              message=f"mlgate: no decision within the request's deadline ({self._timeout(scope.get('query_string', b'')):g} s); denied")
            return await self._finish(send, env_label, review.kind["kind"], "error", answer, started)
        except UnknownEnvironment as exc:
            self.metrics.errors.labels("not_found").inc()
            return await _send_json(send, 404, {"error": exc.diagnostics()})
        except MlgateError as exc:
            self.metrics.errors.labels("internal").inc()
            answer = response(review.api_version, review.uid, allowed=False, code=500, message=f"mlgate: {exc.diagnostics()}")
            return await self._finish(send, env_label, review.kind["kind"], "error", answer, started)
        except Exception:
            log.exception("internal error while judging admission review uid=%s", review.uid)
            self.metrics.errors.labels("internal").inc()
            answer = response(review.api_version, review.uid, allowed=False, code=500, message="mlgate: internal error (see the webhook log); denied")
            return await self._finish(send, env_label, review.kind["kind"], "error", answer, started)
        if outcome.result == "error":
            self.metrics.errors.labels("decision_error").inc()
        return await self._finish(send, env_label, review.kind["kind"], outcome.result, outcome.body, started)

    async def _finish(self, send: Callable, env: str, kind: str, result: str, body: dict[str, Any], started: float) -> None:
        self.metrics.requests.labels(env, kind if kind in _KINDS else "other", result).inc()
        self.metrics.latency.labels(env).observe(self._now() - started)
        await _send_json(send, 200, body)

    def _timeout(self, query: bytes) -> float:
        match = _TIMEOUT.search(query.decode("latin-1"))
        if match:
            return float(min(max(int(match.group(1)), 1), 30))
        return self.settings.default_timeout_s

    async def _read_body(self, scope: dict[str, Any], receive: Callable) -> bytes:
        limit = self.settings.max_body_bytes
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                if int(length) > limit:
                    raise WebhookError(f"body of {int(length)} bytes is over the {limit}-byte limit", status=413)
            except ValueError:
                raise WebhookError("invalid Content-Length") from None
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in (b"identity", b"gzip", b""):
            raise WebhookError(f"unsupported Content-Encoding {encoding.decode('latin-1')[:40]!r} (identity or gzip)", status=415)
        ctype = headers.get(b"content-type", b"application/json").lower()
        if b"json" not in ctype:
            raise WebhookError(f"Content-Type must be application/json, got {ctype.decode('latin-1')[:60]!r}", status=415)
        chunks, size = [], 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise WebhookError("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise WebhookError(f"body is over the {limit}-byte limit", status=413)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if encoding == b"gzip":
            body = _gunzip(body, limit)
        return body


_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob", "Pod",
                    "InferenceService", "SeldonDeployment", "Scale"})


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes: a gzip bomb stops at the limit, not at memory exhaustion."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise WebhookError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise WebhookError(f"decompressed body is over the {limit}-byte limit", status=413)
    if not inflater.eof:
        raise WebhookError("gzip body is truncated")
    return out


async def _send(send: Callable, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Callable, status: int, doc: dict[str, Any]) -> None:
    await _send(send, status, json.dumps(doc, separators=(",", ":")).encode("utf-8"), JSON)
