"""The ASGI app (raw ASGI, no framework): read a bounded body, parse it, hand it to the gate thread.

Routes: ``POST /v1/admit/{environment}``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

Two error channels (kopf's habit), both shaped as Kubernetes expects: whatever can be answered
as an AdmissionReview is (a deny with a ``Status`` message and an audit record: a review naming
an unknown environment in its path, a review with a readable ``uid`` but a malformed field or a
body the JSON parser refuses (the ``uid`` is then read from the raw bytes by
:func:`~mlgate.gatekeeper.review.peek_raw_uid_and_version`), a failure while judging); anything
else (a body with no ``uid`` to be found, a wrong method
or route, a body over the limit) is an HTTP 4xx carrying a ``Status`` object (``kind: Status,
apiVersion: v1, status: Failure, message, reason, code``), which the apiserver shows the user.
Never a stack trace in a response. One log line per admission (``mlgate.admission``).

The event loop never evaluates: reviews are judged on a pool of ``Settings.gate_threads`` gate
threads, each with its own :class:`Gatekeeper` and policy engine (a regorus ``Engine`` may not
move between threads), all sharing one evidence store (and facts cache) and one audit sink. The
engine holds the GIL while it evaluates, so the threads do not evaluate in parallel; what they
buy is overlap: while one thread waits for the audit fsync (the file sink's group commit then
makes one fsync for every record queued meanwhile) or for a remote store, another evaluates.
Every await carries the request's deadline (``?timeout=Ns`` from the apiserver, minus a
margin); past it the webhook answers ``allowed: false`` itself.

An ``oci://`` policy (:mod:`mlgate.gatekeeper.policy_source`) is pulled and verified on a policy
thread of its own, at start-up and then every refresh interval for a tag; a new bundle is built
on every gate thread and switched in one round (no review is judged while the threads switch),
after a ``policy-change`` audit record. Until a policy is loaded, every admission is a recorded
deny (``MLG-ADM-005``) and ``/readyz`` answers 503 naming why; a refresh that fails keeps the last
verified bundle, and ``/readyz`` (200) and ``/metrics`` say it is stale.
"""

from __future__ import annotations

import asyncio
import functools
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
from mlgate.gatekeeper.logs import ADMISSION_LOGGER, admission_fields
from mlgate.gatekeeper.review import (
    MAX_UID_CHARS,
    Review,
    WebhookError,
    parse_review,
    peek_raw_uid_and_version,
    peek_uid_and_version,
    response,
)
from mlgate.gatekeeper.policy_source import OciPolicySource, change_record
from mlgate.gatekeeper.service import POLICY_NOT_LOADED, Delivery, Gatekeeper, Outcome, RequestSink, admission_facts, deny_message, release_policy

from mlgate.errors import MlgateError

log = logging.getLogger("mlgate.gatekeeper")
admission_log = logging.getLogger(ADMISSION_LOGGER)
#: HTTP status -> the reason a Kubernetes ``Status`` gives it (metav1.StatusReason).
REASONS = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType",
           500: "InternalError", 503: "ServiceUnavailable"}
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

        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        # In multiprocess mode the values are in the shared files; the scrape registry reads those,
        # so the metric objects themselves are registered nowhere (else each would count twice).
        self.registry = CollectorRegistry()
        home = None if self.multiprocess_dir else self.registry
        # ``verdict`` is the gate's (allow, deny, error, exempt); ``admission`` what the apiserver was told (admitted, refused):
        # a deny in warn or audit mode is admitted, so it is not counted as a refusal.
        self.requests = Counter("mlgate_admission_requests", "Admission reviews answered, by environment, object kind, the gate's verdict and the admission outcome",
                                ["environment", "kind", "verdict", "admission"], registry=home)
        self.latency = Histogram("mlgate_admission_duration_seconds", "Time from the last body byte to the answer",
                                 ["environment"], registry=home,
                                 buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.cache = Counter("mlgate_evidence_cache", "Evidence cache lookups", ["result"], registry=home)
        self.errors = Counter("mlgate_admission_errors", "Requests answered with an error, by reason", ["reason"], registry=home)
        for result in ("hit", "miss"):
            self.cache.labels(result)
        # The policy in use (an oci:// one is refreshed): gauges per process ("liveall": one series per live worker).
        self.policy_info = Gauge("mlgate_policy_info", "The policy in use (value 1): its source, bundle digest (oci://) and policy revision",
                                 ["source", "digest", "revision"], registry=home, multiprocess_mode="liveall")
        self.policy_stale = Gauge("mlgate_policy_stale", "1 while an oci:// policy is not loaded or its last refresh failed (the last verified bundle is in use), else 0",
                                  registry=home, multiprocess_mode="liveall")
        self.policy_last_success = Gauge("mlgate_policy_last_refresh_success_timestamp_seconds",
                                         "When the registry last answered a refresh of the oci:// policy and the bundle verified (Unix time)",
                                         registry=home, multiprocess_mode="liveall")
        self.policy_refresh_failures = Counter("mlgate_policy_refresh_failures", "Refreshes of the oci:// policy that failed (registry down, "
                                               "a bundle that does not verify); the last verified bundle stays in use", registry=home)
        self.policy_changes = Counter("mlgate_policy_changes", "Times the policy in use was switched to a new bundle", registry=home)
        self._policy_labels: tuple[str, str, str] | None = None
        if self.multiprocess_dir:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(self.registry, path=self.multiprocess_dir)

    def set_policy(self, source: str, digest: str | None, revision: str | None) -> None:
        labels = (source, digest or "", revision or "")
        if labels == self._policy_labels:
            return
        if self._policy_labels is not None:
            self.policy_info.labels(*self._policy_labels).set(0)
            self.policy_info.remove(*self._policy_labels)
        self.policy_info.labels(*labels).set(1)
        self._policy_labels = labels

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
        from mlgate.policy.oci import is_oci

        #: An oci:// policy: pulled on a policy thread, refreshed (a tag) by a background task.
        self.policy: OciPolicySource | None = (OciPolicySource(settings.policy_dir, refresh_s=settings.policy_refresh_s, key=settings.bundle_key,
                                                               data_overrides=settings.data_overrides)
                                               if is_oci(settings.policy_dir) else None)
        self._policy_executor: ThreadPoolExecutor | None = None
        self._refresh_lock = asyncio.Lock()
        self._refresh_loop: asyncio.Task | None = None
        self._refreshing: asyncio.Future | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's event loop (a test may schedule refresh_policy() on it)

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
        """Build one gatekeeper (engine included) on each gate thread that will use it.

        An oci:// policy is pulled and verified first, on the policy thread; if that fails the
        gatekeepers start without a policy (not ready, every admission a recorded deny) and the
        refresh task retries."""
        n = self.gate_threads
        self.executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix="mlgate-gate")
        loop = self.loop = asyncio.get_running_loop()
        pinned = digest = None
        if self.policy is not None:
            self._policy_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlgate-policy")
            digest = await self._fetch_policy()
            pinned = self.policy.pinned(digest) if digest else None

        def on_this_thread(build: Callable[[], Any]) -> Any:
            """Run ``build``; a failure leaves this thread as a fresh error holding no frame: the traceback's
            frames may hold an engine, which must be dropped here, where it was built (regorus Engine is unsendable)."""
            error = None
            try:
                return build()
            except MlgateError as exc:
                error = exc.diagnostics()
            except Exception as exc:  # noqa: BLE001 - logged with its traceback here, reported as one line
                log.exception("the webhook could not start")
                error = f"the webhook could not start: {type(exc).__name__}: {exc}"
            raise MlgateError(error)

        def build_first() -> Gatekeeper:
            def build() -> Gatekeeper:
                gk = self._factory(on_cache=lambda result: self.metrics.cache.labels(result).inc())
                if pinned is not None:
                    gk.policy_source = pinned  # the tag as resolved just now: every gate thread loads that digest
                gk.start(with_policy=self.policy is None or pinned is not None)
                return gk

            gk = on_this_thread(build)
            self._local.gk = gk
            self.gatekeepers.append(gk)
            return gk

        def build_sibling(_: int) -> None:
            if getattr(self._local, "gk", None) is None:
                self._local.gk = on_this_thread(first.sibling)
                self.gatekeepers.append(self._local.gk)

        try:
            # The first builds the store index and the audit sink; the others share them and build their own engine.
            first = await loop.run_in_executor(self.executor, build_first)
            self.gatekeeper = first
            await self._on_every_gate_thread(build_sibling)
        except MlgateError as exc:
            self.startup_error = exc.diagnostics()
            raise
        except Exception as exc:  # a bug or a missing dependency: still a one-line start-up failure, the traceback in the log
            log.exception("the webhook could not start")
            self.startup_error = f"the webhook could not start: {type(exc).__name__}: {exc}"
            raise MlgateError(self.startup_error) from None
        prepared = first.prepared
        if self.policy is None:
            self.metrics.set_policy(str(self.settings.policy_dir or "bundled"), None, prepared.revision if prepared else None)
            return
        if digest is not None and prepared is not None:
            self.policy.succeeded(digest, prepared.revision)
            self._policy_metrics()
            log.info("mlgate: policy %s (revision %s)", pinned, prepared.revision)
        if self.policy.next_refresh_s() is not None:
            self._refresh_loop = asyncio.create_task(self._keep_policy_fresh())

    # ------------------------------------------------------------------ an oci:// policy
    async def _fetch_policy(self) -> str | None:
        """The digest of a verified bundle other than the one in use; None when the one in use is current
        (a success) or the refresh failed (recorded in the source's state, the metrics and the log).
        The blocking work runs on the policy thread."""
        try:
            digest = await asyncio.get_running_loop().run_in_executor(self._policy_executor, self.policy.fetch)
        except MlgateError as exc:
            self._policy_failed(exc.diagnostics())
            return None
        except Exception as exc:  # noqa: BLE001 - a bug in the client: logged with its traceback, the policy kept
            log.exception("policy refresh of %s failed", self.policy.source)
            self._policy_failed(f"{type(exc).__name__}: {exc}")
            return None
        if digest is None:
            self.policy.succeeded()
            self._policy_metrics()
        return digest

    def _policy_failed(self, error: str) -> None:
        self.policy.failed(error)
        self.metrics.policy_refresh_failures.inc()
        self._policy_metrics()
        if self.policy.loaded:
            log.warning("mlgate: policy refresh failed, still judging with %s (revision %s): %s",
                        self.policy.pinned(self.policy.digest), self.policy.revision, self.policy.last_error)
        else:
            log.error("mlgate: %s; every admission is denied until it is", self.policy.not_loaded_reason())

    def _policy_metrics(self) -> None:
        p = self.policy
        self.metrics.policy_stale.set(0 if p.loaded and p.last_error is None else 1)
        if p.last_success is not None:
            self.metrics.policy_last_success.set(p.last_success)
        if p.loaded:
            self.metrics.set_policy(p.source, p.digest, p.revision)

    async def _keep_policy_fresh(self) -> None:
        """Refresh every interval (a tag), or retry until loaded (a digest); each refresh runs to its end even
        if this task is cancelled (shutdown waits for it)."""
        while True:
            wait = self.policy.next_refresh_s()
            if wait is None:
                return
            await asyncio.sleep(wait)
            self._refreshing = asyncio.ensure_future(self.refresh_policy())
            try:
                await asyncio.shield(self._refreshing)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - never let the loop die: the next interval tries again
                log.exception("policy refresh of %s failed", self.policy.source)

    async def refresh_policy(self) -> bool:
        """Resolve the oci:// policy again now (what the refresh task does every interval); True when the
        gate threads switched to a new bundle. A failure keeps the policy in use (and is reported)."""
        if self.policy is None or self.executor is None or self.gatekeeper is None:
            return False
        async with self._refresh_lock:
            digest = await self._fetch_policy()
            if digest is None:
                return False
            try:
                await self._switch_policy(digest)
            except MlgateError as exc:
                self._policy_failed(exc.diagnostics())
                return False
            return True

    async def _switch_policy(self, digest: str) -> None:
        """Build the bundle ``digest`` on every gate thread, record the change, then switch every thread to it,
        all in one round of the pool: no review is judged while the threads switch, so none is judged by the old
        policy after one was judged by the new. Any failure (a thread that cannot build it, the record that cannot
        be written) leaves every thread on the policy it had; raises MlgateError then."""
        source = self.policy.pinned(digest)
        old = {"reference": self.policy.pinned(self.policy.digest) if self.policy.digest else None, "digest": self.policy.digest,
               "policy_revision": self.policy.revision}
        n = self.gate_threads
        built, decided = threading.Barrier(n, timeout=120), threading.Barrier(n, timeout=120)
        revisions: dict[int, str] = {}
        errors: list[str] = []

        def wait(barrier: threading.Barrier) -> None:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                errors.append("a gate thread did not take part in the switch within 120 s")

        def step(i: int) -> None:
            gk = self._local.gk
            staged = None
            try:
                staged = gk.build_policy(source)
                revisions[i] = staged.revision
            except MlgateError as exc:
                errors.append(exc.diagnostics())
            except Exception as exc:  # noqa: BLE001 - logged with its traceback; the old policy stays
                log.exception("building the policy %s failed", source)
                errors.append(f"{type(exc).__name__}: {exc}")
            wait(built)
            if i == 0 and not errors:
                if len(set(revisions.values())) != 1:
                    errors.append(f"the gate threads built different policy revisions from {source}")
                elif old["digest"] is not None:  # a change (not the first load after a failed start-up): recorded first
                    new = {"reference": source, "digest": digest, "policy_revision": staged.revision,
                           # a digest evaluated before in this process: the tag was moved back to an older bundle
                           "rollback": digest in self.policy.seen}
                    try:
                        gk.sink.append(change_record(self.policy.source, old, new, clock=gk.clock, ids=gk.ids, inputs=staged.inputs))
                    except MlgateError as exc:
                        errors.append(f"the policy change could not be recorded: {exc.diagnostics()}")
            wait(decided)
            if errors:
                release_policy(staged)  # on the thread that built it
            else:
                gk.use_policy(staged, source)

        await self._on_every_gate_thread(step)
        if errors:
            raise MlgateError(f"{source}: {errors[0]}; still judging with the policy in use")
        revision = self.gatekeeper.prepared.revision if self.gatekeeper.prepared else None
        self.policy.succeeded(digest, revision)
        self._policy_metrics()
        if old["digest"] is not None:
            self.metrics.policy_changes.inc()
            if self.policy.seen.count(digest) and self.policy.seen.index(digest) < len(self.policy.seen) - 1:
                log.warning("policy %s moved back to %s, a bundle evaluated before (rollback)", self.policy.source, digest)
            log.warning("mlgate: policy changed: %s -> %s (revision %s -> %s)", old["reference"], source, old["policy_revision"], revision)
        else:
            log.warning("mlgate: policy %s loaded (revision %s); admissions are judged from now on", source, revision)

    def _refuse_unloaded(self, gk: Gatekeeper, review: Review, environment: str, delivery: Delivery | None) -> Outcome:
        """No policy is loaded (an oci:// policy not pulled yet): a recorded deny in every mode (the webhook
        cannot judge), naming why."""
        from mlgate.gate import Finding, GateOptions, refuse
        from mlgate.inputdoc import Request

        reason = self.policy.not_loaded_reason() if self.policy is not None else "no policy loaded"
        sink = RequestSink(gk.sink, admission_facts(review), delivery)
        options = GateOptions(environment=environment, clock=gk.clock, ids=gk.ids, timeout_s=0,
                              request=Request(source="admission", user=review.user, namespace=review.namespace, operation=review.operation,
                                              dry_run=review.dry_run, mode="enforce", groups=review.groups))
        decision = refuse(Finding(POLICY_NOT_LOADED, f"{reason}; nothing is admitted until it is", "high"), options, sink)
        if delivery is not None:
            delivery.finish()
        annotations = {"decision-id": decision.decision_id, "result": decision.result, "mode": "enforce", "environment": environment}
        body = response(review.api_version, review.uid, allowed=False, code=500, message=deny_message(decision), audit_annotations=annotations)
        return Outcome(body, decision.result, "other", [decision])

    def _admit_here(self, review: Any, environment: str, deadline: float, delivery: Delivery | None = None):
        gk = getattr(self._local, "gk", None)
        if gk is None:  # pragma: no cover - every pool thread was given one at start-up
            raise MlgateError("this gate thread has no policy engine; denied")
        if gk.prepared is None:  # an oci:// policy not loaded yet
            return self._refuse_unloaded(gk, review, environment, delivery)
        return gk.admit(review, environment, deadline=deadline, delivery=delivery)

    def _record_unanswered(self, review: Review, environment: str, why: str, queued: bool, timeout_s: float) -> None:
        """The record of a request answered by the deadline path (or left by the apiserver): written off
        the event loop, after the answer (a deny) has gone, on the default executor (the gate threads may all be busy)."""
        call = functools.partial(self.gatekeeper.record_unanswered, review, environment, why=why, queued=queued, timeout_s=timeout_s)
        future = asyncio.get_running_loop().run_in_executor(None, call)
        future.add_done_callback(lambda f: f.cancelled() or f.exception() is None
                                 or log.error("could not record the %s answer of admission review uid=%s: %s", why, review.uid, f.exception()))

    async def shutdown(self) -> None:
        if self._refresh_loop is not None:
            self._refresh_loop.cancel()
            # A refresh under way runs to its end (its gate threads' round, its record) before the engines go.
            await asyncio.gather(self._refresh_loop, *([self._refreshing] if self._refreshing else []), return_exceptions=True)
        if self._policy_executor is not None:
            self._policy_executor.shutdown(wait=False, cancel_futures=True)
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
                return await _send_status(send, 405, "use POST for admission reviews")
            return await self._admit(match.group(1), scope, receive, send)
        if path == "/healthz" and method in ("GET", "HEAD"):
            return await _send_json(send, 200, {"status": "ok"})
        if path == "/readyz" and method in ("GET", "HEAD"):
            problems = self.gatekeeper.ready() if self.gatekeeper else [self.startup_error or "starting"]
            if self.policy is not None and not self.policy.loaded:
                problems = [self.policy.not_loaded_reason() if p == "policy not loaded" else p for p in problems]
            if problems:
                return await _send_status(send, 503, "not ready: " + "; ".join(problems))
            ready: dict[str, Any] = {"status": "ready", "problems": []}
            if self.policy is not None:  # still ready on a stale policy (the last verified bundle): the body says so
                ready["policy"] = self.policy.status()
            return await _send_json(send, 200, ready)
        if path == "/metrics" and method == "GET":
            body, ctype = self.metrics.render()
            return await _send(send, 200, body, [(b"content-type", ctype.encode())])
        return await _send_status(send, 404, f"no route for {method} {path[:100]}")

    async def _admit(self, environment: str, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        known = self.gatekeeper is not None and environment in self.gatekeeper.environments
        env_label = environment if known else "unknown"
        if not ENVIRONMENT_NAME.match(environment):  # still judged (a recorded deny), under a bounded, printable name
            environment = "".join(c if c.isprintable() else "?" for c in environment)[:63]
        doc: Any = None
        body = b""
        started = self._now()
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
            uid, version = peek_uid_and_version(doc)
            if uid is None and doc is None and body and exc.status == 400:
                # The parser gave up (nested too deeply, a bad byte): the uid is still read from the raw
                # bytes, so the refusal is answered by uid and recorded like any other malformed review.
                uid, version = peek_raw_uid_and_version(body)
            if exc.status == 400 and _answerable(uid) and self.gatekeeper is not None and self.executor is not None:
                return await self._refuse_malformed(send, environment, env_label, uid, version, exc.message, started)
            return await _send_status(send, exc.status, exc.message)

        deadline = started + self._timeout(scope.get("query_string", b"")) - self.settings.deadline_margin_s
        if self.gatekeeper is None or self.executor is None:
            self.metrics.errors.labels("not_ready").inc()
            return await _send_json(send, 200, response(review.api_version, review.uid, allowed=False, code=500,
                                                       message="mlgate: the webhook is not ready (policy or store not loaded)"))
        if not known:
            self.metrics.errors.labels("not_found").inc()  # the gatekeeper records it as a deny (MLG-ADM-002)
        delivery = Delivery(deadline, self._now)
        work = self.executor.submit(self._admit_here, review, environment, deadline, delivery)
        mode = self.settings.environment(environment).mode if known else "enforce"
        try:
            outcome = await _gate_outcome(work, delivery, deadline - self._now(), receive)
            if outcome is None:  # past the deadline, or the apiserver left: the gate's answer is not delivered (recorded late)
                why, queued, timeout_s = delivery.given_up or "deadline", work.cancel(), self._timeout(scope.get("query_string", b""))
                self.metrics.errors.labels(why).inc()
                self._record_unanswered(review, environment, why, queued, timeout_s)
                if why == "disconnected":
                    return None
                answer = response(review.api_version, review.uid, allowed=False, code=500,
                                  message=f"mlgate: no decision within the request's deadline ({timeout_s:g} s); denied")
                return await self._finish(send, env_label, review, environment, mode, "error", answer, started, [])
        except MlgateError as exc:
            self.metrics.errors.labels("internal").inc()
            answer = response(review.api_version, review.uid, allowed=False, code=500, message=f"mlgate: {exc.diagnostics()}")
            return await self._finish(send, env_label, review, environment, mode, "error", answer, started, [])
        except Exception:
            log.exception("internal error while judging admission review uid=%s", review.uid)
            self.metrics.errors.labels("internal").inc()
            answer = response(review.api_version, review.uid, allowed=False, code=500, message="mlgate: internal error (see the webhook log); denied")
            return await self._finish(send, env_label, review, environment, mode, "error", answer, started, [])
        if outcome.result == "error":
            self.metrics.errors.labels("decision_error").inc()
        mode = (outcome.body.get("response", {}).get("auditAnnotations") or {}).get("mode", mode)
        return await self._finish(send, env_label, review, environment, mode, outcome.result, outcome.body, started, outcome.decisions)

    async def _refuse_malformed(self, send: Callable, environment: str, env_label: str, uid: str, version: str, message: str, started: float) -> None:
        """A review whose ``uid`` is readable but a field is not: answered as a recorded deny (MLG-ADM-003)."""
        loop = asyncio.get_running_loop()
        decisions = []
        try:
            decision = await loop.run_in_executor(self.executor, self._record_malformed, environment, message, uid)
            decisions = [decision]
            text = f"mlgate: the AdmissionReview could not be read (decision {decision.decision_id}): {message}; denied"
        except Exception:  # noqa: BLE001 - the audit write failed: still a deny, and logged
            log.exception("could not record the refusal of a malformed admission review uid=%s", uid)
            text = f"mlgate: the AdmissionReview could not be read: {message}; denied (not recorded: see the webhook log)"
        answer = response(version, uid, allowed=False, code=400, message=text,
                          audit_annotations={"decision-id": decisions[0].decision_id} if decisions else None)
        answer["response"]["status"]["reason"] = REASONS[400]
        kind = "other"
        self.metrics.requests.labels(env_label, kind, "deny", "refused").inc()
        self.metrics.latency.labels(env_label).observe(self._now() - started)
        self._log(uid=uid, kind=kind, namespace=None, name=None, environment=environment, mode="enforce", result="deny",
                  admitted=False, started=started, decisions=decisions, dry_run=False)
        await _send_json(send, 200, answer)

    def _record_malformed(self, environment: str, message: str, uid: str | None = None):
        from mlgate.gate import Finding, GateOptions, refuse
        from mlgate.inputdoc import Request

        gk = getattr(self._local, "gk", None) or self.gatekeeper
        # The record names the request by its uid (the object could not be read).
        sink = RequestSink(gk.sink, {"uid": uid, "operation": None, "user": None, "object": None}, None)
        options = GateOptions(environment=environment, clock=gk.clock, ids=gk.ids, timeout_s=0,
                              request=Request(source="admission", operation="unknown", mode="enforce"))
        finding = Finding("MLG-ADM-003", f"the AdmissionReview could not be read: {message}", "high")
        return refuse(finding, options, sink, prepared=gk.prepared)

    async def _finish(self, send: Callable, env_label: str, review: Review, environment: str, mode: str | None, result: str,
                      body: dict[str, Any], started: float, decisions: list[Any]) -> None:
        kind = review.kind["kind"]
        admitted = bool(body.get("response", {}).get("allowed"))
        self.metrics.requests.labels(env_label, kind if kind in _KINDS else "other", result, "admitted" if admitted else "refused").inc()
        self.metrics.latency.labels(env_label).observe(self._now() - started)
        self._log(uid=review.uid, kind=kind, namespace=review.namespace, name=review.name, environment=environment, mode=mode, result=result,
                  admitted=admitted, started=started, decisions=decisions, dry_run=review.dry_run)
        await _send_json(send, 200, body)

    def _log(self, *, started: float, **fields: Any) -> None:
        if admission_log.isEnabledFor(logging.INFO):
            doc = admission_fields(latency_s=self._now() - started, **fields)
            admission_log.info("admission %s %s", doc["admission"], doc["uid"], extra={"admission": doc})

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
                    "InferenceService", "TrainedModel", "SeldonDeployment", "Model", "Scale"})


async def _gate_outcome(work: Any, delivery: Delivery, timeout: float, receive: Callable) -> Any:
    """The gate thread's outcome, or None when it is not to be delivered: the deadline passed, or the
    apiserver closed the connection, before the gate finished (issue 15, part 4)."""
    waiting = asyncio.wrap_future(work)
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({waiting, gone}, timeout=max(timeout, 0.001), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    left = gone.done() and not gone.cancelled() and gone.exception() is None
    if delivery.give_up("disconnected" if left else "deadline"):
        waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # finished later, or never run: nothing to answer
        return None
    return await waiting  # finished in time (it may be returning this very moment)


async def _disconnected(receive: Callable) -> None:
    """Returns when the client closes the connection (the body has been read: nothing else arrives)."""
    while (await receive()).get("type") != "http.disconnect":
        pass


def _answerable(uid: Any) -> bool:
    """A uid the answer can carry back (the apiserver matches the answer to its request by it)."""
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID_CHARS:
        return False
    try:
        uid.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def status_object(code: int, message: str) -> dict[str, Any]:
    """A Kubernetes ``Status`` (meta/v1) for an HTTP error: what the apiserver shows the user."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": " ".join(message.split()),
            "reason": REASONS.get(code, "Unknown"), "code": code}


async def _send_status(send: Callable, code: int, message: str) -> None:
    await _send_json(send, code, status_object(code, message))
